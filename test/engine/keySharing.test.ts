import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { KeyServer, Peer, roomState } from "./helpers.js";
import type { RoomDecryptResult } from "../../src/protocol/api.js";

const ROOM = "!room:example.org";
type Json = Record<string, unknown>;

async function setup(): Promise<{ server: KeyServer; a1: Peer; a2: Peer; bob: Peer; ev: Json }> {
  const server = new KeyServer();
  const a1 = await Peer.create(server, "@alice:example.org", "A1");
  const bob = await Peer.create(server, "@bob:example.org", "B");
  const members = { [a1.userId]: "join", [bob.userId]: "join" };
  for (const p of [a1, bob]) {
    await p.sync({ rooms: [roomState(ROOM, members)] });
    await p.flush();
  }
  const ev = await bob.encrypt(ROOM, "history", "$h");
  await a1.sync();
  // Alice's second device arrives later: it never got the room key.
  const a2 = await Peer.create(server, "@alice:example.org", "A2");
  await a2.sync({ rooms: [roomState(ROOM, members)] });
  await a2.flush();
  await a1.sync({ deviceLists: { changed: [a1.userId] } });
  await a1.flush();
  return { server, a1, a2, bob, ev };
}

describe("engine: key requests and forwarding among own devices", () => {
  it("requests a missing key once, the other device answers, the key is added with the forwarding chain and the request cancelled", async () => {
    const { a1, a2, ev } = await setup();
    a2.engine.setKeyRequestsEnabled(true);
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

  it("ignores requests from other users and from this device, and forwarded keys it did not request", async () => {
    const { server, a1, a2, bob } = await setup();
    const foreign = { action: "request", request_id: "r1", requesting_device_id: "B", body: { algorithm: "m.megolm.v1.aes-sha2", room_id: ROOM, sender_key: bob.curve25519, session_id: "x" } };
    const res = await a1.sync({ toDevice: [{ type: "m.room_key_request", sender: bob.userId, content: foreign }, { type: "m.room_key_request", sender: a1.userId, content: { ...foreign, requesting_device_id: "A1" } }, { type: "m.room_key_request", sender: a1.userId, content: { action: "request" } }] });
    assert.equal(res.keyRequests.length, 0);
    // A1 answers a request A2 never made: A2 ignores the key.
    const inbound = a1.engine.exportRoomKeysPage(10).keys[0]!;
    const claim = a1.engine.prepareKeyForwarding(["A2"]);
    if (claim) await a1.send(claim);
    for (const x of await a1.engine.answerKeyRequests([{ requestId: "nope", deviceId: "A2", roomId: ROOM, senderKey: String(inbound.sender_key), sessionId: String(inbound.session_id) }])) await a1.send(x);
    const got = await a2.sync();
    assert.equal(got.forwardedKeys.length, 0);
    assert.equal(got.roomKeys.length, 0);
    void server;
  });

  it("never answers a blacklisted device", async () => {
    const { a1, a2, ev } = await setup();
    a2.engine.setKeyRequestsEnabled(true);
    await a2.engine.decryptRoomEvents(ROOM, [ev]);
    for (const x of await a2.engine.outgoingRequests()) await a2.send(x);
    const seen = await a1.sync();
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
    const server = new KeyServer();
    const alice = await Peer.create(server, "@alice:example.org", "A");
    const bob = await Peer.create(server, "@bob:example.org", "B");
    const members = { [alice.userId]: "join", [bob.userId]: "join" };
    for (const p of [alice, bob]) {
      await p.sync({ rooms: [roomState(ROOM, members)] });
      await p.flush();
    }
    await alice.encrypt(ROOM, "hi", "$1");
    await bob.sync();
    const garbage = { type: "m.room.encrypted", sender: alice.userId, content: { algorithm: "m.olm.v1.curve25519-aes-sha2", sender_key: alice.curve25519, ciphertext: { [bob.curve25519]: { type: 1, body: "AwogAAAA" } } } };
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
    await bob.sync({ toDevice: [{ ...garbage, content: { ...garbage.content, ciphertext: { [bob.curve25519]: { type: 1, body: "AwogAAAB" } } } }] });
    assert.equal((await bob.engine.outgoingRequests()).length, 0);
  });
});
