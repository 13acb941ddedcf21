/**
 * The report's decrypt-pool section (issue 18): per workload and `decryptWorkers`, the paired
 * ratio to raw libolm on one core, each thread's busy share, the share of events the pool
 * deciphered, the main thread's event-loop p99/max and RSS; issue 18's targets PASS/FAIL; the
 * per-event costs of the instrumented run and the scaling projection built from them. Pure
 * functions over the runs (test/bench/pool.test.ts); the exit code never depends on a target.
 */
import { round, summarize, type Json, type Summary } from "./common.js";
import { fmt, table } from "./format.js";
import { pairedRuns, workloadLabel, type Target } from "./headline.js";
import type { ClientResult } from "./measure.js";
import { summarizePaired, type PairedSummary } from "./paired.js";
import { poolKey, type DecryptWorkers } from "./pool.js";

/** Issue 18's targets on this 2-vCPU machine (10 rooms × 5 × 200, 200 B, 2 decrypt workers). */
export const POOL_TARGETS = { ratio: 1.5, stretch: 1.7, loopP99Ms: 5, defaultTolerance: 0.05 } as const;

/** One workload and `decryptWorkers` value. */
export interface PoolRow {
  key: string;
  workload: string;
  workers: string;
  /** Decrypt workers started (median over runs; 0: no pool). */
  size: number;
  paired: PairedSummary;
  cryptoBusy: Summary;
  /** Per decrypt worker (index = shard). */
  decryptBusy: Summary[];
  /** Every run's decrypt-worker figures are over the measured window (else since each worker's start). */
  windowed: boolean;
  decipheredShare: Summary;
  loopP99: Summary;
  loopMax: Summary;
  rssMB: Summary;
  maxRssMB: Summary;
  /** With 2 workers: the largest shard's share of the events (what one worker must do alone). */
  shardMaxShare: number | null;
  /** Kernel CPU per decrypted event, µs (steady state; `bench/threadCpu.ts`), and cores used; null where not read. */
  cpu: { main: Summary; crypto: Summary; decrypt: Summary; helpers: Summary; fixture: Summary; total: Summary; cores: Summary; mainWait: Summary } | null;
}

/** Per-event costs (µs) of the instrumented run with 2 decrypt workers. */
export interface PerEventCosts {
  main: { total: number; jsonParse: number; prepare: number; emit: number; other: number };
  crypto: { total: number; pooledCallSpan: number; engine: { pooledCall: number; pooledCallLibolm: number; pooledCallStore: number; commit: number; receiveSyncChanges: number } | null };
  decrypt: { total: number; callSpan: number };
  decipheredShare: number;
  /** All threads' busy time ÷ (cores × window): above ~0.9 the threads waited for a core, and the busy figures include that wait. */
  coreDemand: number;
}

const ws = (w: DecryptWorkers): string => String(w);

