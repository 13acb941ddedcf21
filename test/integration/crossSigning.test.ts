/**
 * Cross-signing and secret storage through a real Synapse, checked by an independent
 * implementation (matrix-sdk-crypto-wasm, the Rust crypto behind matrix-js-sdk).
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { inspect } from "node:util";
import * as wasm from "@matrix-org/matrix-sdk-crypto-wasm";
import { InvalidArgumentError, MatrixHttpError, MatrixSdkError, type MatrixClient } from "../../src/index.js";
import type { SynapseHandle } from "../harness/synapse.js";
import { PASSWORD, Recorder, startClient, synapse, tempDir, uniqueName, waitUntil } from "./helpers.js";


/** A matrix-sdk-crypto-wasm OlmMachine logged in as `userId`, driven against the same Synapse. */
async function wasmPeer(hs: SynapseHandle, userId: string): Promise<{ machine: wasm.OlmMachine; flush: () => Promise<void> }> {
  await wasm.initAsync();
  const login = (await (
    await fetch(`${hs.baseUrl}/_matrix/client/v3/login`, {
      method: "POST",
      body: JSON.stringify({ type: "m.login.password", identifier: { type: "m.id.user", user: userId }, password: PASSWORD }),
    })
  ).json()) as { access_token: string; device_id: string };
  const machine = await wasm.OlmMachine.initialize(new wasm.UserId(userId), new wasm.DeviceId(login.device_id));
  const paths: Record<number, string> = {
    [wasm.RequestType.KeysUpload]: "/_matrix/client/v3/keys/upload",
    [wasm.RequestType.KeysQuery]: "/_matrix/client/v3/keys/query",
    [wasm.RequestType.KeysClaim]: "/_matrix/client/v3/keys/claim",
  };
  const flush = async (): Promise<void> => {
    for (let i = 0; i < 5; i++) {
      const reqs = (await machine.outgoingRequests()) as { id: string; type: wasm.RequestType; body: string }[];
      const handled = reqs.filter((r) => paths[r.type]);
      if (!handled.length) return;
      for (const r of handled) {
        const res = await fetch(`${hs.baseUrl}${paths[r.type]}`, { method: "POST", headers: { authorization: `Bearer ${login.access_token}` }, body: r.body });
        await machine.markRequestAsSent(r.id, r.type, await res.text());
      }
    }
  };
  return { machine, flush };
}

