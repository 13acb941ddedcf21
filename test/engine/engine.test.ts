import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { KeyServer, Peer, roomState } from "./helpers.js";
import type { RoomDecryptResult } from "../../src/protocol/api.js";
import { UnknownDevicesError, UnknownDeviceKeysError } from "../../src/protocol/errors.js";

const ROOM = "!room:example.org";
type Json = Record<string, unknown>;

async function pair(): Promise<{ server: KeyServer; alice: Peer; bob: Peer }> {
  const server = new KeyServer();
  const alice = await Peer.create(server, "@alice:example.org", "ALICEDEV");
  const bob = await Peer.create(server, "@bob:example.org", "BOBDEV");
  const members = { [alice.userId]: "join", [bob.userId]: "join" };
  await alice.sync({ rooms: [roomState(ROOM, members)] });
  await bob.sync({ rooms: [roomState(ROOM, members)] });
  await alice.flush();
  await bob.flush();
  return { server, alice, bob };
}

function ok(r: RoomDecryptResult | undefined): RoomDecryptResult & { ok: true } {
  assert.ok(r, "no result");
  assert.equal(r.ok, true, r.ok ? "" : `${r.code}: ${r.message}`);
  return r as RoomDecryptResult & { ok: true };
}

describe("engine: Olm and Megolm between two engines", () => {
  it("uploads signed device keys, 50 one-time keys and a fallback key", async () => {
    const server = new KeyServer();
    const alice = await Peer.create(server, "@alice:example.org", "A1");
    const dk = server.deviceKeys.get(alice.userId)!.get("A1")!;
    assert.deepEqual(dk.algorithms, ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"]);
    assert.equal((dk.keys as Json)["ed25519:A1"], alice.ed25519);
    assert.equal(server.otks.get(`${alice.userId}|A1`)!.size, 50);
    assert.ok(server.fallback.has(`${alice.userId}|A1`));
    // Nothing more to upload while the server has enough keys.
    assert.deepEqual(await alice.engine.outgoingRequests(), []);
  });

  it("tops up one-time keys when the server count drops", async () => {
    const server = new KeyServer();
    const alice = await Peer.create(server, "@alice:example.org", "A1");
    await alice.sync({ oneTimeKeyCounts: { signed_curve25519: 10 } });
    const reqs = await alice.engine.outgoingRequests();
    const up = reqs.find((r) => r.kind === "keys_upload");
    assert.ok(up);
    assert.equal(Object.keys((JSON.parse(up.body) as Json).one_time_keys as Json).length, 40);
  });

  it("treats 'already exists' on upload as published instead of retrying forever", async () => {
    const server = new KeyServer();
    const alice = await Peer.create(server, "@alice:example.org", "A1");
    await alice.sync({ oneTimeKeyCounts: { signed_curve25519: 0 } });
    const [up] = await alice.engine.outgoingRequests();
    assert.ok(up);
    server.handle(alice.userId, "A1", up); // the upload succeeded but its answer was lost
    await alice.engine.markRequestAsFailed(up.id, "keys_upload", "M_INVALID_PARAM", "One time key signed_curve25519:AAAAAQ already exists");
    await alice.sync({ oneTimeKeyCounts: { signed_curve25519: 50 } });
    assert.deepEqual(await alice.engine.outgoingRequests(), []);
  });

  it("rotates the fallback key when the server reports it used", async () => {
    const server = new KeyServer();
    const alice = await Peer.create(server, "@alice:example.org", "A1");
    await alice.sync({ unusedFallbackKeyTypes: [], oneTimeKeyCounts: { signed_curve25519: 50 } });
    const [up] = await alice.engine.outgoingRequests();
    assert.ok(up && (JSON.parse(up.body) as Json).fallback_keys);
  });

  it("exchanges an encrypted message and the sender reads its own message", async () => {
    const { alice, bob } = await pair();
    const ev = await alice.encrypt(ROOM, "hello bob", "$e1");
    const res = await bob.sync();
    assert.equal(res.roomKeys.length, 1);
    const [r] = await bob.engine.decryptRoomEvents(ROOM, [ev]);
    const d = ok(r);
    assert.equal(JSON.parse(d.plaintextJson).content.body, "hello bob");
    assert.equal(d.senderCurve25519, alice.curve25519);
    assert.equal(d.claimedEd25519, alice.ed25519);
    assert.equal(d.senderDeviceId, "ALICEDEV");
    assert.equal(d.verification, "unverified");
    const [own] = await alice.engine.decryptRoomEvents(ROOM, [ev]);
    assert.equal(ok(own).verification, "own");
  });

  it("shares the key once for many messages, and reports verified senders", async () => {
    const { server, alice, bob } = await pair();
    await bob.engine.setDeviceFlags(alice.userId, "ALICEDEV", { verified: true });
    const events = [];
    for (let i = 0; i < 5; i++) events.push(await alice.encrypt(ROOM, `m${i}`, `$m${i}`));
    assert.equal(server.inbox.get(`${bob.userId}|BOBDEV`)!.length, 1);
    await bob.sync();
    const rs = await bob.engine.decryptRoomEvents(ROOM, events);
    assert.deepEqual(rs.map((r) => ok(r).messageIndex), [0, 1, 2, 3, 4]);
    assert.ok(rs.every((r) => ok(r).verification === "verified"));
  });

  it("detects replays with a different event ID, persistently, and allows identical re-decryption", async () => {
    const { alice, bob } = await pair();
    const ev = await alice.encrypt(ROOM, "once", "$orig");
    await bob.sync();
    ok((await bob.engine.decryptRoomEvents(ROOM, [ev]))[0]);
    ok((await bob.engine.decryptRoomEvents(ROOM, [ev]))[0]);
    // Restart Bob on the same store: the record survives.
    const bob2 = await Peer.create(bob.server, bob.userId, bob.deviceId, bob.store);
    const [r] = await bob2.engine.decryptRoomEvents(ROOM, [{ ...ev, event_id: "$replayed" }]);
    assert.equal(r!.ok, false);
    assert.equal(!r!.ok && r!.code, "replay");
  });

  it("binds a session to its room: the same ciphertext does not decrypt in another room", async () => {
    const { alice, bob } = await pair();
    const ev = await alice.encrypt(ROOM, "hi", "$x");
    await bob.sync();
    const [r] = await bob.engine.decryptRoomEvents("!other:example.org", [ev]);
    assert.equal(!r!.ok && r!.code, "missing_session");
  });

  it("keeps undecryptable events and decrypts them when the key arrives", async () => {
    const { alice, bob } = await pair();
    const ev = await alice.encrypt(ROOM, "late", "$late");
    const [r] = await bob.engine.decryptRoomEvents(ROOM, [ev]); // key not synced yet
    assert.equal(!r!.ok && r!.code, "missing_session");
    const res = await bob.sync();
    assert.equal(res.redecrypted.length, 1);
    assert.equal(JSON.parse((res.redecrypted[0]!.results[0] as RoomDecryptResult & { ok: true }).plaintextJson).content.body, "late");
  });

  it("rotates the session when a member leaves and does not share with them again", async () => {
    const server = new KeyServer();
    const alice = await Peer.create(server, "@alice:example.org", "A");
    const bob = await Peer.create(server, "@bob:example.org", "B");
    const carol = await Peer.create(server, "@carol:example.org", "C");
    const members = { [alice.userId]: "join", [bob.userId]: "join", [carol.userId]: "join" };
    await alice.sync({ rooms: [roomState(ROOM, members)] });
    await alice.flush();
    const e1 = await alice.encrypt(ROOM, "all", "$1");
    const s1 = (e1.content as Json).session_id;
    await alice.sync({ rooms: [{ roomId: ROOM, membership: "join", stateEvents: [{ type: "m.room.member", state_key: carol.userId, content: { membership: "leave" } }] }] });
    server.inbox.set(`${carol.userId}|C`, []);
    const e2 = await alice.encrypt(ROOM, "no carol", "$2");
    assert.notEqual((e2.content as Json).session_id, s1);
    assert.equal(server.inbox.get(`${carol.userId}|C`)!.length, 0);
    assert.equal(server.inbox.get(`${bob.userId}|B`)!.length, 2);
  });

  it("rotates after rotation_period_msgs messages", async () => {
    const server = new KeyServer();
    const alice = await Peer.create(server, "@alice:example.org", "A");
    const bob = await Peer.create(server, "@bob:example.org", "B");
    await alice.sync({ rooms: [roomState(ROOM, { [alice.userId]: "join", [bob.userId]: "join" }, { algorithm: "m.megolm.v1.aes-sha2", rotation_period_msgs: 2 })] });
    await alice.flush();
    const ids = [];
    for (let i = 0; i < 3; i++) ids.push(((await alice.encrypt(ROOM, "x", `$${i}`)).content as Json).session_id);
    assert.equal(ids[0], ids[1]);
    assert.notEqual(ids[1], ids[2]);
  });

  it("never shares with a blacklisted device and rotates when one holding the key is blacklisted", async () => {
    const { server, alice, bob } = await pair();
    const e1 = await alice.encrypt(ROOM, "before", "$1");
    await alice.engine.setDeviceFlags(bob.userId, "BOBDEV", { blacklisted: true });
    server.inbox.set(`${bob.userId}|BOBDEV`, []);
    const e2 = await alice.encrypt(ROOM, "after", "$2");
    assert.notEqual((e2.content as Json).session_id, (e1.content as Json).session_id);
    const inbox = server.inbox.get(`${bob.userId}|BOBDEV`)!;
    assert.deepEqual(inbox.map((e) => e.type), ["m.room_key.withheld"]);
  });

  it("throws UnknownDevicesError with verifyDevices until devices are marked", async () => {
    const { alice, bob } = await pair();
    await assert.rejects(alice.encrypt(ROOM, "x", "$1", true), (e: unknown) => e instanceof UnknownDevicesError && Object.keys(e.userDevices).includes(bob.userId));
    await alice.engine.setDeviceFlags(bob.userId, "BOBDEV", { ignored: true });
    await alice.encrypt(ROOM, "x", "$1", true);
    await assert.rejects(alice.engine.setDeviceFlags(bob.userId, "NOPE", { verified: true }), UnknownDeviceKeysError);
  });

  it("refuses a changed ed25519 key for a known device", async () => {
    const { server, alice, bob } = await pair();
    // Bob's device is re-created with new keys under the same ID.
    const impostor = await Peer.create(new KeyServer(), bob.userId, "BOBDEV");
    server.deviceKeys.get(bob.userId)!.set("BOBDEV", impostor.server.deviceKeys.get(bob.userId)!.get("BOBDEV")!);
    await alice.sync({ deviceLists: { changed: [bob.userId] } });
    await alice.flush();
    const [d] = alice.engine.getDevices(bob.userId);
    assert.equal(d!.ed25519, bob.ed25519);
  });

  it("rejects device keys with a bad self-signature or mismatched IDs", async () => {
    const { server, alice, bob } = await pair();
    const good = server.deviceKeys.get(bob.userId)!.get("BOBDEV")!;
    server.deviceKeys.get(bob.userId)!.set("EVIL", { ...good, device_id: "EVIL" });
    server.deviceKeys.get(bob.userId)!.set("EVIL2", { ...good });
    await alice.sync({ deviceLists: { changed: [bob.userId] } });
    await alice.flush();
    assert.deepEqual(alice.engine.getDevices(bob.userId).map((d) => d.deviceId), ["BOBDEV"]);
  });

  it("reports malformed to-device messages and corrupted ciphertext with reason codes, without throwing", async () => {
    const { alice, bob } = await pair();
    const ev = await alice.encrypt(ROOM, "hi", "$1");
    const res = await bob.sync({
      toDevice: [
        { type: "m.room.encrypted", sender: alice.userId, content: { algorithm: "m.olm.v1.curve25519-aes-sha2", sender_key: alice.curve25519, ciphertext: { [bob.curve25519]: { type: 0, body: "!!notbase64" } } } },
        { type: "m.room.encrypted", sender: alice.userId, content: { algorithm: "bogus" } },
        { nonsense: true },
        "string",
      ],
    });
    assert.equal(res.roomKeys.length, 1);
    assert.deepEqual(res.toDeviceFailures.map((f) => f.code).sort(), ["malformed", "malformed", "olm_bad_prekey", "unknown_algorithm"].sort());
    const content = ev.content as Json;
    const bad = { ...ev, content: { ...content, ciphertext: String(content.ciphertext).slice(0, -4) + "AAAA" } };
    const [r] = await bob.engine.decryptRoomEvents(ROOM, [bad, { event_id: "$junk" }, null]);
    assert.equal(!r!.ok && r!.code, "malformed");
  });

  it("re-processing the same to-device batch after a crash is harmless", async () => {
    const { server, alice, bob } = await pair();
    await alice.encrypt(ROOM, "hi", "$1");
    const batch = server.inbox.get(`${bob.userId}|BOBDEV`)!.slice();
    const r1 = await bob.sync();
    assert.equal(r1.roomKeys.length, 1);
    const r2 = await bob.sync({ toDevice: batch });
    assert.equal(r2.toDeviceFailures.length, 0);
  });

  it("tells blacklisted devices the key is withheld, and the recipient reports the withheld code", async () => {
    const { alice, bob } = await pair();
    await alice.engine.setDeviceFlags(bob.userId, "BOBDEV", { blacklisted: true });
    const ev = await alice.encrypt(ROOM, "not for bob", "$w");
    const res = await bob.sync();
    assert.equal(res.roomKeys.length, 0);
    const [r] = await bob.engine.decryptRoomEvents(ROOM, [ev]);
    assert.equal(r!.ok, false);
    assert.equal(!r!.ok && r!.code, "withheld");
    assert.equal(!r!.ok && r!.withheldCode, "m.blacklisted");
    // Only once per session: a second message sends no second notice.
    await alice.encrypt(ROOM, "still not", "$w2");
    assert.equal(alice.server.inbox.get(`${bob.userId}|BOBDEV`)!.length, 0);
  });

  it("exports sessions at their first known index and imports them as unauthenticated, decrypting waiting events", async () => {
    const { server, alice, bob } = await pair();
    const ev = await alice.encrypt(ROOM, "exported", "$ex");
    await bob.sync();
    const page = bob.engine.exportRoomKeysPage(100);
    assert.equal(page.keys.length, 1);
    assert.equal(page.next, null);
    const carol = await Peer.create(server, "@carol:example.org", "C");
    const [before] = await carol.engine.decryptRoomEvents(ROOM, [ev]);
    assert.equal(!before!.ok && before!.code, "missing_session");
    const res = await carol.engine.importRoomKeys([...page.keys, { algorithm: "m.unknown" }, "junk"]);
    assert.equal(res.imported, 1);
    assert.equal(res.skipped, 2);
    const late = res.redecrypted[0]!.results[0]!;
    assert.equal(ok(late).verification, "unauthenticated");
    assert.equal((await carol.engine.importRoomKeys(page.keys)).imported, 0, "re-import replaced an equal session");
  });

  it("refuses room keys for rooms we are not in", async () => {
    const server = new KeyServer();
    const alice = await Peer.create(server, "@alice:example.org", "A");
    const bob = await Peer.create(server, "@bob:example.org", "B");
    await alice.sync({ rooms: [roomState(ROOM, { [alice.userId]: "join", [bob.userId]: "join" })] });
    await alice.flush();
    await alice.encrypt(ROOM, "x", "$1");
    const res = await bob.sync(); // Bob's engine never saw himself in ROOM
    assert.equal(res.roomKeys.length, 0);
  });

  it("keeps a __proto__ member under the signature", async () => {
    const { canonicalJson } = await import("../../workers/engine/canonicalJson.js");
    const obj = JSON.parse('{"b":1,"__proto__":{"x":1},"a":2}') as Json;
    assert.equal(canonicalJson(obj), '{"__proto__":{"x":1},"a":2,"b":1}');
  });
});