function rowOf(key: string, workload: string, workers: string, runs: ClientResult[], shardMaxShare: number | null): PoolRow {
  const sizes = summarize(runs.map((r) => r.pool?.size ?? 0));
  const n = Math.max(0, ...runs.map((r) => r.pool?.busy.length ?? 0));
  return {
    key,
    workload,
    workers,
    size: sizes.median,
    paired: summarizePaired(pairedRuns(runs)),
    cryptoBusy: summarize(runs.map((r) => r.workerElu ?? NaN)),
    decryptBusy: Array.from({ length: n }, (_, i) => summarize(runs.map((r) => r.pool?.busy[i] ?? NaN))),
    windowed: runs.every((r) => !r.pool || r.pool.size === 0 || r.pool.windowed),
    decipheredShare: summarize(runs.map((r) => (r.pool ? r.pool.deciphered / Math.max(1, r.pool.deciphered + r.pool.toCryptoWorker) : 0))),
    loopP99: summarize(runs.map((r) => r.loop.p99)),
    loopMax: summarize(runs.map((r) => r.loop.max)),
    rssMB: summarize(runs.map((r) => r.rssMB ?? NaN)),
    maxRssMB: summarize(runs.map((r) => r.maxRssMB ?? NaN)),
    shardMaxShare: (runs[0]?.pool?.size ?? 0) >= 2 ? shardMaxShare : null,
    cpu: runs.some((r) => r.threads)
      ? {
          main: summarize(runs.map((r) => r.threads?.main.cpuUsPerEvent ?? NaN)),
          crypto: summarize(runs.map((r) => r.threads?.cryptoWorker.cpuUsPerEvent ?? NaN)),
          decrypt: summarize(runs.map((r) => r.threads?.decryptWorkers.cpuUsPerEvent ?? NaN)),
          helpers: summarize(runs.map((r) => r.threads?.helpers.cpuUsPerEvent ?? NaN)),
          fixture: summarize(runs.map((r) => r.threads?.fixture.cpuUsPerEvent ?? NaN)),
          total: summarize(runs.map((r) => r.threads?.total.cpuUsPerEvent ?? NaN)),
          cores: summarize(runs.map((r) => r.threads?.total.cores ?? NaN)),
          mainWait: summarize(runs.map((r) => r.threads?.main.waitUsPerEvent ?? NaN)),
        }
      : null,
  };
}

/**
 * The pool rows: today's sdk run and every `decryptWorkers` value on the 10-room 200 B workload;
 * the first many-room workload (decryptWorkers 1 = its plain sdk run); the skewed workload.
 */
export function poolRows(client: Record<string, ClientResult[]>, labels: Record<string, Json | null | undefined>, shards: Record<string, { maxShare: number }>): PoolRow[] {
  const rows: PoolRow[] = [];
  for (const [wk, m] of Object.entries(labels)) {
    if (!m) continue;
    const lbl = typeof m.label === "string" ? m.label : workloadLabel(m);
    const share = shards[wk]?.maxShare ?? null;
    if (client[`sdk:${wk}`]?.length) rows.push(rowOf(`sdk:${wk}`, lbl, wk === "200" ? "not set (today's sdk)" : "1 (the plain sdk run)", client[`sdk:${wk}`]!, share));
    for (const w of [1, 2, "auto", 3, 4] as DecryptWorkers[]) {
      const runs = client[poolKey(w, wk)];
      // "auto" is cores − 1: on 2 cores that is 1, no pool.
      if (runs?.length) rows.push(rowOf(poolKey(w, wk), lbl, w === "auto" ? `auto (→ ${Math.max(0, ...runs.map((r) => r.pool?.size ?? 0)) || "1, no pool"})` : ws(w), runs, share));
    }
  }
  return rows;
}

/** Issue 18's targets (PASS/FAIL, informational): 2 workers ≥ 1.5× (stretch 1.7×), p99 ≤ 5 ms, decryptWorkers 1 not below today's sdk figure. */
export function poolTargets(rows: PoolRow[], client: Record<string, ClientResult[]>): Target[] {
  const out: Target[] = [];
  const two = rows.find((r) => r.key === poolKey(2, "200"));
  if (two) {
    const p = two.paired.ratio;
    const note = `paired per run, median of ${p.runs.length} [${round(p.min, 2)}–${round(p.max, 2)}]`;
    out.push({ name: `pool, 2 decrypt workers, ${two.workload} ÷ raw libolm on one core`, measured: round(p.median, 2), unit: "×", target: `≥ ${POOL_TARGETS.ratio}`, pass: p.median >= POOL_TARGETS.ratio, note });
    out.push({ name: `pool, 2 decrypt workers, stretch`, measured: round(p.median, 2), unit: "×", target: `≥ ${POOL_TARGETS.stretch}`, pass: p.median >= POOL_TARGETS.stretch, note });
    out.push({ name: `event-loop p99 with 2 decrypt workers, ${two.workload}`, measured: round(two.loopP99.median, 2), unit: "ms", target: `≤ ${POOL_TARGETS.loopP99Ms} ms`, pass: two.loopP99.median <= POOL_TARGETS.loopP99Ms, note: `worst run ${round(two.loopP99.max, 2)} ms` });
  }
  const one = client[poolKey(1, "200")] ?? [];
  const sdk = client["sdk:200"] ?? [];
  if (one.length && sdk.length) {
    const a = summarizePaired(pairedRuns(one)).ratio;
    const b = summarizePaired(pairedRuns(sdk)).ratio;
    const perRun = summarize(a.runs.map((x, i) => round(x / (b.runs[i] ?? NaN), 3)));
    const min = 1 - POOL_TARGETS.defaultTolerance;
    out.push({
      name: "decryptWorkers 1 ÷ today's sdk figure (same run, same code path), 200 B",
      measured: round(perRun.median, 2),
      unit: "×",
      target: `≥ ${min} (not lower, within the paired ratio's ±5 % run-to-run noise)`,
      pass: perRun.median >= min,
      note: `paired ${round(a.median, 2)}× vs ${round(b.median, 2)}×; per run ${perRun.runs.map((x) => round(x, 2)).join(", ")}`,
    });
  }
  return out;
}