describe("cross-signing and secret storage", { timeout: 240_000 }, () => {
  let hs: SynapseHandle;
  let alice = "";
  let bob = "";
  const clients: MatrixClient[] = [];
  let a1: { client: MatrixClient; rec: Recorder };
  let b1: { client: MatrixClient; rec: Recorder };
  let recoveryKey = "";
  const track = <T extends { client: MatrixClient }>(c: T): T => {
    clients.push(c.client);
    return c;
  };

  before(async () => {
    hs = await synapse();
    alice = (await hs.registerUser(uniqueName("xsalice"), PASSWORD)).userId;
    bob = (await hs.registerUser(uniqueName("xsbob"), PASSWORD)).userId;
    a1 = track(await startClient(hs, alice, tempDir()));
    b1 = track(await startClient(hs, bob, tempDir()));
  });
  after(async () => {
    await Promise.all(clients.map((c) => c.close()));
  });

  it("bootstraps: keys uploaded with UIA, this device signed, secrets stored; an independent implementation sees the device as cross-signed by its owner", async () => {
    const result = await a1.client.bootstrapCrossSigning({ password: PASSWORD });
    ({ recoveryKey } = result);
    assert.match(recoveryKey, /^(\S{4} )+\S{1,4}$/);
    // The result redacts the recovery key when inspected or serialised (logs, crash dumps).
    assert.equal(inspect(result, { depth: Infinity, showHidden: true, getters: true }).includes(recoveryKey), false);
    assert.equal(JSON.stringify(result).includes(recoveryKey), false);
    const me = await a1.client.getUserIdentity(alice);
    assert.ok(me.masterKey);
    assert.equal(me.verified, true);
    const carol = (await hs.registerUser(uniqueName("xscarol"), PASSWORD)).userId;
    const peer = await wasmPeer(hs, carol);
    await peer.machine.updateTrackedUsers([new wasm.UserId(alice)]);
    await peer.flush();
    const dev = await peer.machine.getDevice(new wasm.UserId(alice), new wasm.DeviceId(a1.client.deviceId!));
    assert.ok(dev, "the Rust implementation does not know our device");
    assert.equal(dev.isCrossSignedByOwner(), true, "the Rust implementation does not see our device as cross-signed by its owner");
    peer.machine.close();
  });

  it("a failed bootstrap (no password, wrong password) leaves the identity, its pin and trust as they were; a later bootstrap is accepted", async () => {
    const dave = (await hs.registerUser(uniqueName("xsdave"), PASSWORD)).userId;
    const d1 = track(await startClient(hs, dave, tempDir()));
    const changed: string[] = [];
    d1.client.on("user.identityChanged", (u) => changed.push(u));
    await d1.client.bootstrapCrossSigning({ password: PASSWORD });
    const before = await d1.client.getUserIdentity(dave);
    assert.equal(before.verified, true);
    assert.equal(before.pinnedMasterKey, before.masterKey);

    await assert.rejects(d1.client.bootstrapCrossSigning({}), InvalidArgumentError);
    await assert.rejects(d1.client.bootstrapCrossSigning({ password: "not the password" }), (e: unknown) => e instanceof MatrixHttpError && e.status === 401);
    // What the server publishes is still the first identity, and so is ours: no change to report.
    await d1.client.refreshUserKeys(dave);
    assert.deepEqual(await d1.client.getUserIdentity(dave), before);
    assert.deepEqual(changed, []);

    // A later bootstrap with the password replaces the identity; the server accepts our signatures
    // (a rejected signature upload throws) and another user sees the device signed by the new keys.
    await d1.client.bootstrapCrossSigning({ password: PASSWORD });
    const now = await d1.client.getUserIdentity(dave);
    assert.notEqual(now.masterKey, before.masterKey);
    assert.deepEqual(now, { ...before, masterKey: now.masterKey, pinnedMasterKey: now.masterKey });
    assert.deepEqual(changed, []);
    await waitUntil(async () => {
      await a1.client.refreshUserKeys(dave);
      const seen = await a1.client.getUserIdentity(dave);
      const dev = await a1.client.getDevice(dave, d1.client.deviceId!);
      return seen.masterKey === now.masterKey && dev?.crossSigned === true;
    }, "Alice seeing Dave's device signed by his new identity");
  });

  it("a second device restores from the recovery key and is signed; a wrong key changes nothing", async () => {
    const a2 = track(await startClient(hs, alice, tempDir(), { deviceId: `XS2${Date.now()}` }));
    await assert.rejects(a2.client.restoreCrossSigning({ recoveryKey: "EsTc LW2K PGiF wKEA 3As5 g5c4 BXwk qeeJ ZJV8 Q9fu gUMN UE4d" }), (e: unknown) => MatrixSdkError.isSdkError(e));
    await assert.rejects(a2.client.restoreCrossSigning({ recoveryKey: "not a key" }), (e: unknown) => MatrixSdkError.isSdkError(e));
    await a1.client.refreshUserKeys(alice);
    let d2 = (await a1.client.getDevices(alice)).find((d) => d.deviceId === a2.client.deviceId);
    assert.equal(d2?.crossSigned ?? false, false, "restore with a wrong key must change nothing");

    await a2.client.restoreCrossSigning({ recoveryKey });
    await waitUntil(async () => {
      await a1.client.refreshUserKeys(alice);
      d2 = (await a1.client.getDevices(alice)).find((d) => d.deviceId === a2.client.deviceId);
      return d2?.crossSigned === true;
    }, "A1 seeing A2 cross-signed");
    assert.equal(d2!.crossSigningVerified, true);
    assert.equal((await a2.client.getUserIdentity(alice)).verified, true);
  });

  it("validates another user's chain, reports a device not signed by its owner, and verifyUser makes their events verified", async () => {
    await b1.client.bootstrapCrossSigning({ password: PASSWORD });
    const b2 = track(await startClient(hs, bob, tempDir(), { deviceId: `XB2${Date.now()}` })); // never signed by Bob's self-signing key
    await waitUntil(async () => {
      await a1.client.refreshUserKeys(bob);
      const ds = await a1.client.getDevices(bob);
      return ds.some((d) => d.deviceId === b1.client.deviceId && d.crossSigned) && ds.some((d) => d.deviceId === b2.client.deviceId);
    }, "Alice seeing Bob's devices");
    const ds = await a1.client.getDevices(bob);
    assert.equal(ds.find((d) => d.deviceId === b1.client.deviceId)!.crossSigningVerified, false);
    assert.equal(ds.find((d) => d.deviceId === b2.client.deviceId)!.crossSigned, false, "an unsigned device must not count as owner-signed");

    await a1.client.verifyUser(bob);
    assert.equal((await a1.client.getUserIdentity(bob)).verified, true);
    assert.equal((await a1.client.getDevice(bob, b1.client.deviceId!))!.crossSigningVerified, true);

    // Only owner-signed devices get keys when the room asks for it.
    const room = await a1.client.createRoom({ encrypted: true, invite: [bob] });
    for (const b of [b1, b2]) await b.rec.waitFor(() => b.client.getRooms().some((r) => r.roomId === room.roomId), "invite");
    await b1.client.joinRoom(room.roomId);
    await a1.rec.waitFor(() => a1.rec.events.some((e) => e.roomId === room.roomId && e.stateKey === bob && e.content.membership === "join"), "join");
    room.onlyCrossSignedDevices = true;
    await room.sendText("only for cross-signed devices");
    await b1.rec.waitFor(() => b1.rec.bodies(room.roomId).includes("only for cross-signed devices"), "B1 decrypting");
    await b2.rec.waitFor(() => b2.rec.failures.some((f) => f.roomId === room.roomId && f.code === "withheld"), "B2 told the key is withheld");
    assert.equal(b2.rec.failures.find((f) => f.roomId === room.roomId)!.withheldCode, "m.unverified");

    await b1.client.getRoom(room.roomId).sendText("from bob");
    await a1.rec.waitFor(() => a1.rec.bodies(room.roomId).includes("from bob"), "Alice decrypting Bob");
    const ev = a1.rec.messages(room.roomId).find((e) => e.content.body === "from bob")!;
    assert.equal(ev.encryption?.verification, "verified");
    assert.equal(ev.encryption?.crossSigned, true);
  });

  it("detects and reports a change of a pinned identity, never silently accepting it", async () => {
    const changed: string[] = [];
    a1.client.on("user.identityChanged", (u) => changed.push(u));
    await b1.client.bootstrapCrossSigning({ password: PASSWORD }); // a new master key for Bob
    await waitUntil(async () => {
      await a1.client.refreshUserKeys(bob);
      return changed.includes(bob);
    }, "the identity change");
    const id = await a1.client.getUserIdentity(bob);
    assert.equal(id.changed, true);
    assert.equal(id.verified, false);
    assert.notEqual(id.masterKey, id.pinnedMasterKey);
    assert.equal((await a1.client.getDevice(bob, b1.client.deviceId!))!.crossSigningVerified, false);
    await a1.client.acknowledgeIdentityChange(bob);
    const after = await a1.client.getUserIdentity(bob);
    assert.equal(after.changed, false);
    assert.equal(after.pinnedMasterKey, after.masterKey);
    assert.equal(after.verified, false);
  });
});
