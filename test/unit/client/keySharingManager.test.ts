/** The key-request listener's `answer` on the client side, with a fake worker and a failing network. */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { EventEmitter } from "eventemitter3";
import { KeySharingManager } from "../../../src/client/keys/KeySharingManager.js";
import { KeyClaimManager } from "../../../src/client/send/KeyClaimManager.js";
import type { OutgoingRequestSender } from "../../../src/client/send/OutgoingRequestSender.js";
import type { Device } from "../../../src/client/Device.js";
import type { RemoteCryptoWorkerApi, SyncChangesResult } from "../../../src/protocol/api.js";
import { NetworkError } from "../../../src/protocol/errors.js";

describe("key-request listener", () => {
  it("answer() never rejects when sending the keys fails: the failure is an error event", async () => {
    const sender = { send: async () => Promise.reject(new NetworkError("connection reset")) } as unknown as OutgoingRequestSender;
    const api = {
      prepareKeyForwarding: async () => null,
      answerKeyRequests: async () => [{ id: "r1", kind: "to_device", eventType: "m.room.encrypted", txnId: "t", body: "{}" }],
    } as unknown as RemoteCryptoWorkerApi;
    const events = new EventEmitter();
    const errors: Error[] = [];
    events.on("error", (e: Error) => errors.push(e));
    const ksm = new KeySharingManager({
      crypto: { ready: true, api },
      events,
      keyClaims: new KeyClaimManager(sender),
      sender,
      userId: () => "@me:x",
      getDevices: async () => [{ deviceId: "A2" } as unknown as Device],
    });
    let answered: Promise<void> | null = null;
    ksm.addKeyRequestListener((_devices, answer) => {
      answered = answer(["A2"]);
    });
    const result: SyncChangesResult = { batchId: "b", toDevice: [], toDeviceFailures: [], roomKeys: [], redecrypted: [], encryptedRooms: [], keyRequests: [{ requestId: "q", deviceId: "A2", roomId: "!r", senderKey: "k", sessionId: "s" }], keyRequestCancellations: [], forwardedKeys: [], secretRequests: [], secretsReceived: [] };
    await ksm.onSyncResult(result);
    assert.ok(answered, "the listener was called");
    const outcome = await (answered as Promise<void>).then(
      () => "resolved",
      () => "rejected",
    );
    assert.equal(outcome, "resolved");
    assert.equal(errors.length, 1);
    assert.ok(errors[0] instanceof NetworkError);
  });
});
