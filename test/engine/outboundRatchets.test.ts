/**
 * Outbound Megolm ratchets in memory (workers/engine/megolm/OutboundRatchets.ts), real libolm:
 * encryptions after a session's in-use mark write nothing; an engine that did not close cleanly
 * leaves its sessions marked and the next engine discards them (a new share, never a reused
 * message index); a clean close writes the ratchets so the next engine goes on with them; a store
 * that drops the mark gets one write per encryption, as before; rotation by count still holds.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { MemoryCryptoStore } from "../../workers/store/memory/MemoryCryptoStore.js";
import type { StoreChanges } from "../../src/protocol/store.js";
import type { RoomDecryptResult } from "../../src/protocol/api.js";
import { KeyServer, Peer, pairInRoom, roomState } from "./helpers.js";

const ROOM = "!ratchet:example.org";
type Json = Record<string, unknown>;

/** Count the batches a store commits (each one a transaction, an fsync on SQLite). */
function countWrites(store: MemoryCryptoStore): { batches: StoreChanges[] } {
  const orig = store.saveChanges.bind(store);
  const seen = { batches: [] as StoreChanges[] };
  store.saveChanges = (c) => {
    seen.batches.push(c);
    return orig(c);
  };
  return seen;
}

/** One send the way the client does it: the one-call fast path, else query/claim/share then encrypt. */
async function send(p: Peer, body: string, eventId: string): Promise<Json> {
  const content = JSON.stringify({ msgtype: "m.text", body });
  const fast = await p.engine.encryptRoomEventIfReady(ROOM, "m.room.message", content, false);
  if (fast !== null) return event(p, eventId, JSON.parse(fast) as Json);
  return p.encrypt(ROOM, body, eventId);
}
const event = (p: Peer, eventId: string, content: Json): Json => ({ type: "m.room.encrypted", event_id: eventId, sender: p.userId, origin_server_ts: 1000, content });

/** Bob receives his room keys and decrypts `events`; every one must decrypt, and no (session, index) may repeat. */
async function decryptAll(bob: Peer, events: Json[]): Promise<{ session: string; index: number; body: unknown }[]> {
  await bob.sync();
  const results: RoomDecryptResult[] = await bob.engine.decryptRoomEvents(ROOM, events);
  const out = results.map((r, i) => {
    assert.ok(r.ok, `event ${i} did not decrypt: ${r.ok ? "" : `${r.code} ${r.message}`}`);
    return { session: r.sessionId, index: r.messageIndex, body: ((JSON.parse(r.plaintextJson) as Json).content as Json).body };
  });
  const pairs = out.map((x) => `${x.session}#${x.index}`);
  assert.equal(new Set(pairs).size, pairs.length, `a (session, message index) pair was used twice: ${pairs.join(" ")}`);
  return out;
}

/** A new engine for Alice on the same store, as a restarted worker would be (the old one is left as it was). */
async function restart(alice: Peer): Promise<Peer> {
  return Peer.create(alice.server, alice.userId, alice.deviceId, alice.store);
}

