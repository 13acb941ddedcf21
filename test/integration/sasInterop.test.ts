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
