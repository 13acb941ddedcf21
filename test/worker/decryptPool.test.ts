/**
 * The decrypt pool (real decrypt worker threads, sharded by room) against the crypto worker's
 * engine: the same events, decrypted by two devices of Bob, one without a pool and one with two
 * decrypt workers, give the same results in the same per-room order — same plaintexts and labels,
 * same undecryptable codes, same replay refusals — including after a decrypt worker is killed in
 * the middle of a sync. Correctness only, no timings.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { KeyServer, Peer, roomState } from "../engine/helpers.js";
import { DecryptPool, shardOf } from "../../src/client/sync/DecryptPool.js";
import { decryptPayload, type DecryptPayload } from "../../src/client/sync/syncResponse.js";
import { decryptWorkerCount } from "../../src/client/options.js";
import { noopLogger } from "../../src/pure/logger.js";
import type { RoomDecryptResult } from "../../src/protocol/api.js";
import { readProcess } from "../../bench/threadCpu.js";

type Json = Record<string, unknown>;
const ROOMS = ["!a:example.org", "!b:example.org", "!c:example.org", "!d:example.org"];
const WORKER_URL = new URL("../../workers/decrypt-worker.js", import.meta.url);

/** Alice, and Bob's devices B1 (no pool) and B2 (pool), in every room. */
async function setup(): Promise<{ alice: Peer; b1: Peer; b2: Peer }> {
  const server = new KeyServer();
  const alice = await Peer.create(server, "@alice:example.org", "A");
  const b1 = await Peer.create(server, "@bob:example.org", "B1");
  const b2 = await Peer.create(server, "@bob:example.org", "B2");
  const members = { [alice.userId]: "join", [b1.userId]: "join" };
  for (const p of [alice, b1, b2]) {
    await p.sync({ rooms: ROOMS.map((r) => roomState(r, members)) });
    await p.flush();
  }
  return { alice, b1, b2 };
}

let seq = 0;
/** A sync's timelines: `perRoom` messages from Alice in each room, plus the extra events. */
async function timelines(alice: Peer, perRoom: number, extra: { roomId: string; ev: Json }[] = []): Promise<{ roomId: string; events: Json[] }[]> {
  const out = ROOMS.map((roomId) => ({ roomId, events: [] as Json[] }));
  for (let i = 0; i < perRoom; i++) for (const t of out) t.events.push(await alice.encrypt(t.roomId, `${t.roomId} #${++seq}`, `$e${seq}`));
  for (const x of extra) out.find((t) => t.roomId === x.roomId)!.events.push(x.ev);
  return out;
}

/** One sync on each of Bob's devices: B1 alone, B2 with the pool. Returns both results and how many events the pool deciphered. */
async function syncBoth(b1: Peer, b2: Peer, pool: DecryptPool, payload: DecryptPayload, hook?: () => void): Promise<{ plain: RoomDecryptResult[][]; pooled: RoomDecryptResult[][]; deciphered: number; keys: number }> {
  const r1 = await b1.sync();
  const plain = b1.engine.decryptSyncTimelines(payload);
  await b1.engine.commitSyncToken(`t${seq}`, r1.batchId);
  // As the client does with a pool: the sync's room keys go to the workers, pickled.
  const r2 = await b2.sync({}, { exportSessions: true });
  if (r2.poolSessions?.length) pool.addSessions(r2.poolSessions);
  let deciphered = 0;
  const running = pool.decryptSync(payload, async (rooms) => {
    for (const r of rooms) deciphered += r.events.filter((e) => e.pre).length;
    return b2.engine.decryptSyncTimelinesPooled(rooms);
  });
  hook?.();
  const pooled = await running;
  await b2.engine.commitSyncToken(`t${seq}`, r2.batchId);
  return { plain: plain.map((r) => r.results), pooled: pooled.map((r) => r.results), deciphered, keys: r2.poolSessions?.length ?? 0 };
}

/** Results without what differs between two receiving devices by design (none today). */
function comparable(results: RoomDecryptResult[][]): unknown {
  return results.map((room) => room.map((r) => (r.ok ? { ...r } : { ok: false, eventId: r.eventId, code: r.code, sessionId: r.sessionId })));
}

