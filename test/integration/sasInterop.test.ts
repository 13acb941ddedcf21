/**
 * Interactive SAS verification with the Rust crypto behind matrix-js-sdk and Element
 * (matrix-sdk-crypto-wasm's OlmMachine and its VerificationRequest/Sas API) through a real
 * Synapse, in both directions: the emoji and numbers agree on both sides, and afterwards each
 * side trusts the other's device.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import * as wasm from "@matrix-org/matrix-sdk-crypto-wasm";
import type { MatrixClient, VerificationRequest } from "../../src/index.js";
import type { SynapseHandle } from "../harness/synapse.js";
import { WasmPeer } from "../support/wasmPeer.js";
import { PASSWORD, Recorder, startClient, synapse, tempDir, uniqueName, waitUntil } from "./helpers.js";

type RustOutgoing = Parameters<WasmPeer["send"]>[0];

/** Both sides confirm; waits until both are done. */
async function finish(req: VerificationRequest, bob: WasmPeer, sas: wasm.Sas): Promise<void> {
  await bob.syncUntil(() => sas.canBePresented(), "the Rust side showing the SAS");
  const mine = await req.waitForSas();
  const theirs = sas.emoji()!.map((e) => ({ symbol: e.symbol, name: e.description }));
  assert.deepEqual(mine.emoji, theirs, "both sides must show the same emoji");
  assert.deepEqual(mine.decimal, [...sas.decimals()!], "both sides must show the same numbers");
  for (const r of await sas.confirm()) await bob.send(r as unknown as RustOutgoing);
  await mine.confirm();
  await bob.syncUntil(() => sas.isDone(), "the Rust side finishing");
  await req.done;
  assert.equal(req.phase, "done");
}

describe("SAS verification with matrix-sdk-crypto-wasm (Rust crypto) through a real Synapse", { timeout: 240_000 }, () => {
  let hs: SynapseHandle;
  let alice: { client: MatrixClient; rec: Recorder };
  let bobId = "";

  before(async () => {
    hs = await synapse();
    const aliceId = (await hs.registerUser(uniqueName("sasalice"), PASSWORD)).userId;
    bobId = (await hs.registerUser(uniqueName("sasbob"), PASSWORD)).userId;
    alice = await startClient(hs, aliceId, tempDir());
  });
  after(async () => {
    await alice.client.close();
  });

  it("the SDK requests (to-device), the Rust side accepts and starts: same emoji, and both trust each other's device", async () => {
    const bob = await WasmPeer.login(hs.baseUrl, bobId, PASSWORD);
    try {
      await bob.track(alice.client.userId!);
      await alice.client.refreshUserKeys(bobId);
      const req = await alice.client.requestVerification(bobId, bob.deviceId);
      let rustReq: wasm.VerificationRequest | undefined;
      await bob.syncUntil(() => (rustReq = bob.machine.getVerificationRequest(new wasm.UserId(alice.client.userId!), req.flowId)) !== undefined, "the request reaching the Rust side");
      await bob.send(rustReq!.acceptWithMethods([wasm.VerificationMethod.SasV1]) as unknown as RustOutgoing);
      await req.waitFor((r) => r.phase === "ready");
      const started = await rustReq!.startSas();
      assert.ok(started, "the Rust side could not start SAS");
      const [sas, startMsg] = started;
      await bob.send(startMsg as unknown as RustOutgoing);
      await finish(req, bob, sas);
      assert.equal((await alice.client.getDevice(bobId, bob.deviceId))?.verified, true, "the SDK must trust the Rust device");
      const seen = await bob.machine.getDevice(new wasm.UserId(alice.client.userId!), new wasm.DeviceId(alice.client.deviceId!));
      assert.equal(seen?.isLocallyTrusted(), true, "the Rust side must trust the SDK's device");
    } finally {
      bob.close();
    }
  });

  it("the Rust side requests (to-device), the SDK accepts, the Rust side starts: same emoji, and both trust each other's device", async () => {
    const bob = await WasmPeer.login(hs.baseUrl, bobId, PASSWORD);
    try {
      await bob.track(alice.client.userId!);
      await alice.client.refreshUserKeys(bobId);
      const incoming = new Promise<VerificationRequest>((resolve) => alice.client.once("verification.request", resolve));
      const device = await bob.machine.getDevice(new wasm.UserId(alice.client.userId!), new wasm.DeviceId(alice.client.deviceId!));
      assert.ok(device, "the Rust side does not know the SDK's device");
      const [rustReq, requestMsg] = device.requestVerification([wasm.VerificationMethod.SasV1]);
      await bob.send(requestMsg as unknown as RustOutgoing);
      const req = await incoming;
      assert.equal(req.otherUserId, bobId);
      assert.equal(req.otherDeviceId, bob.deviceId);
      assert.equal(req.initiatedByUs, false);
      await req.accept();
      await bob.syncUntil(() => rustReq.isReady(), "the Rust side seeing the SDK ready");
      const started = await rustReq.startSas();
      assert.ok(started);
      const [sas, startMsg] = started;
      await bob.send(startMsg as unknown as RustOutgoing);
      await finish(req, bob, sas);
      await waitUntil(async () => (await alice.client.getDevice(bobId, bob.deviceId))?.verified === true, "the SDK trusting the Rust device");
      const seen = await bob.machine.getDevice(new wasm.UserId(alice.client.userId!), new wasm.DeviceId(alice.client.deviceId!));
      assert.equal(seen?.isLocallyTrusted(), true);
    } finally {
      bob.close();
    }
  });
});