type Acc = Record<string, { n: number; totalMs: number; usPerDecryptedEvent: number }>;
const us = (t: Acc | undefined, k: string): number => t?.[k]?.usPerDecryptedEvent ?? NaN;
const sumUs = (t: Acc | undefined, prefix: string): number => Object.entries(t ?? {}).reduce((a, [k, v]) => (k.startsWith(prefix) ? a + v.usPerDecryptedEvent : a), 0);

/**
 * Per-event costs from the instrumented runs with 2 decrypt workers: `sdk` (spans and
 * utilisations over the window) and `main` (the same pool with the engine on the main thread,
 * its calls and store/libolm time measured inside). Null without the sdk profile.
 */
export function perEventCosts(sdk: Json | undefined, main: Json | undefined, cores: number): PerEventCosts | null {
  if (!sdk) return null;
  const events = Number(sdk.decrypted);
  const windowUs = Number(sdk.windowMs) * 1000;
  const mt = sdk.mainThread as Acc | undefined;
  const mainTotal = (Number(sdk.mainElu) * windowUs) / events;
  const jsonParse = (Number(sdk.syncBodyJsonParseTotalMs) * 1000) / events;
  const prepare = us(mt, "prepare");
  const emit = us(mt, "emit");
  const pool = sdk.pool as { deciphered: number; toCryptoWorker: number; busy: (number | null)[] } | undefined;
  const deciphered = pool?.deciphered ?? 0;
  const busySum = (pool?.busy ?? []).reduce<number>((a, b) => a + (b ?? 0), 0);
  const spans = (sdk.poolSpans as { decipher?: Record<string, { ms: number; events: number }> } | undefined)?.decipher ?? {};
  const span = Object.values(spans).reduce((a, s) => ({ ms: a.ms + s.ms, events: a.events + s.events }), { ms: 0, events: 0 });
  const cryptoTotal = (Number(sdk.workerElu) * windowUs) / events;
  const ex = main?.exec as Acc | undefined;
  const en = main?.engine as Acc | undefined;
  return {
    main: { total: round(mainTotal, 1), jsonParse: round(jsonParse, 1), prepare: round(prepare, 1), emit: round(emit, 1), other: round(mainTotal - jsonParse - prepare - emit, 1) },
    crypto: {
      total: round(cryptoTotal, 1),
      pooledCallSpan: round(us(sdk.calls as Acc, "decryptSyncTimelinesPooled"), 1),
      engine: ex
        ? {
            pooledCall: round(us(ex, "decryptSyncTimelinesPooled"), 1),
            pooledCallLibolm: round(us(en, "decryptSyncTimelinesPooled:olm.megolmDecrypt"), 1),
            pooledCallStore: round(sumUs(en, "decryptSyncTimelinesPooled:store."), 1),
            commit: round(us(ex, "commitSyncToken"), 1),
            receiveSyncChanges: round(us(ex, "receiveSyncChanges"), 1),
          }
        : null,
    },
    decrypt: { total: round(deciphered ? (busySum * windowUs) / deciphered : NaN, 1), callSpan: round(span.events ? (span.ms * 1000) / span.events : NaN, 1) },
    decipheredShare: round(deciphered / Math.max(1, deciphered + (pool?.toCryptoWorker ?? 0)), 3),
    coreDemand: round(((Number(sdk.mainElu) + Number(sdk.workerElu) + busySum) * windowUs) / (cores * windowUs), 2),
  };
}

