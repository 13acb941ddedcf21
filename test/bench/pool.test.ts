/**
 * The bench's decrypt-pool arithmetic (issue 18): the skewed workload's shape, the utilisation
 * window, how 2 workers shard a workload, the pool rows and targets, and the scaling projection.
 * Pure functions: no timing here.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { eluWindow, poolKey, shardLoad, skewedMessagesPerRoom } from "../../bench/pool.js";
import { POOL_TARGETS, perEventCosts, poolRows, poolTargets, projectScaling } from "../../bench/poolReport.js";
import type { ClientResult } from "../../bench/measure.js";
import { shardOf } from "../../src/client/sync/DecryptPool.js";

describe("skewed workload", () => {
  it("puts half the events in room 0 and spreads the rest evenly over the other rooms", () => {
    const m = skewedMessagesPerRoom(10_000, 5, 10);
    assert.equal(m.length, 11);
    assert.equal(m[0]! * 5, 5000);
    assert.deepEqual(m.slice(1), new Array(10).fill(100));
    assert.equal(m.reduce((a, b) => a + b, 0) * 5, 10_000);
  });

  it("keeps the total when the rest does not divide: the first rooms get one message more", () => {
    const m = skewedMessagesPerRoom(10_000, 5, 9);
    assert.equal(m[0], 1000);
    assert.equal(m.reduce((a, b) => a + b, 0) * 5, 10_000);
    assert.deepEqual(m.slice(1), [112, 111, 111, 111, 111, 111, 111, 111, 111]);
    assert.ok(Math.max(...m.slice(1)) - Math.min(...m.slice(1)) <= 1);
  });

  it("honours another hot share, and refuses a shape that leaves a room empty", () => {
    assert.deepEqual(skewedMessagesPerRoom(1000, 1, 3, 0.7), [700, 100, 100, 100]);
    assert.throws(() => skewedMessagesPerRoom(20, 2, 10), /fewer than one message/);
    assert.throws(() => skewedMessagesPerRoom(1000, 0, 10), /senders/);
    assert.throws(() => skewedMessagesPerRoom(1000, 5, 10, 1), /hot share/);
  });
});

describe("utilisation window", () => {
  it("is the active time over the elapsed time between the two readings, not since the start", () => {
    // Since start: 100 ms active of 1000; in the window: 450 of 500 ms.
    assert.equal(eluWindow({ idle: 900, active: 100 }, { idle: 950, active: 550 }), 0.9);
    assert.equal(eluWindow({ idle: 0, active: 0 }, { idle: 750, active: 250 }), 0.25);
  });

  it("is NaN when no time passed or a reading goes backwards (a restarted worker)", () => {
    assert.ok(Number.isNaN(eluWindow({ idle: 10, active: 5 }, { idle: 10, active: 5 })));
    assert.ok(Number.isNaN(eluWindow({ idle: 900, active: 100 }, { idle: 50, active: 20 })));
  });
});

describe("shard load", () => {
  it("adds each room's events to the shard the pool gives it, and reports the largest share", () => {
    const rooms = { "!a:x": 10, "!b:x": 30, "!c:x": 60 };
    const { events, maxShare } = shardLoad(rooms, 2);
    const want = [0, 0];
    for (const [r, n] of Object.entries(rooms)) want[shardOf(r, 2)]! += n;
    assert.deepEqual(events, want);
    assert.equal(maxShare, Math.max(...want) / 100);
    assert.equal(shardLoad({ "!hot:x": 50, "!cold:x": 50 }, 1).maxShare, 1);
  });
});

const run = (eps: number, raw: number, extra: Partial<ClientResult> = {}): ClientResult =>
  ({ mode: "sdk", eps, decrypted: 1000, undecryptable: 0, failureCodes: {}, seconds: 1, fullSeconds: 1, fullEps: eps, firstEventMs: 1, syncs: 4, prepareToDeviceMs: 1, workerElu: 0.9, loop: { p50: 1, p99: 4, max: 9, mean: 1, probeLateP99: 1, probeLateMax: 2, probeTicks: 10, elu: 0.5 }, pairedRaw: { before: raw, after: raw }, rssMB: 150, maxRssMB: 160, ...extra }) as ClientResult;

describe("pool rows and targets", () => {
  const pool = (deciphered: number, busy: number[]) => ({ requested: 2, size: 2, deciphered, toCryptoWorker: 1000 - deciphered, busy, windowed: true, busySinceStart: busy });
  const client: Record<string, ClientResult[]> = {
    "sdk:200": [run(800, 1000), run(900, 1000), run(850, 1000)],
    [poolKey(1, "200")]: [run(780, 1000, { pool: { ...pool(0, []), size: 0 } }), run(910, 1000), run(840, 1000)],
    [poolKey(2, "200")]: [1.4, 1.6, 1.55].map((x) => run(1000 * x, 1000, { pool: pool(900, [0.7, 0.6]), loop: { p50: 1, p99: 6, max: 20, mean: 1, probeLateP99: 1, probeLateMax: 2, probeTicks: 10, elu: 0.5 } })),
  };
  const labels = { "200": { rooms: 10, senders: 5, messagesPerRoomAndSender: 200, payloadBytes: 200 } };
  const rows = poolRows(client, labels, { "200": { maxShare: 0.5 } });

  it("gives today's sdk row and one row per decryptWorkers value, with the pool's figures", () => {
    assert.deepEqual(rows.map((r) => r.key), ["sdk:200", "pool:1:200", "pool:2:200"]);
    const two = rows[2]!;
    assert.equal(two.paired.ratio.median, 1.55);
    assert.equal(two.size, 2);
    assert.deepEqual(two.decryptBusy.map((s) => s.median), [0.7, 0.6]);
    assert.equal(two.decipheredShare.median, 0.9);
    assert.equal(two.shardMaxShare, 0.5);
    assert.equal(rows[0]!.shardMaxShare, null);
  });

  it("passes 1.5× but not the 1.7× stretch, fails p99 > 5 ms, and compares decryptWorkers 1 with today's run by run", () => {
    const t = poolTargets(rows, client);
    assert.deepEqual(t.map((x) => x.pass), [true, false, false, true]);
    assert.equal(t[0]!.measured, 1.55);
    assert.equal(t[2]!.measured, 6);
    // Per run 0.975, 1.011, 0.988 → median 0.988 ≥ 1 − tolerance.
    assert.equal(t[3]!.measured, 0.99);
    const slower = { ...client, [poolKey(1, "200")]: client["sdk:200"]!.map((r) => run(r.eps * 0.9, 1000)) };
    assert.equal(poolTargets(rows, slower)[3]!.measured, 0.9);
    assert.equal(poolTargets(rows, slower)[3]!.pass, 0.9 >= 1 - POOL_TARGETS.defaultTolerance);
  });
});

describe("per-event costs and the scaling projection", () => {
  it("turns busy shares over the window into µs per event, per thread", () => {
    const sdk = {
      decrypted: 1000, windowMs: 100, mainElu: 0.3, workerElu: 0.8, syncBodyJsonParseTotalMs: 5,
      mainThread: { prepare: { n: 4, totalMs: 4, usPerDecryptedEvent: 4 }, emit: { n: 1000, totalMs: 2, usPerDecryptedEvent: 2 } },
      pool: { deciphered: 800, toCryptoWorker: 200, busy: [0.5, 0.3] },
      poolSpans: { decipher: { "0": { ms: 40, events: 500 }, "1": { ms: 30, events: 500 } } },
      calls: { decryptSyncTimelinesPooled: { n: 4, totalMs: 60, usPerDecryptedEvent: 60 } },
    };
    const c = perEventCosts(sdk, undefined, 2)!;
    assert.deepEqual(c.main, { total: 30, jsonParse: 5, prepare: 4, emit: 2, other: 19 });
    assert.equal(c.crypto.total, 80);
    assert.equal(c.crypto.pooledCallSpan, 60);
    // (0.5 + 0.3) × 100 ms over 800 deciphered events.
    assert.equal(c.decrypt.total, 100);
    assert.equal(c.decrypt.callSpan, 70);
    assert.equal(c.decipheredShare, 0.8);
    assert.equal(c.coreDemand, 0.95);
    assert.equal(perEventCosts(undefined, undefined, 2), null);
  });

  it("takes the smallest bound: decrypt workers on few cores, then the crypto worker", () => {
    const c = { main: 20, crypto: 40, decrypt: 100, decipheredShare: 1, rawEps: 10_000 };
    const four = projectScaling(c, 4);
    assert.equal(four.decryptWorkers, 3);
    assert.deepEqual(four.bounds, { mainThread: 50_000, cryptoWorker: 25_000, decryptWorkers: 30_000, cores: 25_000 });
    assert.equal(four.eps, 25_000);
    const sixteen = projectScaling(c, 16);
    assert.equal(sixteen.saturates, "cryptoWorker");
    assert.equal(sixteen.overRaw, 2.5);
    const two = projectScaling(c, 2);
    assert.equal(two.saturates, "decryptWorkers");
    assert.equal(two.eps, 10_000);
  });

  it("bounds a room that cannot be split by its share, however many workers there are", () => {
    const c = { main: 1, crypto: 1, decrypt: 100, decipheredShare: 1, rawEps: 10_000 };
    assert.equal(projectScaling(c, 16, 0.5).bounds.decryptWorkers, 20_000);
    assert.equal(projectScaling(c, 16).bounds.decryptWorkers, 150_000);
  });

  it("counts helper threads against the cores, not against any one thread", () => {
    const c = { main: 10, crypto: 10, decrypt: 100, decipheredShare: 1, rawEps: 10_000 };
    const plain = projectScaling(c, 4);
    const more = projectScaling({ ...c, helpers: 40 }, 4);
    assert.equal(plain.bounds.cores, 33_333);
    assert.equal(more.bounds.cores, 25_000); // 4 cores / (10 + 10 + 100 + 40) µs
    assert.equal(more.bounds.mainThread, plain.bounds.mainThread);
    assert.equal(more.bounds.cryptoWorker, plain.bounds.cryptoWorker);
    // Busy time (CPU and waits for the disk) bounds a thread when it is longer than its CPU.
    const busy = projectScaling({ ...c, mainBusy: 20, cryptoBusy: 5 }, 4);
    assert.equal(busy.bounds.mainThread, 50_000);
    assert.equal(busy.bounds.cryptoWorker, 100_000);
    assert.equal(busy.bounds.cores, plain.bounds.cores);
  });
});