describe("in-room SAS verification (encrypted DM) with matrix-sdk-crypto-wasm, cross-signing on both sides", { timeout: 300_000 }, () => {
  let hs: SynapseHandle;
  let alice: { client: MatrixClient; rec: Recorder };
  let bob: WasmPeer;
  let roomId = "";

  before(async () => {
    hs = await synapse();
    const aliceId = (await hs.registerUser(uniqueName("irsalice"), PASSWORD)).userId;
    const bobId = (await hs.registerUser(uniqueName("irsbob"), PASSWORD)).userId;
    alice = await startClient(hs, aliceId, tempDir());
    await alice.client.bootstrapCrossSigning({ password: PASSWORD });
    bob = await WasmPeer.login(hs.baseUrl, bobId, PASSWORD);
    await bob.bootstrapCrossSigning(PASSWORD);
    const room = await alice.client.createRoom({ encrypted: true, invite: [bobId] });
    roomId = room.roomId;
    await bob.join(roomId, { encryptedFor: [aliceId, bobId] });
    await alice.rec.waitFor(() => alice.rec.events.some((e) => e.roomId === roomId && e.stateKey === bobId && e.content.membership === "join"), "Bob joining");
    await bob.track(aliceId);
    await waitUntil(async () => {
      await alice.client.refreshUserKeys(bobId);
      return (await alice.client.getUserIdentity(bobId)).masterKey !== null;
    }, "Alice seeing Bob's cross-signing identity");
  });
  after(async () => {
    await alice.client.close();
    bob.close();
  });

  /** The Rust side's view of Alice's identity, after a sync (the signatures it uploaded come back as a device-list change). */
  async function rustSeesAliceVerified(): Promise<boolean> {
    await bob.sync();
    const id = await bob.machine.getIdentity(new wasm.UserId(alice.client.userId!));
    return id instanceof wasm.OtherUserIdentity && id.isVerified();
  }

  it("the Rust side requests in the room, the SDK accepts: same emoji; each side then cross-signs the other's identity (uploaded signatures)", async () => {
    const aliceId = new wasm.UserId(alice.client.userId!);
    const identity = await bob.machine.getIdentity(aliceId);
    assert.ok(identity instanceof wasm.OtherUserIdentity, "the Rust side does not know Alice's cross-signing identity");
    const incoming = new Promise<VerificationRequest>((resolve) => alice.client.once("verification.request", resolve));
    const sent = await bob.sendRoomEvent(roomId, "m.room.message", identity.verificationRequestContent([wasm.VerificationMethod.SasV1]));
    const rustReq = identity.requestVerification(new wasm.RoomId(roomId), new wasm.EventId(sent.event_id as string), [wasm.VerificationMethod.SasV1]);
    const req = await incoming;
    assert.equal(req.transport, "room");
    assert.equal(req.roomId, roomId);
    assert.equal(req.flowId, sent.event_id);
    await req.accept();
    await bob.syncUntil(() => rustReq.isReady(), "the Rust side seeing the SDK ready");
    const started = await rustReq.startSas();
    assert.ok(started);
    const [sas, startMsg] = started;
    await bob.send(startMsg as unknown as RustOutgoing);
    await finish(req, bob, sas);
    // Every verification message of the SDK went into the room encrypted, related to the request.
    const fromAlice = bob.roomEvents.filter((e) => e.roomId === roomId && e.sender === alice.client.userId && e.type.startsWith("m.key.verification."));
    assert.deepEqual([...new Set(fromAlice.map((e) => e.type))].sort(), ["m.key.verification.accept", "m.key.verification.done", "m.key.verification.key", "m.key.verification.mac", "m.key.verification.ready"]);
    assert.ok(fromAlice.every((e) => e.encrypted && (e.content["m.relates_to"] as Record<string, unknown> | undefined)?.event_id === sent.event_id));
    assert.deepEqual(req.sas === null ? null : (await req.done).masterKey, (await alice.client.getUserIdentity(bob.userId)).masterKey, "the SAS must have verified Bob's master key");
    await waitUntil(async () => (await alice.client.getUserIdentity(bob.userId)).verified, "Alice trusting Bob's identity");
    await waitUntil(rustSeesAliceVerified, "the Rust side trusting Alice's identity");
  });

  it("the SDK requests in the room, the Rust side accepts and starts: same emoji, done on both sides", async () => {
    const req = await alice.client.getRoom(roomId).requestVerification(bob.userId);
    assert.equal(req.transport, "room");
    let rustReq: wasm.VerificationRequest | undefined;
    await bob.syncUntil(() => (rustReq = bob.machine.getVerificationRequest(new wasm.UserId(alice.client.userId!), req.flowId)) !== undefined, "the request reaching the Rust side");
    await bob.send(rustReq!.acceptWithMethods([wasm.VerificationMethod.SasV1]) as unknown as RustOutgoing);
    await req.waitFor((r) => r.phase === "ready");
    await req.startSas();
    let sas: wasm.Sas | undefined;
    await bob.syncUntil(() => (sas = rustReq!.getVerification() as wasm.Sas | undefined) !== undefined, "the Rust side seeing the start");
    const accepted = sas!.accept();
    if (accepted) await bob.send(accepted as unknown as RustOutgoing);
    await finish(req, bob, sas!);
  });
});