/** One row of the scaling projection. */
export interface ScalingRow {
  cores: number;
  decryptWorkers: number;
  /** Events/s each part could sustain alone, and all threads' CPU together. */
  bounds: { mainThread: number; cryptoWorker: number; decryptWorkers: number; cores: number };
  eps: number;
  overRaw: number;
  saturates: keyof ScalingRow["bounds"];
}

/**
 * Projects throughput on `cores` cores from per-event costs (µs): the main thread and the crypto
 * worker are one thread each; `cores − 1` decrypt workers ("auto") share the deciphered events,
 * but no worker takes more than `maxShardShare` of them (a room is never split: 1/workers when
 * rooms are many and even, the hot room's share when one dominates); all threads together get
 * `cores` cores (with `helpers`, the CPU of V8's and libuv's threads, which no single thread
 * bounds). `mainBusy` / `cryptoBusy`, when given, bound those threads instead: their busy time
 * per event, which also holds what they wait for besides a core (the fsync of each sync's commit). The smallest bound is what saturates first. A projection, not a measurement.
 */
export function projectScaling(c: { main: number; crypto: number; decrypt: number; decipheredShare: number; rawEps: number; helpers?: number; mainBusy?: number; cryptoBusy?: number }, cores: number, maxShardShare?: number): ScalingRow {
  const k = Math.max(1, cores - 1);
  const share = Math.max(1 / k, maxShardShare ?? 0);
  const dPerEvent = c.decrypt * c.decipheredShare;
  const bounds = {
    mainThread: 1e6 / Math.max(c.main, c.mainBusy ?? 0),
    cryptoWorker: 1e6 / Math.max(c.crypto, c.cryptoBusy ?? 0),
    decryptWorkers: dPerEvent > 0 ? 1e6 / (dPerEvent * share) : Infinity,
    cores: (cores * 1e6) / (c.main + c.crypto + dPerEvent + (c.helpers ?? 0)),
  };
  const [saturates, eps] = (Object.entries(bounds) as [ScalingRow["saturates"], number][]).reduce((a, b) => (b[1] < a[1] ? b : a));
  return { cores, decryptWorkers: k, bounds: Object.fromEntries(Object.entries(bounds).map(([key, v]) => [key, round(v, 0)])) as ScalingRow["bounds"], eps: round(eps, 0), overRaw: round(eps / c.rawEps, 2), saturates };
}

const pct = (s: Summary): string => (Number.isFinite(s.median) ? `${fmt(s.median * 100, 0)} %` : "–");

