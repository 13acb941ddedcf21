/**
 * Events decrypted after the fact (their key arrived later, by sync or by key import): emitted once,
 * in timeline order, including events held back by the sync still being processed.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { KeyServer, Peer, roomState } from "./helpers.js";
import type { RoomDecryptResult } from "../../src/protocol/api.js";
import { SqliteCryptoStore } from "../../workers/store/sqlite/SqliteCryptoStore.js";

const ROOM = "!late:example.org";
type Json = Record<string, unknown>;

/** Alice, Bob and Carol in ROOM; Bob's store is SQLite when asked. */
async function trio(bobStore: "memory" | "sqlite" = "memory"): Promise<{ server: KeyServer; alice: Peer; bob: Peer; carol: Peer; done: () => Promise<void> }> {
  const server = new KeyServer();
  const alice = await Peer.create(server, "@alice:example.org", "ALICEDEV");
  const carol = await Peer.create(server, "@carol:example.org", "CAROLDEV");
  let dir: string | null = null;
  let bob: Peer;
  if (bobStore === "sqlite") {
    dir = mkdtempSync(join(tmpdir(), "sdk-late-"));
    const store = new SqliteCryptoStore(join(dir, "bob.db"));
    await store.open();
    bob = await Peer.create(server, "@bob:example.org", "BOBDEV", store as never);
  } else bob = await Peer.create(server, "@bob:example.org", "BOBDEV");
  const members = { [alice.userId]: "join", [bob.userId]: "join", [carol.userId]: "join" };
  for (const p of [alice, bob, carol]) await p.sync({ rooms: [roomState(ROOM, members)] });
  for (const p of [alice, bob, carol]) await p.flush();
  const done = async (): Promise<void> => {
    await bob.store.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  };
  return { server, alice, bob, carol, done };
}

/** An event of `p` at `ts` (the helper's own timestamp replaced). */
async function at(p: Peer, body: string, eventId: string, ts: number): Promise<Json> {
  return { ...(await p.encrypt(ROOM, body, eventId)), origin_server_ts: ts };
}

/** Take (and remove) Bob's to-device inbox: the room keys, kept back to arrive later. */
function takeInbox(server: KeyServer, bob: Peer): Json[] {
  const k = `${bob.userId}|${bob.deviceId}`;
  const msgs = server.inbox.get(k) ?? [];
  server.inbox.set(k, []);
  return msgs;
}

const bodyOf = (r: RoomDecryptResult): unknown => (r.ok ? (JSON.parse(r.plaintextJson) as { content: Json }).content.body : `${r.code}`);
const eventIds = (batches: { roomId: string; results: RoomDecryptResult[] }[]): string[] => batches.filter((b) => b.roomId === ROOM).flatMap((b) => b.results.map((r) => r.eventId));

describe("engine: late decryption", () => {
  it("a key import during a sync decrypts the events that sync held back, and they are not emitted again later", async () => {
    const { server, alice, bob, done } = await trio();
    const ev = await alice.encrypt(ROOM, "held back", "$held");
    const roomKeys = takeInbox(server, bob); // the key is late
    const sync = await bob.sync();
    const [timeline] = bob.engine.decryptSyncTimelines([{ roomId: ROOM, events: [ev] }]);
    assert.equal(timeline!.results[0]!.ok ? "decrypted" : timeline!.results[0]!.code, "missing_session");

    // The session is imported while the sync is still being processed (before its token commit).
    const imported = await bob.engine.importRoomKeys(alice.engine.exportRoomKeysPage(100).keys);
    assert.equal(imported.imported, 1);
    assert.deepEqual(imported.redecrypted.flatMap((b) => b.results.map((r) => [r.eventId, bodyOf(r)])), [["$held", "held back"]]);
    await bob.engine.commitSyncToken("s1", sync.batchId);
    assert.equal(bob.store.countPendingEvents(), 0, "the sync stored the event it held back although it was decrypted");

    // The room key itself arrives later: the event is not decrypted (emitted) a second time.
    const later = await bob.sync({ toDevice: roomKeys });
    assert.deepEqual(eventIds(later.redecrypted), []);
    await done();
  });

  for (const store of ["memory", "sqlite"] as const) {
    it(`late-decrypted events come in timeline order (origin_server_ts, then arrival), not by event ID or session (${store} store)`, async () => {
      const { server, alice, bob, carol, done } = await trio(store);
      // Event IDs in the reverse lexical order of the timeline; two senders (two sessions).
      const e1 = await at(alice, "one", "$z1", 1000);
      const e2 = await at(carol, "two", "$y2", 2000);
      const e3 = await at(alice, "three", "$x3", 3000);
      const e5a = await at(alice, "five-a", "$w5", 5000);
      const e5b = await at(alice, "five-b", "$v5", 5000); // same timestamp: arrival order decides
      const e4 = await at(carol, "four", "$u4", 4000);
      const roomKeys = takeInbox(server, bob);
      // Arrival: e3 and e1 in one batch, then e2, e5a, e5b, e4 in another (out of timeline order).
      await bob.engine.decryptRoomEvents(ROOM, [e3, e1]);
      await bob.engine.decryptRoomEvents(ROOM, [e2, e5a, e5b, e4]);
      const sync = await bob.sync({ toDevice: roomKeys });
      assert.equal(sync.redecrypted.length, 1, "one entry per room");
      assert.deepEqual(sync.redecrypted[0]!.results.map(bodyOf), ["one", "two", "three", "four", "five-a", "five-b"]);
      await bob.engine.commitSyncToken("s1", sync.batchId);
      await done();
    });
  }

  it("events imported late come in timeline order too", async () => {
    const { server, alice, bob, done } = await trio();
    const e1 = await at(alice, "first", "$c", 1000);
    const e2 = await at(alice, "second", "$b", 2000);
    const e3 = await at(alice, "third", "$a", 3000);
    takeInbox(server, bob);
    await bob.engine.decryptRoomEvents(ROOM, [e3]);
    await bob.engine.decryptRoomEvents(ROOM, [e1, e2]);
    const imported = await bob.engine.importRoomKeys(alice.engine.exportRoomKeysPage(100).keys);
    assert.deepEqual(imported.redecrypted.flatMap((b) => b.results.map(bodyOf)), ["first", "second", "third"]);
    await done();
  });
});
