/**
 * What a sync's decryption reads from the store beyond the sessions: rooms whose events all
 * decrypt cost no count of the waiting events, and one sync counts them at most once.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { KeyServer, Peer, STORE_READS, countStoreReads, pairInRoom, roomState } from "./helpers.js";

type Json = Record<string, unknown>;

describe("engine: per-sync store reads of decryption", () => {
  it("a sync whose events all decrypt does not count the waiting events; one with failures in several rooms counts them once", async () => {
    const server = new KeyServer();
    const alice = await Peer.create(server, "@alice:example.org", "A");
    const bob = await Peer.create(server, "@bob:example.org", "B");
    const rooms = Array.from({ length: 20 }, (_, i) => `!r${i}:example.org`);
    for (const p of [alice, bob]) {
      await p.sync({ rooms: rooms.map((r) => roomState(r, { [alice.userId]: "join", [bob.userId]: "join" })) });
      await p.flush();
    }
    const events: { roomId: string; events: Json[] }[] = [];
    for (const r of rooms) events.push({ roomId: r, events: [await alice.encrypt(r, `hello ${r}`, `$e${r}`)] });
    const sync = await bob.sync();
    let counts = 0;
    const orig = bob.store.countPendingEvents.bind(bob.store);
    bob.store.countPendingEvents = () => {
      counts++;
      return orig();
    };
    const ok = bob.engine.decryptSyncTimelines(events);
    assert.ok(ok.every((b) => b.results.every((r) => r.ok)));
    assert.equal(counts, 0, "rooms whose events decrypt counted the waiting events");
    await bob.engine.commitSyncToken("s1", sync.batchId);

    // Events of unknown sessions in every room: they wait, and the count is read once for the sync.
    const unknown = rooms.map((r) => ({ roomId: r, events: [{ type: "m.room.encrypted", event_id: `$u${r}`, sender: alice.userId, origin_server_ts: 1, content: { algorithm: "m.megolm.v1.aes-sha2", sender_key: alice.curve25519, session_id: "unknownsession", ciphertext: "AwgA", device_id: "A" } }] }));
    const sync2 = await bob.sync();
    bob.engine.decryptSyncTimelines(unknown);
    await bob.engine.commitSyncToken("s2", sync2.batchId);
    assert.equal(counts, 1);
    assert.equal(orig(), rooms.length, "every undecryptable event waits for its key");
  });
});


describe("engine: store reads per sync do not grow with the number of rooms", () => {
  it("a sync with events in 40 rooms reads the store as often as one with events in 4 rooms (rooms and waiting counts come from memory)", async () => {
    const server = new KeyServer();
    const alice = await Peer.create(server, "@alice:example.org", "A");
    const bob = await Peer.create(server, "@bob:example.org", "B");
    const rooms = Array.from({ length: 40 }, (_, i) => `!n${i}:example.org`);
    for (const p of [alice, bob]) {
      await p.sync({ rooms: rooms.map((r) => roomState(r, { [alice.userId]: "join", [bob.userId]: "join" })) });
      await p.flush();
    }
    // One session per room, its key delivered to Bob (the sessions are live in Bob's engine from then on).
    for (const r of rooms) await alice.encrypt(r, `key ${r}`, `$k${r}`);
    const keys = await bob.sync();
    await bob.engine.commitSyncToken("s0", keys.batchId);
    assert.equal(keys.roomKeys.length, rooms.length);

    const counts = countStoreReads(bob.store, { perKey: true });
    /** One sync as the client makes it: every room of the sync in `rooms` (no state), its events decrypted, the token committed. */
    const syncWith = async (n: number, tag: string): Promise<{ reads: number; byMethod: Record<string, number> }> => {
      const events: { roomId: string; events: Json[] }[] = [];
      for (const r of rooms.slice(0, n)) events.push({ roomId: r, events: [await alice.encrypt(r, `${tag} ${r}`, `$${tag}${r}`)] });
      counts.clear();
      const sync = await bob.sync({ rooms: events.map((e) => ({ roomId: e.roomId, membership: "join", stateEvents: [] })) });
      const out = bob.engine.decryptSyncTimelines(events);
      await bob.engine.commitSyncToken(tag, sync.batchId);
      assert.ok(out.every((o) => o.results.every((x) => x.ok)), "every event decrypts");
      const byMethod = Object.fromEntries(counts);
      return { reads: STORE_READS.reduce((a, m) => a + (counts.get(m) ?? 0), 0), byMethod };
    };
    await syncWith(4, "warm"); // the first decryption of Alice's events reads her identity once
    const few = await syncWith(4, "few");
    const many = await syncWith(40, "many");
    assert.deepEqual(many.byMethod, few.byMethod, "store reads grew with the number of rooms");
    assert.equal(many.byMethod.getRoom, undefined, "rooms were read from the store");
    assert.ok(many.reads <= 5, `a sync read the store ${many.reads} times: ${JSON.stringify(many.byMethod)}`);

    // Events that wait cost reads per missing session; the count of waiting events is read once, then kept.
    const unknown = (r: string, i: number): Json => ({ type: "m.room.encrypted", event_id: `$w${i}${r}`, sender: alice.userId, origin_server_ts: 1, content: { algorithm: "m.megolm.v1.aes-sha2", sender_key: alice.curve25519, session_id: `gone${r}`, ciphertext: "AwgA", device_id: "A" } });
    for (let i = 0; i < 2; i++) {
      counts.clear();
      const s = await bob.sync({ rooms: rooms.map((r) => ({ roomId: r, membership: "join", stateEvents: [] })) });
      bob.engine.decryptSyncTimelines(rooms.map((r) => ({ roomId: r, events: [unknown(r, i)] })));
      await bob.engine.commitSyncToken(`w${i}`, s.batchId);
      assert.equal(counts.get("countPendingEvents") ?? 0, i === 0 ? 1 : 0, "the count of waiting events is read from the store once per process");
      assert.equal(counts.get("getRoom") ?? 0, 0);
    }
    assert.equal(bob.store.countPendingEvents(), 2 * rooms.length);
  });

  it("the count of waiting events kept in memory follows the store: events kept, seen again, decrypted, and after a restart", async () => {
    const { server, alice, bob } = await pairInRoom("!count:example.org");
    const room = "!count:example.org";
    const mirrored = (p: Peer): number => (p.engine as unknown as { ctx: { mirrors: { pending: { storedCount(): number } } } }).ctx.mirrors.pending.storedCount();
    // Three events of a session Bob does not have yet: kept.
    const evs: Json[] = [];
    for (let i = 0; i < 3; i++) evs.push(await alice.encrypt(room, `m${i}`, `$m${i}`));
    server.inbox.set(`${bob.userId}|${bob.deviceId}`, []); // the key is lost on its way
    const s1 = await bob.sync();
    bob.engine.decryptSyncTimelines([{ roomId: room, events: evs }]);
    await bob.engine.commitSyncToken("c1", s1.batchId);
    assert.equal(bob.store.countPendingEvents(), 3);
    assert.equal(mirrored(bob), 3);
    // Seen again (history, another sync): still three rows, still counted three.
    await bob.engine.decryptRoomEvents(room, evs);
    const s2 = await bob.sync();
    bob.engine.decryptSyncTimelines([{ roomId: room, events: evs.slice(0, 2) }]);
    await bob.engine.commitSyncToken("c2", s2.batchId);
    assert.equal(bob.store.countPendingEvents(), 3);
    assert.equal(mirrored(bob), 3, "an event seen again was counted twice");
    // A restarted engine counts from the store.
    const again = await Peer.create(server, bob.userId, bob.deviceId, bob.store);
    assert.equal(mirrored(again), 3);
    // The key arrives (re-shared to a new session: Alice discards hers; the old one is lost): the
    // count follows the rows the store really has.
    const exported = (await alice.engine.exportRoomKeysPage(10)).keys;
    const imported = await again.engine.importRoomKeys(exported);
    assert.equal(imported.redecrypted[0]?.results.length, 3);
    assert.equal(again.store.countPendingEvents(), 0);
    assert.equal(mirrored(again), 0);
  });

  it("an event is refused for want of room only when the store is full: a count made high by events kept again is read again first", async () => {
    const { server, alice, bob } = await pairInRoom("!cap:example.org");
    const room = "!cap:example.org";
    const waiting = (i: number): Json => ({ type: "m.room.encrypted", event_id: `$c${i}`, sender: alice.userId, origin_server_ts: i, content: { algorithm: "m.megolm.v1.aes-sha2", sender_key: alice.curve25519, session_id: "lost", ciphertext: "AwgA", device_id: "A" } });
    const CAP = 20_000;
    await bob.engine.decryptRoomEvents(room, Array.from({ length: CAP - 5 }, (_, i) => waiting(i)));
    assert.equal(bob.store.countPendingEvents(), CAP - 5);
    // A restarted engine sees ten of them again (history): it cannot tell they are stored, and counts them.
    const again = await Peer.create(server, bob.userId, bob.deviceId, bob.store);
    await again.engine.decryptRoomEvents(room, Array.from({ length: 10 }, (_, i) => waiting(i)));
    assert.equal(again.store.countPendingEvents(), CAP - 5);
    // A new event still finds room: the store is asked before it is refused.
    await again.engine.decryptRoomEvents(room, [waiting(CAP)]);
    assert.equal(again.store.countPendingEvents(), CAP - 4, "an event was refused although the store had room");
    // And a full store refuses.
    await again.engine.decryptRoomEvents(room, Array.from({ length: 10 }, (_, i) => waiting(CAP + 1 + i)));
    assert.equal(again.store.countPendingEvents(), CAP);
  });

  it("key requests for missing keys in 40 rooms are written as often as for 4 rooms, and all of them are kept", async () => {
    const { alice, bob } = await pairInRoom("!kr0:example.org");
    bob.engine.setKeyRequestsEnabled(true);
    const sharing = (bob.engine as unknown as { keySharing: { save(tx: unknown): void } }).keySharing;
    const save = sharing.save.bind(sharing);
    let saves = 0;
    sharing.save = (tx) => {
      saves++;
      save(tx);
    };
    const missing = (r: string): Json => ({ type: "m.room.encrypted", event_id: `$x${r}`, sender: alice.userId, origin_server_ts: 1, content: { algorithm: "m.megolm.v1.aes-sha2", sender_key: alice.curve25519, session_id: `missing${r}`, ciphertext: "AwgA", device_id: "A" } });
    const syncWith = async (rooms: string[], token: string): Promise<number> => {
      saves = 0;
      const s = await bob.sync();
      bob.engine.decryptSyncTimelines(rooms.map((r) => ({ roomId: r, events: [missing(r)] })));
      await bob.engine.commitSyncToken(token, s.batchId);
      return saves;
    };
    const few = await syncWith(Array.from({ length: 4 }, (_, i) => `!kf${i}:example.org`), "k1");
    const many = await syncWith(Array.from({ length: 40 }, (_, i) => `!km${i}:example.org`), "k2");
    assert.equal(many, few, "the key requests were written once per room");
    const stored = JSON.parse(bob.store.getValue("outgoing_key_requests") ?? "[]") as unknown[];
    assert.equal(stored.length, 44, "queued key requests were not all committed");
    const sent = (await bob.engine.outgoingRequests()).filter((r) => r.kind === "to_device" && r.eventType === "m.room_key_request");
    assert.equal(sent.length, 44);
  });
});