/** The pool section of the stdout table. */
export function renderPool(rows: PoolRow[], costs: PerEventCosts | null, scaling: ScalingRow[]): string[] {
  if (!rows.length) return [];
  const out = ["Decrypt pool (issue 18): paired ratio per run ÷ raw libolm on one core, median [min–max]; busy over the window"];
  const body = rows.map((r) => [
    r.workload,
    r.workers,
    String(r.size),
    `${fmt(r.paired.ratio.median, 2)} [${fmt(r.paired.ratio.min, 2)}–${fmt(r.paired.ratio.max, 2)}]`,
    fmt(r.paired.eps.median),
    pct(r.cryptoBusy),
    r.decryptBusy.length ? r.decryptBusy.map(pct).join(" / ") + (r.windowed ? "" : " (since start)") : "–",
    r.size ? pct(r.decipheredShare) : "–",
    r.shardMaxShare === null ? "–" : `${fmt(r.shardMaxShare * 100, 0)} %`,
    `${fmt(r.loopP99.median, 1)} / ${fmt(r.loopMax.median, 1)}`,
    `${fmt(r.rssMB.median)} (peak ${fmt(r.maxRssMB.median)})`,
  ]);
  out.push(table(["workload", "decryptWorkers", "pool", "÷ raw", "ev/s", "crypto busy", "decrypt busy", "pool deciphered", "largest shard", "loop p99/max ms", "RSS MB"], body), "");
  const withCpu = rows.filter((r) => r.cpu);
  if (withCpu.length) {
    out.push("Kernel CPU per decrypted event (µs, steady state, median over runs; /proc schedstat: time on a core, not waiting for one); cores = all threads' CPU ÷ wall time");
    out.push(
      table(
        ["workload", "decryptWorkers", "main", "crypto worker", "decrypt workers", "V8/libuv helpers", "fixture server", "total", "cores", "main waited"],
        withCpu.map((r) => {
          const c = r.cpu!;
          return [r.workload, r.workers, fmt(c.main.median, 1), fmt(c.crypto.median, 1), r.size ? fmt(c.decrypt.median, 1) : "–", fmt(c.helpers.median, 1), fmt(c.fixture.median, 1), fmt(c.total.median, 1), fmt(c.cores.median, 2), fmt(c.mainWait.median, 1)];
        }),
      ),
      "",
    );
  }
  if (costs) {
    const e = costs.crypto.engine;
    out.push(
      "Per-event costs, 2 decrypt workers, 200 B (µs per decrypted event; busy time, which includes waiting for a core when the threads want more than there are):",
      `  main thread ${fmt(costs.main.total, 1)}: sync-body JSON.parse ${fmt(costs.main.jsonParse, 1)}, preparing ${fmt(costs.main.prepare, 1)}, emitting ${fmt(costs.main.emit, 1)}, the rest (HTTP, pool hand-off, loop) ${fmt(costs.main.other, 1)}`,
      `  crypto worker ${fmt(costs.crypto.total, 1)} (pooled call as the main thread sees it ${fmt(costs.crypto.pooledCallSpan, 1)})` +
        (e ? `; main-thread engine: pooled call ${fmt(e.pooledCall, 1)} (libolm for events the pool left ${fmt(e.pooledCallLibolm, 1)}, store reads ${fmt(e.pooledCallStore, 1)}), commit ${fmt(e.commit, 1)}, receiveSyncChanges ${fmt(e.receiveSyncChanges, 1)}` : ""),
      `  decrypt worker ${fmt(costs.decrypt.total, 1)} per deciphered event (decipher call span ${fmt(costs.decrypt.callSpan, 1)}); the pool deciphered ${fmt(costs.decipheredShare * 100, 0)} %; core demand ${fmt(costs.coreDemand, 2)} of the cores`,
      "",
    );
  }
  if (scaling.length) {
    out.push("Scaling projection (not measured): the cores bound from the 2-worker row's kernel CPU per event (helpers count, the fixture server not); the main thread's and crypto worker's bounds from their busy time in the profile run (it holds their waits for the disk); decryptWorkers = cores − 1");
    out.push(
      table(
        ["cores", "decrypt workers", "main bound", "crypto bound", "decrypt bound", "cores bound", "ev/s", "÷ raw", "saturates first"],
        scaling.map((s) => [String(s.cores), String(s.decryptWorkers), fmt(s.bounds.mainThread), fmt(s.bounds.cryptoWorker), fmt(s.bounds.decryptWorkers), fmt(s.bounds.cores), fmt(s.eps), fmt(s.overRaw, 2), s.saturates]),
      ),
      "",
    );
  }
  return out;
}
