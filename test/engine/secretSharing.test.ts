/**
 * Secret sharing among our own devices (`m.secret.request` / `m.secret.send`) in the engine
 * (real libolm): a verified own device receives the cross-signing keys and the backup key over
 * Olm; an unverified own device, another user, or an unrequested answer gets nothing.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { ownDevicesWithHistory, type Peer } from "./helpers.js";
import { encodeRecoveryKey, generateRecoveryKey, makeKeyDescription } from "../../workers/engine/secrets/secretStorage.js";
import type { SyncChangesResult } from "../../src/protocol/api.js";

const ROOM = "!secrets:example.org";
type Json = Record<string, unknown>;
const ALL = ["m.cross_signing.master", "m.cross_signing.self_signing", "m.cross_signing.user_signing", "m.megolm_backup.v1"];

/** Alice's A1 with cross-signing and a backup key; A2 (fresh) knows A1 and its identity. */
async function setup(): Promise<{ a1: Peer; a2: Peer; bob: Peer; info: Json }> {
  const { server, a1, a2, bob } = await ownDevicesWithHistory(ROOM);
  const cs = await a1.engine.prepareCrossSigning();
  server.uploadCrossSigning(a1.userId, cs.deviceSigningUpload, cs.signatureUpload);
  await a1.engine.commitCrossSigning(cs.masterKey);
  const { privateKey } = generateRecoveryKey();
  const made = await a1.engine.createKeyBackup({ keyDescription: makeKeyDescription(privateKey) as Json, keyId: "K", recoveryKey: encodeRecoveryKey(privateKey) });
  const info = { version: "1", algorithm: made.algorithm, auth_data: made.authData };
  await a1.engine.activateKeyBackup(info);
  for (const p of [a1, a2]) {
    await p.engine.refreshUsers([a1.userId]);
    await p.flush();
  }
  return { a1, a2, bob, info };
}

/** `answerer` handles the requests of its next sync (claim, then answer) and sends the answers. */
async function answer(answerer: Peer): Promise<{ seen: SyncChangesResult; sent: number }> {
  const seen = await answerer.sync();
  const claim = answerer.engine.prepareKeyForwarding([...new Set(seen.secretRequests.map((r) => r.deviceId))]);
  if (claim) await answerer.send(claim);
  const out = await answerer.engine.answerSecretRequests(seen.secretRequests);
  for (const r of out) await answerer.send(r);
  return { seen, sent: out.length };
}

describe("engine: secret sharing among our own verified devices", () => {
  it("a verified own device asks and receives the cross-signing keys and the backup key over Olm", async () => {
    const { a1, a2, info } = await setup();
    // Both sides verified each other (as an emoji verification would leave them).
    await a1.engine.setDeviceFlags(a1.userId, "A2", { verified: true });
    await a2.engine.setDeviceFlags(a1.userId, "A1", { verified: true });
    assert.equal((await a2.engine.getUserIdentity(a1.userId)).verified, false, "A2 holds no cross-signing key yet");
    const reqs = await a2.engine.requestSecrets();
    assert.equal(reqs.length, 4);
    for (const r of reqs) await a2.send(r);
    const { seen, sent } = await answer(a1);
    assert.deepEqual(seen.secretRequests.map((r) => [r.deviceId, r.name]).sort(), ALL.map((n) => ["A2", n]).sort());
    assert.equal(sent, 4);
    const got = await a2.sync();
    assert.deepEqual(got.toDeviceFailures, []);
    assert.deepEqual([...got.secretsReceived].sort(), [...ALL].sort());
    assert.equal((await a2.engine.getUserIdentity(a1.userId)).verified, true, "A2 now holds our cross-signing keys");
    assert.equal(a2.engine.keyBackupStatus(info).trust!.matchesKey, true, "A2 holds the backup key");
    assert.deepEqual(await a2.engine.requestSecrets(), [], "nothing left to ask for");
  });

  it("an unverified own device and another user get nothing; an m.secret.send answering no request of ours is refused", async () => {
    const { a1, a2, bob } = await setup();
    // A2 trusts A1, but A1 never verified A2.
    await a2.engine.setDeviceFlags(a1.userId, "A1", { verified: true });
    for (const r of await a2.engine.requestSecrets()) await a2.send(r);
    const { seen, sent } = await answer(a1);
    assert.equal(seen.secretRequests.length, 4, "the requests are seen");
    assert.equal(sent, 0, "but not answered: A2 is not verified");
    assert.deepEqual((await a2.sync()).secretsReceived, []);
    // Another user asking for our secrets is not even reported.
    const content = { name: "m.cross_signing.master", action: "request", requesting_device_id: "B", request_id: "evil" };
    const fromBob = await a1.sync({ toDevice: [{ type: "m.secret.request", sender: bob.userId, content }] });
    assert.deepEqual(fromBob.secretRequests, []);
    assert.deepEqual(await a1.engine.answerSecretRequests([{ deviceId: "B", requestId: "evil", name: "m.cross_signing.master" }]), [], "and never answered, even if asked directly");
    // An m.secret.send that answers no request of A2's (A1 now verified A2, so it can send one) is refused.
    await a1.engine.setDeviceFlags(a1.userId, "A2", { verified: true });
    const unasked = await a1.engine.answerSecretRequests([{ deviceId: "A2", requestId: "never-asked", name: "m.megolm_backup.v1" }]);
    assert.equal(unasked.length, 1);
    for (const r of unasked) await a1.send(r);
    const got = await a2.sync();
    assert.deepEqual(got.secretsReceived, []);
    assert.deepEqual(got.toDeviceFailures.map((f) => [f.type, f.code]), [["m.secret.send", "secret_unrequested"]]);
  });
});