describe("engine: outbound ratchets in memory", () => {
  it("after the first send of a session, sends commit no store batch (the ratchet advances in memory)", async () => {
    const { alice, bob } = await pairInRoom(ROOM);
    const events = [await send(alice, "shares the key", "$0")];
    const w = countWrites(alice.store);
    for (let i = 1; i <= 20; i++) events.push(await send(alice, `m${i}`, `$${i}`));
    assert.equal(w.batches.length, 0, `20 sends committed ${w.batches.length} batches`);
    const got = await decryptAll(bob, events);
    assert.deepEqual(got.map((x) => x.index), Array.from({ length: 21 }, (_, i) => i));
  });

  it("an engine that did not close leaves its session marked: the next one discards it, shares a new session, and never reuses an index", async () => {
    const { alice, bob } = await pairInRoom(ROOM);
    const events: Json[] = [];
    for (let i = 0; i < 5; i++) events.push(await send(alice, `before ${i}`, `$b${i}`));
    const first = (events[0]!.content as Json).session_id;
    // Crash: no close; the stored pickle is behind the five indices used.
    const alice2 = await restart(alice);
    for (let i = 0; i < 5; i++) events.push(await send(alice2, `after ${i}`, `$a${i}`));
    const got = await decryptAll(bob, events);
    assert.deepEqual(got.map((x) => x.body), [0, 1, 2, 3, 4].map((i) => `before ${i}`).concat([0, 1, 2, 3, 4].map((i) => `after ${i}`)));
    assert.notEqual(got[5]!.session, first, "the restarted engine went on with the crashed engine's session");
    assert.equal(new Set(got.slice(5).map((x) => x.session)).size, 1, "one new session after the restart");
  });

  it("a clean close writes the ratchets: the next engine goes on with the same session at the next index, without a share", async () => {
    const { alice, bob } = await pairInRoom(ROOM);
    const events: Json[] = [];
    for (let i = 0; i < 4; i++) events.push(await send(alice, `before ${i}`, `$b${i}`));
    await alice.engine.close();
    assert.equal(alice.store.getOutboundGroupSession(ROOM)?.inUseBy, undefined, "the mark was not cleared at close");
    assert.equal(alice.store.getOutboundGroupSession(ROOM)?.messageCount, 4);
    const alice2 = await restart(alice);
    const w = countWrites(alice2.store);
    const fast = await alice2.engine.encryptRoomEventIfReady(ROOM, "m.room.message", JSON.stringify({ msgtype: "m.text", body: "after 0" }), false);
    assert.ok(fast !== null, "the send after a clean restart did not take the one-call path");
    events.push(event(alice2, "$a0", JSON.parse(fast) as Json));
    assert.equal(w.batches.length, 1, "the first encryption of the lifetime commits the mark");
    assert.ok(w.batches[0]!.outboundGroupSessions?.[0]?.inUseBy, "that batch carries the mark");
    for (let i = 1; i < 4; i++) events.push(await send(alice2, `after ${i}`, `$a${i}`));
    assert.equal(w.batches.length, 1, "later encryptions committed batches");
    const got = await decryptAll(bob, events);
    assert.equal(new Set(got.map((x) => x.session)).size, 1, "the session was replaced although the engine closed cleanly");
    assert.deepEqual(got.map((x) => x.index), [0, 1, 2, 3, 4, 5, 6, 7]);
  });

  it("rotation_period_msgs counts the messages encrypted in memory, across a clean close too", async () => {
    const { alice, bob } = await pairInRoom(ROOM, { encryption: { algorithm: "m.megolm.v1.aes-sha2", rotation_period_msgs: 3 } });
    const events: Json[] = [];
    for (let i = 0; i < 5; i++) events.push(await send(alice, `m${i}`, `$m${i}`));
    await alice.engine.close();
    const alice2 = await restart(alice);
    for (let i = 5; i < 8; i++) events.push(await send(alice2, `m${i}`, `$m${i}`));
    const got = await decryptAll(bob, events);
    const sessions = got.map((x) => x.session);
    assert.deepEqual(got.map((x) => x.index), [0, 1, 2, 0, 1, 2, 0, 1]);
    assert.equal(new Set(sessions).size, 3, `sessions: ${sessions.join(" ")}`);
  });

  it("a store that drops inUseBy gets the ratchet written at every encryption, so a restart without close still reuses no index", async () => {
    const store = new MemoryCryptoStore();
    await store.open();
    const orig = store.saveChanges.bind(store);
    store.saveChanges = (c) => orig({ ...c, ...(c.outboundGroupSessions ? { outboundGroupSessions: c.outboundGroupSessions.map(({ inUseBy: _drop, ...r }) => r) } : {}) });
    const server = new KeyServer();
    const alice = await Peer.create(server, "@alice:example.org", "A", store);
    const bob = await Peer.create(server, "@bob:example.org", "B");
    for (const p of [alice, bob]) {
      await p.sync({ rooms: [roomState(ROOM, { [alice.userId]: "join", [bob.userId]: "join" })] });
      await p.flush();
    }
    const events: Json[] = [await send(alice, "first", "$f")];
    const w = countWrites(store);
    for (let i = 0; i < 3; i++) events.push(await send(alice, `m${i}`, `$m${i}`));
    assert.equal(w.batches.length, 3, "each encryption must commit its ratchet when the store drops the mark");
    const alice2 = await restart(alice);
    for (let i = 3; i < 6; i++) events.push(await send(alice2, `m${i}`, `$m${i}`));
    const got = await decryptAll(bob, events);
    assert.deepEqual(got.map((x) => x.index), [0, 1, 2, 3, 4, 5, 6], "the restarted engine went on with the same session at the next index");
  });
});

describe("engine: sharing a session whose ratchet is in memory", () => {
  it("a device added later gets the key at the live index: it decrypts what follows, not what was sent before it", async () => {
    const { server, alice, bob } = await pairInRoom(ROOM);
    const early: Json[] = [];
    for (let i = 0; i < 3; i++) early.push(await send(alice, `early ${i}`, `$e${i}`));
    const bob2 = await Peer.create(server, bob.userId, "B2");
    await bob2.sync({ rooms: [roomState(ROOM, { [alice.userId]: "join", [bob.userId]: "join" })] });
    await alice.sync({ deviceLists: { changed: [bob.userId] } });
    await alice.flush();
    const later = await send(alice, "later", "$l");
    assert.equal((later.content as Json).session_id, (early[0]!.content as Json).session_id, "a new device alone must not rotate the session");
    await bob2.sync();
    const [ok, ...before] = await bob2.engine.decryptRoomEvents(ROOM, [later, ...early]);
    assert.ok(ok?.ok && ok.messageIndex === 3, `the new device must decrypt index 3: ${JSON.stringify(ok)}`);
    for (const r of before) assert.ok(r && !r.ok, "the new device decrypted a message sent before it got the key");
  });
});