describe("decrypt pool", () => {
  let env: { alice: Peer; b1: Peer; b2: Peer };
  let pool: DecryptPool;
  before(async () => {
    env = await setup();
    pool = new DecryptPool(2, { pickleKey: "test", cacheSize: 100, niceness: 10 }, WORKER_URL, noopLogger);
    await pool.start();
  });
  after(async () => {
    await pool.close();
  });

  it("each decrypt worker's thread, and only those, runs at the niceness asked for (Linux)", { skip: process.platform !== "linux" && "per-thread priority is set on Linux only" }, (t) => {
    // Every thread's nice value, from /proc/<pid>/task/<tid>/stat (the bench's reader).
    const threads = readProcess(process.pid);
    const main = threads.get(process.pid)!.nice;
    if (main >= 10) return t.skip(`this process already runs at niceness ${main}: the workers keep it`);
    const values = [...threads.values()].map((r) => r.nice);
    assert.equal(values.filter((n) => n === 10).length, 2, `thread nice values: ${values.join(",")}`);
    assert.equal(values.filter((n) => n !== 10 && n !== main).length, 0, "every other thread keeps the process's priority");
  });

  it("the rooms are spread over both workers (else the test would prove nothing)", () => {
    assert.deepEqual(new Set(ROOMS.map((r) => shardOf(r, 2))), new Set([0, 1]));
  });

  it("two decrypt workers give the events, labels, failure codes and replay refusals one worker gives", async () => {
    const { alice, b1, b2 } = env;
    // Sync 1: the room keys come with the events; handed to the workers at receipt, so the pool
    // deciphers this sync already (the client does the same when a sync's decryption starts after them).
    const first = await syncBoth(b1, b2, pool, decryptPayload(await timelines(alice, 3))!);
    assert.equal(first.keys, ROOMS.length);
    assert.equal(first.deciphered, 12);
    assert.deepEqual(comparable(first.pooled), comparable(first.plain));
    assert.ok(first.plain.flat().every((r) => r.ok));

    // Sync 2: the pool deciphers; among the events a replay (a known index under a new event ID),
    // an event of an unknown session, one of an unknown algorithm, and one claiming another sender.
    const known = (await timelines(alice, 1))[0]!.events[0]!;
    const replay = { ...known, event_id: "$replayed" };
    const unknownSession = { ...known, event_id: "$nosession", content: { ...(known.content as Json), session_id: "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA" } };
    const badAlgo = { ...known, event_id: "$algo", content: { ...(known.content as Json), algorithm: "m.megolm.v9" } };
    const forged = { ...known, event_id: "$forged", sender: "@mallory:example.org" };
    const tl = await timelines(alice, 4, [
      { roomId: ROOMS[0]!, ev: known },
      { roomId: ROOMS[0]!, ev: replay },
      { roomId: ROOMS[1]!, ev: unknownSession },
      { roomId: ROOMS[2]!, ev: badAlgo },
      { roomId: ROOMS[0]!, ev: forged },
    ]);
    const second = await syncBoth(b1, b2, pool, decryptPayload(tl)!);
    assert.deepEqual(comparable(second.pooled), comparable(second.plain));
    const codes = new Map(second.plain.flat().filter((r) => !r.ok).map((r) => [r.eventId, (r as { code: string }).code]));
    assert.equal(codes.get("$replayed"), "replay");
    assert.equal(codes.get("$nosession"), "missing_session");
    assert.equal(codes.get("$algo"), "unknown_algorithm");
    assert.ok(codes.has("$forged"), "an event claiming another sender is refused");
    // 4 rooms × 4 messages + the known event, its replay and the forged one: the pool deciphered
    // them all; the crypto worker still refused the replay and the forgery.
    assert.equal(second.deciphered, 19);
    assert.ok(second.pooled.flat().filter((r) => r.ok).every((r) => r.ok && JSON.parse(r.plaintextJson).content.body.startsWith("!")));
  });

  it("a sync deciphered ahead (while the previous one finishes), before its own room keys reached the workers: its events of those keys are deciphered by the pool once they did", async () => {
    const { alice, b1, b2 } = env;
    // New sessions in every room; their keys come in the same sync as their first events.
    for (const r of ROOMS) await alice.engine.discardRoomKey(r);
    const early = decryptPayload(await timelines(alice, 2))!;
    pool.decipherAhead(early); // before the keys reached the workers: nothing deciphered ahead
    const first = await syncBoth(b1, b2, pool, early);
    assert.equal(first.keys, ROOMS.length);
    assert.equal(first.deciphered, 2 * ROOMS.length, "deciphered again once this sync's keys were handed out");
    assert.deepEqual(comparable(first.pooled), comparable(first.plain));
    assert.ok(first.pooled.flat().every((r) => r.ok));
    // The next sync, deciphered ahead once the workers hold the keys: all by the pool.
    const next = decryptPayload(await timelines(alice, 2))!;
    pool.decipherAhead(next);
    const second = await syncBoth(b1, b2, pool, next);
    assert.equal(second.deciphered, 2 * ROOMS.length);
    assert.deepEqual(comparable(second.pooled), comparable(second.plain));
    assert.ok(second.pooled.flat().every((r) => r.ok));
  });

  it("as the client orders it (deciphering starts while the crypto worker still takes the sync's keys): the sync's events of its new keys are deciphered by the pool once they are handed out", async () => {
    const { alice, b1, b2 } = env;
    for (const r of ROOMS) await alice.engine.discardRoomKey(r);
    const payload = decryptPayload(await timelines(alice, 2))!;
    const r1 = await b1.sync();
    const plain = b1.engine.decryptSyncTimelines(payload);
    await b1.engine.commitSyncToken(`t${seq}`, r1.batchId);
    // The client's order: the pooled decryption is started before the sync's keys are known.
    let deciphered = 0;
    let release!: () => void;
    const keysTaken = new Promise<void>((resolve) => (release = resolve));
    const handedOut = keysTaken.then(() => b2.sync({}, { exportSessions: true })).then((r) => {
      assert.equal(r.poolSessions?.length, ROOMS.length);
      pool.addSessions(r.poolSessions!);
      return r;
    });
    const running = pool.decryptSync(
      payload,
      async (rooms) => {
        for (const r of rooms) deciphered += r.events.filter((e) => e.pre).length;
        return b2.engine.decryptSyncTimelinesPooled(rooms);
      },
      handedOut,
    );
    // Let the first deciphering reach the workers (and come back empty) before the keys exist.
    await new Promise((resolve) => setTimeout(resolve, 50));
    release();
    const pooled = await running;
    await b2.engine.commitSyncToken(`t${seq}`, (await handedOut).batchId);
    assert.equal(deciphered, 2 * ROOMS.length);
    assert.deepEqual(comparable(pooled.map((r) => r.results)), comparable(plain.map((r) => r.results)));
    assert.ok(pooled.every((r) => r.results.every((x) => x.ok)));
  });

  it("a decrypt worker killed in the middle of a sync loses nothing, and no replay gets through after its restart", async () => {
    const { alice, b1, b2 } = env;
    const tl = await timelines(alice, 3);
    const killed = await syncBoth(b1, b2, pool, decryptPayload(tl)!, () => void pool.terminateForTesting(shardOf(ROOMS[0]!, 2)));
    assert.deepEqual(comparable(killed.pooled), comparable(killed.plain));
    assert.ok(killed.pooled.flat().every((r) => r.ok), "every event decrypted despite the crash");
    // After the restart: the same events again under new IDs are replays on both devices.
    const again = tl.map((t) => ({ roomId: t.roomId, events: t.events.map((e) => ({ ...e, event_id: `${String(e.event_id)}-again` })) }));
    const next = await syncBoth(b1, b2, pool, decryptPayload(again)!);
    assert.deepEqual(comparable(next.pooled), comparable(next.plain));
    assert.ok(next.pooled.flat().every((r) => !r.ok && r.code === "replay"));
  });
});

