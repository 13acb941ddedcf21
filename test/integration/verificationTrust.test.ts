/**
 * What an interactive verification changes, between SDK clients through a real Synapse: trust
 * that follows the cross-signing chain (so every one of our devices agrees), own devices signed
 * by our self-signing key, and a verified user's identity change that stops sending until it is
 * acknowledged.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { VerifiedUserChangedIdentityError, type MatrixClient, type VerificationRequest } from "../../src/index.js";
import type { SynapseHandle } from "../harness/synapse.js";
import { PASSWORD, Recorder, runSas, startClient, synapse, tempDir, uniqueName, waitUntil } from "./helpers.js";

describe("trust after interactive verification (real Synapse)", { timeout: 300_000 }, () => {
  let hs: SynapseHandle;
  let aliceId = "";
  let bobId = "";
  let recoveryKey = "";
  let roomId = "";
  const clients: MatrixClient[] = [];
  let a1: { client: MatrixClient; rec: Recorder };
  let b1: { client: MatrixClient; rec: Recorder };
  const track = <T extends { client: MatrixClient }>(c: T): T => {
    clients.push(c.client);
    return c;
  };

  before(async () => {
    hs = await synapse();
    aliceId = (await hs.registerUser(uniqueName("vtalice"), PASSWORD)).userId;
    bobId = (await hs.registerUser(uniqueName("vtbob"), PASSWORD)).userId;
    a1 = track(await startClient(hs, aliceId, tempDir()));
    b1 = track(await startClient(hs, bobId, tempDir()));
    ({ recoveryKey } = await a1.client.bootstrapCrossSigning({ password: PASSWORD }));
    await b1.client.bootstrapCrossSigning({ password: PASSWORD });
    const room = await a1.client.createRoom({ encrypted: true, invite: [bobId] });
    roomId = room.roomId;
    await b1.rec.waitFor(() => b1.client.getRooms().some((r) => r.roomId === roomId), "invite");
    await b1.client.joinRoom(roomId);
    await a1.rec.waitFor(() => a1.rec.events.some((e) => e.roomId === roomId && e.stateKey === bobId && e.content.membership === "join"), "join");
    await waitUntil(async () => {
      await a1.client.refreshUserKeys(bobId);
      await b1.client.refreshUserKeys(aliceId);
      return (await a1.client.getUserIdentity(bobId)).masterKey !== null && (await b1.client.getUserIdentity(aliceId)).masterKey !== null;
    }, "both seeing the other's identity");
  });
  after(async () => {
    await Promise.all(clients.map((c) => c.close()));
  });

  it("an in-room SAS signs each other's master key; Alice's other device (restored from the recovery key) sees Bob verified without verifying again", async () => {
    const theirs = new Promise<VerificationRequest>((resolve) => b1.client.once("verification.request", resolve));
    await runSas(await a1.client.getRoom(roomId).requestVerification(bobId), theirs);
    assert.equal((await a1.client.getUserIdentity(bobId)).verified, true);
    await waitUntil(async () => (await b1.client.getUserIdentity(aliceId)).verified, "Bob trusting Alice's identity");

    const a2 = track(await startClient(hs, aliceId, tempDir(), { deviceId: `VT2${Date.now()}` }));
    await a2.client.restoreCrossSigning({ recoveryKey });
    await waitUntil(async () => {
      await a2.client.refreshUserKeys(bobId);
      return (await a2.client.getUserIdentity(bobId)).verified;
    }, "Alice's second device reading Bob's verification from the signatures down the chain");
    const bobDevice = await a2.client.getDevice(bobId, b1.client.deviceId!);
    assert.equal(bobDevice?.crossSigningVerified, true, "Bob's device is trusted through the chain on Alice's second device");
  });

  it("a to-device SAS with our own new device signs it with our self-signing key, and the new device trusts our identity", async () => {
    const a3 = track(await startClient(hs, aliceId, tempDir(), { deviceId: `VT3${Date.now()}` }));
    await waitUntil(async () => {
      await a1.client.refreshUserKeys(aliceId);
      await a3.client.refreshUserKeys(aliceId);
      return (await a1.client.getDevice(aliceId, a3.client.deviceId!)) !== null && (await a3.client.getDevice(aliceId, a1.client.deviceId!)) !== null;
    }, "the two devices seeing each other");
    assert.equal((await a3.client.getUserIdentity(aliceId)).verified, false, "a new device holds no cross-signing keys");
    const theirs = new Promise<VerificationRequest>((resolve) => a1.client.once("verification.request", resolve));
    await runSas(await a3.client.requestVerification(aliceId, a1.client.deviceId!), theirs);
    assert.equal((await a3.client.getUserIdentity(aliceId)).verified, true, "the SAS verified our master key for the new device");
    await waitUntil(async () => {
      await a1.client.refreshUserKeys(aliceId);
      return (await a1.client.getDevice(aliceId, a3.client.deviceId!))?.crossSigningVerified === true;
    }, "the new device signed by our self-signing key");
  });

  it("after a verified user changes identity, sending to their room fails with VerifiedUserChangedIdentityError until the change is acknowledged", async () => {
    await b1.client.bootstrapCrossSigning({ password: PASSWORD });
    await waitUntil(async () => {
      await a1.client.refreshUserKeys(bobId);
      return (await a1.client.getUserIdentity(bobId)).changed;
    }, "Alice seeing Bob's new identity");
    const room = a1.client.getRoom(roomId);
    await assert.rejects(room.sendText("to the changed identity"), (e: unknown) => e instanceof VerifiedUserChangedIdentityError && e.userIds.length === 1 && e.userIds[0] === bobId);
    await a1.client.acknowledgeIdentityChange(bobId);
    assert.equal((await a1.client.getUserIdentity(bobId)).verified, false, "the new identity is pinned, not verified");
    await room.sendText("after acknowledging");
    await b1.rec.waitFor(() => b1.rec.bodies(roomId).includes("after acknowledging"), "Bob receiving the message");
    assert.equal(b1.rec.bodies(roomId).includes("to the changed identity"), false);
  });
});
