import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { Peer, ownDevicesWithHistory, pairInRoom, wedgedOlmEvent } from "./helpers.js";
import type { RoomDecryptResult } from "../../src/protocol/api.js";

const ROOM = "!room:example.org";
type Json = Record<string, unknown>;

const setup = (): ReturnType<typeof ownDevicesWithHistory> => ownDevicesWithHistory(ROOM);

describe("engine: key requests and forwarding among own devices", () => {
  it("requests a missing key once, the other device answers, the key is added with the forwarding chain and the request cancelled", async () => {
    const { a1, a2, ev } = await setup();
    a2.engine.setKeyRequestsEnabled(true);
    await a2.engine.setDeviceFlags(a1.userId, "A1", { verified: true });
    const [r] = await a2.engine.decryptRoomEvents(ROOM, [ev]);
    assert.equal(!r!.ok && r!.code, "missing_session");
    await a2.engine.decryptRoomEvents(ROOM, [{ ...ev, event_id: "$h2" }]); // same session: no second request
    const reqs = (await a2.engine.outgoingRequests()).filter((x) => x.kind === "to_device");
    assert.equal(reqs.length, 1);
    assert.equal((reqs[0] as { eventType: string }).eventType, "m.room_key_request");
    for (const x of reqs) await a2.send(x);

    const seen = await a1.sync();
    assert.equal(seen.keyRequests.length, 1);
    assert.equal(seen.keyRequests[0]!.deviceId, "A2");
    const claim = a1.engine.prepareKeyForwarding(["A2"]);
    if (claim) await a1.send(claim);
    for (const x of await a1.engine.answerKeyRequests(seen.keyRequests)) await a1.send(x);

    const got = await a2.sync();
    assert.equal(got.forwardedKeys.length, 1);
    const late = got.redecrypted[0]!.results[0] as RoomDecryptResult & { ok: true };
    assert.equal(late.ok, true);
    assert.equal(late.verification, "unauthenticated");
    assert.deepEqual(late.forwardingChain, [a1.curve25519]);
    const cancel = (await a2.engine.outgoingRequests()).filter((x) => x.kind === "to_device");
    assert.equal(cancel.length, 1);
    assert.match(cancel[0]!.body, /request_cancellation/);
  });

  it("collects a request for a session we have only from another device of ours: not from another user, not from this device, not a malformed one", async () => {
    const { a1, bob } = await setup();
    const held = a1.engine.exportRoomKeysPage(10).keys[0]!;
    const body = { algorithm: "m.megolm.v1.aes-sha2", room_id: ROOM, sender_key: held.sender_key, session_id: held.session_id };
    const request = (requestId: string, deviceId: string): Json => ({ action: "request", request_id: requestId, requesting_device_id: deviceId, body });
    const res = await a1.sync({
      toDevice: [
        { type: "m.room_key_request", sender: bob.userId, content: request("r1", "B") }, // another user, for a session A1 has
        { type: "m.room_key_request", sender: a1.userId, content: request("r2", "A1") }, // this very device
        { type: "m.room_key_request", sender: a1.userId, content: { action: "request" } }, // malformed
        { type: "m.room_key_request", sender: a1.userId, content: request("r3", "A2") }, // the same body from our other device
      ],
    });
    assert.deepEqual(res.keyRequests, [{ requestId: "r3", deviceId: "A2", roomId: ROOM, senderKey: held.sender_key, sessionId: held.session_id }]);
  });

  it("never answers a blacklisted device, even with an Olm session to it and the session it asks for", async () => {
    const { a1, a2, ev } = await setup();
    a2.engine.setKeyRequestsEnabled(true);
    await a2.engine.decryptRoomEvents(ROOM, [ev]);
    for (const x of await a2.engine.outgoingRequests()) await a2.send(x);
    const seen = await a1.sync();
    assert.equal(seen.keyRequests.length, 1);
    // Open the Olm channel to A2 while it is still allowed.
    const claim = a1.engine.prepareKeyForwarding(["A2"]);
    assert.ok(claim, "A1 claims a one-time key of A2");
    await a1.send(claim);
    assert.equal(a1.store.getOlmSessions(a2.curve25519).length, 1, "A1 has an Olm session with A2");
    await a1.engine.setDeviceFlags(a1.userId, "A2", { blacklisted: true });
    assert.equal(a1.engine.prepareKeyForwarding(["A2"]), null);
    assert.deepEqual(await a1.engine.answerKeyRequests(seen.keyRequests), []);
  });

  it("re-sends outstanding requests after a restart", async () => {
    const { a2, ev } = await setup();
    a2.engine.setKeyRequestsEnabled(true);
    await a2.engine.decryptRoomEvents(ROOM, [ev]);
    for (const x of await a2.engine.outgoingRequests()) await a2.send(x);
    assert.equal((await a2.engine.outgoingRequests()).filter((x) => x.kind === "to_device").length, 0);
    const requestsTo = (): Json[] => (a2.server.inbox.get("@alice:example.org|A1") ?? []).filter((e) => e.type === "m.room_key_request");
    assert.equal(requestsTo().length, 1);
    await Peer.create(a2.server, a2.userId, a2.deviceId, a2.store); // its first outgoing-requests pass re-sends
    assert.equal(requestsTo().length, 2);
    assert.equal((requestsTo()[1]!.content as Json).action, "request");
  });
});

describe("engine: unwedging", () => {
  it("creates a new Olm session and sends m.dummy when an Olm message cannot be decrypted, at most once per hour", async () => {
    const { alice, bob } = await pairInRoom(ROOM);
    await alice.encrypt(ROOM, "hi", "$1");
    await bob.sync();
    const garbage = wedgedOlmEvent(alice, bob);
    const r = await bob.sync({ toDevice: [garbage] });
    assert.equal(r.toDeviceFailures[0]!.code, "olm_no_session");
    const claim = (await bob.engine.outgoingRequests()).filter((x) => x.kind === "keys_claim");
    assert.equal(claim.length, 1);
    await bob.send(claim[0]!);
    const dummy = (await bob.engine.outgoingRequests()).filter((x) => x.kind === "to_device");
    assert.equal(dummy.length, 1);
    await bob.send(dummy[0]!);
    const got = await alice.sync();
    assert.deepEqual(got.toDevice.map((t) => t.type), ["m.dummy"]);
    // A second failure within the hour does not unwedge again.
    await bob.sync({ toDevice: [{ ...garbage, content: { ...(garbage.content as Record<string, unknown>), ciphertext: { [bob.curve25519]: { type: 1, body: "AwogAAAB" } } } }] });
    assert.equal((await bob.engine.outgoingRequests()).length, 0);
  });
});