describe("the pool's deciphered marker cannot be forged", () => {
  it("an event carrying `pre` outside the pooled sync call (history, a server's JSON) is deciphered for real: garbage ciphertext fails", async () => {
    const { alice, b1 } = await setup();
    const real = (await timelines(alice, 1))[0]!.events[0]!;
    await b1.sync();
    const ok = b1.engine.decryptSyncTimelines(decryptPayload([{ roomId: ROOMS[0]!, events: [real] }])!)[0]!.results[0]!;
    assert.equal(ok.ok, true, "the session is known");
    // The same session and sender, a fresh event ID, a ciphertext that is not one, and a forged marker.
    const forged = { ...real, event_id: "$forged-pre", content: { ...(real.content as Json), ciphertext: "AAAA" }, pre: { messageIndex: 99, type: "m.room.message" } };
    const [history] = await b1.engine.decryptRoomEvents(ROOMS[0]!, [forged]);
    assert.equal(history!.ok, false, "history decryption ignores the marker");
    const [sync] = b1.engine.decryptSyncTimelines([{ roomId: ROOMS[0]!, events: [forged as never] }])[0]!.results;
    assert.equal(sync!.ok, false, "the plain sync call ignores the marker");
  });
});

describe("decryptWorkers option", () => {
  it("1 by default (today's path), auto = cores − 1, at least 1; nonsense refused", () => {
    assert.equal(decryptWorkerCount({}), 1);
    assert.equal(decryptWorkerCount({ encryptionConf: { decryptWorkers: "auto" } }, 2), 1);
    assert.equal(decryptWorkerCount({ encryptionConf: { decryptWorkers: "auto" } }, 8), 7);
    assert.equal(decryptWorkerCount({ encryptionConf: { decryptWorkers: "auto" } }, 1), 1);
    assert.equal(decryptWorkerCount({ encryptionConf: { decryptWorkers: 3 } }), 3);
    assert.throws(() => decryptWorkerCount({ encryptionConf: { decryptWorkers: 0 } }), /decryptWorkers/);
  });
});
