/**
 * Turns the raw runs into the report: medians/min/max, ratios, targets (PASS/FAIL, informational
 * only), the per-event cost breakdown from the profile runs, the stdout table and the SVG chart.
 */
import { summarize, round, type Json, type Summary } from "./common.js";
import { label } from "./format.js";
import type { ColdStoreInfo } from "./coldStore.js";
import type { ClientResult, ColdResult, IdleResult, RawResult, TunedFlags } from "./measure.js";
import type { LoopStats } from "./loopMonitor.js";
import { headline, headlineTargets, type BackupSummary, type PairedRow, type Target } from "./headline.js";
import type { SendReport } from "./sendReport.js";
import { perEventCosts, poolRows, poolTargets, projectScaling, type PerEventCosts, type PoolRow, type ScalingRow } from "./poolReport.js";

export type { Target } from "./headline.js";

export interface BenchResults {
  date: string;
  durationSeconds: number;
  machine: Json;
  options: Json;
  manifests: Record<string, Json>;
  /** Many-room workloads (key "rooms1000x5x2", …; client runs under "sdk:<key>"). */
  scaleManifests: Record<string, Json>;
  /** The key backup pair's workload, and its runs by run number (null: that measurement failed). */
  backupManifest: Json | null;
  backup: { off: (ClientResult | null)[]; on: (ClientResult | null)[] };
  /** The send benchmark (send.ts), or null when not run. */
  send: SendReport | null;
  memoryManifest: Json | null;
  /** The skewed pool workload (issue 18), and how 2 decrypt workers shard each pool workload. */
  skewManifest?: Json | null;
  longManifest?: Json | null;
  poolShards?: Record<string, { events: number[]; maxShare: number }>;
  coldStores: Record<string, ColdStoreInfo>;
  raw: Record<string, RawResult[]>;
  client: Record<string, ClientResult[]>;
  idle: IdleResult[];
  cold: Record<string, ColdResult[]>;
  memory: Record<string, ClientResult[]>;
  profiles: Record<string, unknown>;
  experiments: { key: string; label: string; flags: TunedFlags }[];
  /** sdk runs at other sync sizes ("batch:N") and with big rooms ("bigrooms:N"), 200 B payload. */
  sweep: Record<string, ClientResult[]>;
}

export interface LoopSummary {
  p50: Summary;
  p99: Summary;
  max: Summary;
  probeLateP99: Summary;
  probeLateMax: Summary;
  mainElu: Summary;
}

export interface Report {
  date: string;
  durationSeconds: number;
  machine: Json;
  options: Json;
  workloads: { throughput: Record<string, Json>; scale: Record<string, Json>; backup: Json | null; memory: Json | null; coldStores: Record<string, ColdStoreInfo> };
  /** Headline: paired ratios (sdk ÷ mean of raw right before and after, same process) per workload and mode. */
  paired: PairedRow[];
  /** Key backup on/off (issue 15). */
  backup: BackupSummary | null;
  send: SendReport | null;
  /** decrypted events per second */
  throughput: Record<string, { raw: Summary; rawParse: Summary; sdk: Summary; main: Summary; whatIf: Record<string, Summary> }>;
  ratios: Record<string, { sdkOverRaw: number; sdkOverRawPerRun: Summary; sdkOverRawParse: number; mainOverRaw: number; sdkOverMain: number }>;
  eventLoop: { idle: LoopSummary | null; byPayload: Record<string, { sdk: LoopSummary | null; main: LoopSummary | null; raw: string }> };
  workerBusy: Record<string, Summary>;
  firstEventMs: Record<string, { sdk: Summary; main: Summary }>;
  coldStart: Record<string, { sdk: { firstEventMs: Summary; loginMs: Summary; firstSyncMs: Summary }; main: { firstEventMs: Summary; loginMs: Summary; firstSyncMs: Summary } }>;
  memory: Record<string, { events: number; eps: Summary; rssBeforeMB: Summary; rssAfterMB: Summary; rssAfterGcMB: Summary; maxRssMB: Summary; heapUsedMB: Summary; externalMB: Summary }> | null;
  targets: Target[];
  /** Decrypt pool (issue 18): rows per workload and decryptWorkers, per-event costs, scaling projection (4, 8, 16 cores). */
  pool: { rows: PoolRow[]; costs: PerEventCosts | null; scaling: ScalingRow[]; skewScaling: ScalingRow[] } | null;
  /** sdk, 200 B: throughput by events per sync, and with big rooms. */
  scaling: { key: string; label: string; eps: Summary; overRaw: number; workerBusy: Summary; loopP99: Summary; loopMax: Summary }[];
  breakdown: Record<string, Json>;
  /** Big rooms: where receiveSyncChanges spends its time (main-thread profile). */
  bigRooms: Json | null;
  whatIf: { key: string; label: string; flags: TunedFlags }[];
  profiles: Record<string, unknown>;
  runs: { raw: Record<string, RawResult[]>; client: Record<string, ClientResult[]>; idle: IdleResult[]; cold: Record<string, ColdResult[]>; memory: Record<string, ClientResult[]>; sweep: Record<string, ClientResult[]>; backup: BenchResults["backup"] };
}

const loopSummary = (ls: LoopStats[]): LoopSummary | null =>
  ls.length
    ? {
        p50: summarize(ls.map((l) => l.p50)),
        p99: summarize(ls.map((l) => l.p99)),
        max: summarize(ls.map((l) => l.max)),
        probeLateP99: summarize(ls.map((l) => l.probeLateP99)),
        probeLateMax: summarize(ls.map((l) => l.probeLateMax)),
        mainElu: summarize(ls.map((l) => l.elu)),
      }
    : null;

type Acc = Record<string, { n: number; totalMs: number; usPerDecryptedEvent: number; firstMs?: number }>;

/** Per-event cost breakdown (µs per decrypted event) from the profile runs of one payload. */
function breakdownFor(profiles: Record<string, unknown>, payload: string): Json | null {
  const main = profiles[`main:${payload}`] as (Json & { engine?: Acc; exec?: Acc; parse?: Acc; decrypted: number; eps: number }) | undefined;
  const sdk = profiles[`sdk:${payload}`] as (Json & { decrypted: number; eps: number; workerElu: number | null }) | undefined;
  if (!main?.engine || !main.exec) return null;
  const us = (ms: number): number => round((ms * 1000) / main.decrypted, 1);
  const eng = main.engine;
  const inCall = (call: string, n: string): number => eng[`${call}:${n}`]?.totalMs ?? 0;
  const exec = (call: string): number => main.exec?.[call]?.totalMs ?? 0;
  const decryptExec = exec("decryptSyncTimelines");
  const olm = inCall("decryptSyncTimelines", "olm.megolmDecrypt");
  const unpickle = inCall("decryptSyncTimelines", "olm.inboundUnpickle");
  const devByCurve = inCall("decryptSyncTimelines", "store.getDeviceByCurve25519");
  const replayRead = inCall("decryptSyncTimelines", "store.getReplayRecord");
  const otherReads = Object.entries(eng)
    .filter(([k]) => k.startsWith("decryptSyncTimelines:store.") && !/getDeviceByCurve25519|getReplayRecord/.test(k))
    .reduce((s, [, v]) => s + v.totalMs, 0);
  const engineRest = decryptExec - olm - unpickle - devByCurve - replayRead - otherReads;
  // The decrypt batch's side effects (replay records, events kept for later) are written by the
  // token commit, one transaction per sync.
  const tokenCommit = inCall("commitSyncToken", "store.saveChanges");
  const tokenRest = exec("commitSyncToken") - tokenCommit;
  const receive = exec("receiveSyncChanges");
  // The first sync's share (room state, every Olm-encrypted room key) — outside the steady-state window.
  const receiveFirst = main.exec?.receiveSyncChanges?.firstMs ?? NaN;
  const otherCalls = Object.entries(main.exec)
    .filter(([k]) => !["decryptSyncTimelines", "commitSyncToken", "receiveSyncChanges"].includes(k))
    .reduce((s, [, v]) => s + v.totalMs, 0);
  const engineTotal = Object.values(main.exec).reduce((s, v) => s + v.totalMs, 0);
  const window = Number(main.windowMs);
  const out: Json = {
    source: "one instrumented main-thread run (the same engine code, in-process, with libolm and store calls timed); µs per decrypted event over the whole window incl. the first sync",
    mainEps: round(main.eps, 0),
    perEventUs: {
      "libolm Megolm decrypt": us(olm),
      "libolm unpickle (cache misses)": us(unpickle),
      "store: getDeviceByCurve25519 (cache misses)": us(devByCurve),
      "store: getReplayRecord (sessions loaded from the store)": us(replayRead),
      "store: other reads in decryptSyncTimelines": us(otherReads),
      "engine: rest of decryptSyncTimelines (checks, plaintext JSON.parse)": us(engineRest),
      "store: token commit (packed replay records, pending events; FULL)": us(tokenCommit),
      "engine: rest of commitSyncToken": us(tokenRest),
      ...(Number.isFinite(receiveFirst)
        ? {
            "engine: receiveSyncChanges, first sync (state, every room key over Olm)": us(receiveFirst),
            "engine: receiveSyncChanges, later syncs (JSON.parse of input, device lists)": us(receive - receiveFirst),
          }
        : { "engine: receiveSyncChanges (to-device, keys, state; JSON.parse of input)": us(receive) }),
      "engine: other calls (outgoing requests, keys upload/query)": us(otherCalls),
      "main: the rest (HTTP, JSON.parse of /sync bodies, prepare, emit)": us(window - engineTotal),
    },
    totalUs: us(window),
    rawEquivalentUs: round(1e6 / main.eps, 1),
  };
  if (sdk) {
    const sdkWindow = Number(sdk.windowMs);
    const sdkSpan = Number(sdk.decryptSpanTotalMs);
    const mainSpan = Number(main.decryptSpanTotalMs);
    out.sdk = {
      eps: round(sdk.eps, 0),
      totalUs: round((sdkWindow * 1000) / sdk.decrypted, 1),
      "decryptSyncTimelines call, as the main thread sees it (queued behind receiveSyncChanges)": round((sdkSpan * 1000) / sdk.decrypted, 1),
      "same span, main-thread engine": round((mainSpan * 1000) / main.decrypted, 1),
      "worker busy (ELU)": sdk.workerElu !== null ? round(sdk.workerElu, 3) : null,
      "ceiling if the worker never waited (eps / ELU)": sdk.workerElu ? round(sdk.eps / sdk.workerElu, 0) : null,
    };
  }
  return out;
}

/** Every figure of a run: medians, min/max, ratios (paired and of medians), targets, breakdown. */
export function buildReport(r: BenchResults): Report {
  const payloads = Object.keys(r.manifests);
  const throughput: Report["throughput"] = {};
  const ratios: Report["ratios"] = {};
  const eventLoop: Report["eventLoop"] = { idle: loopSummary(r.idle.map((i) => i.loop)), byPayload: {} };
  const workerBusy: Report["workerBusy"] = {};
  const firstEventMs: Report["firstEventMs"] = {};
  for (const p of payloads) {
    const raws = r.raw[p] ?? [];
    const sdk = r.client[`sdk:${p}`] ?? [];
    const main = r.client[`main:${p}`] ?? [];
    const whatIf: Record<string, Summary> = {};
    for (const x of r.experiments) whatIf[x.key] = summarize((r.client[`sdk+${x.key}:${p}`] ?? []).map((c) => c.eps));
    throughput[p] = {
      raw: summarize(raws.map((x) => x.decryptEps)),
      rawParse: summarize(raws.map((x) => x.decryptParseEps)),
      sdk: summarize(sdk.map((x) => x.eps)),
      main: summarize(main.map((x) => x.eps)),
      whatIf,
    };
    const t = throughput[p]!;
    const paired = sdk.map((s, i) => (raws[i] ? s.eps / raws[i]!.decryptEps : NaN));
    ratios[p] = {
      sdkOverRaw: round(t.sdk.median / t.raw.median, 3),
      sdkOverRawPerRun: summarize(paired.map((x) => round(x, 3))),
      sdkOverRawParse: round(t.sdk.median / t.rawParse.median, 3),
      mainOverRaw: round(t.main.median / t.raw.median, 3),
      sdkOverMain: round(t.sdk.median / t.main.median, 3),
    };
    eventLoop.byPayload[p] = { sdk: loopSummary(sdk.map((x) => x.loop)), main: loopSummary(main.map((x) => x.loop)), raw: "n/a: a synchronous decrypt loop blocks the event loop for the whole run" };
    workerBusy[p] = summarize(sdk.map((x) => x.workerElu ?? NaN));
    firstEventMs[p] = { sdk: summarize(sdk.map((x) => x.firstEventMs)), main: summarize(main.map((x) => x.firstEventMs)) };
  }

  const coldStart: Report["coldStart"] = {};
  for (const n of Object.keys(r.coldStores)) {
    const f = (mode: string): { firstEventMs: Summary; loginMs: Summary; firstSyncMs: Summary } => {
      const runs = r.cold[`${mode}:${n}`] ?? [];
      return { firstEventMs: summarize(runs.map((c) => c.firstEventMs)), loginMs: summarize(runs.map((c) => c.loginMs)), firstSyncMs: summarize(runs.map((c) => c.firstSyncMs ?? NaN)) };
    };
    coldStart[n] = { sdk: f("cold-sdk"), main: f("cold-main") };
  }

  let memory: Report["memory"] = null;
  if (r.memoryManifest) {
    memory = {};
    for (const [mode, runs] of Object.entries(r.memory)) {
      const m = runs.filter((x) => x.memory);
      memory[mode] = {
        events: m[0]?.decrypted ?? 0,
        eps: summarize(m.map((x) => x.eps)),
        rssBeforeMB: summarize(m.map((x) => x.memory!.rssBeforeMB)),
        rssAfterMB: summarize(m.map((x) => x.memory!.rssAfterMB)),
        rssAfterGcMB: summarize(m.map((x) => x.memory!.rssAfterGcMB)),
        maxRssMB: summarize(m.map((x) => x.memory!.maxRssMB)),
        heapUsedMB: summarize(m.map((x) => x.memory!.heapUsedMB)),
        externalMB: summarize(m.map((x) => x.memory!.externalMB)),
      };
    }
  }

  const head = headline(r);
  // Issue 17's targets first; then the earlier ones still held (event-loop max, cold start).
  const targets: Target[] = headlineTargets(head.rows, head.backup, r.send);
  for (const p of payloads) {
    const l = eventLoop.byPayload[p]!.sdk;
    if (!l) continue;
    targets.push({ name: `event-loop max during sdk decryption, ${label(p)}`, measured: round(l.max.median, 2), unit: "ms", target: "≤ 50 ms", pass: l.max.median <= 50, note: `worst run ${round(l.max.max, 2)} ms` });
  }
  let pool: Report["pool"] = null;
  if (r.poolShards) {
    const labels: Record<string, Json | null | undefined> = { "200": r.manifests["200"], ...Object.fromEntries(Object.entries(r.scaleManifests ?? {}).slice(0, 1)), skew: r.skewManifest, long: r.longManifest };
    const rows = poolRows(r.client, labels, r.poolShards);
    targets.push(...poolTargets(rows, r.client));
    const costs = perEventCosts(r.profiles["sdk:pool2:200"] as Json | undefined, r.profiles["main:pool2:200"] as Json | undefined, Number(r.machine.cpus) || 2);
    const rawEps = rows.find((x) => x.key === "pool:2:200")?.paired.raw.median ?? NaN;
    // Kernel CPU of the measured 2-worker runs when read (busy time counts waiting for a core), else the profile's busy figures.
    const two = rows.find((x) => x.key === "pool:2:200");
    const k = two?.cpu;
    const c = k && Number.isFinite(k.main.median)
      ? { main: k.main.median, crypto: k.crypto.median, decrypt: k.decrypt.median / Math.max(1e-9, two.decipheredShare.median), decipheredShare: two.decipheredShare.median, rawEps, helpers: k.helpers.median, ...(costs ? { mainBusy: costs.main.total, cryptoBusy: costs.crypto.total } : {}) }
      : costs && { main: costs.main.total, crypto: costs.crypto.total, decrypt: costs.decrypt.total, decipheredShare: costs.decipheredShare, rawEps };
    const hot = Number(r.options.pool && (r.options.pool as Json).hotShare) || 0.5;
    pool = { rows, costs, scaling: c ? [4, 8, 16].map((n) => projectScaling(c, n)) : [], skewScaling: c ? [4, 8, 16].map((n) => projectScaling(c, n, hot)) : [] };
  }
  const sizes = Object.keys(coldStart).map(Number).sort((a, b) => a - b);
  const biggest = sizes[sizes.length - 1];
  if (biggest !== undefined) {
    const c = coldStart[String(biggest)]!.sdk.firstEventMs;
    targets.push({ name: `cold start to first decrypted event, ${biggest.toLocaleString("en-US")} sessions (sdk)`, measured: round(c.median, 0), unit: "ms", target: "< 1000 ms", pass: c.median < 1000, note: `worst run ${round(c.max, 0)} ms` });
  }

  const scaling: Report["scaling"] = [];
  const raw200 = throughput["200"]?.raw.median ?? NaN;
  const scaleRow = (key: string, lbl: string, runs: ClientResult[]): void => {
    if (!runs.length) return;
    const eps = summarize(runs.map((x) => x.eps));
    scaling.push({
      key,
      label: lbl,
      eps,
      overRaw: round(eps.median / raw200, 3),
      workerBusy: summarize(runs.map((x) => x.workerElu ?? NaN)),
      loopP99: summarize(runs.map((x) => x.loop.p99)),
      loopMax: summarize(runs.map((x) => x.loop.max)),
    });
  };
  const batchKeys = Object.keys(r.sweep).filter((k) => k.startsWith("batch:"));
  const mainBatch = Number(r.options.batch);
  const batchRows: [number, string, ClientResult[]][] = batchKeys.map((k) => [Number(k.slice(6)), k, r.sweep[k]!]);
  if (batchRows.length) batchRows.push([mainBatch, `batch:${mainBatch}`, r.client["sdk:200"] ?? []]);
  for (const [b, k, runs] of batchRows.sort((a, c) => a[0] - c[0])) scaleRow(k, `${b} events per sync${b === mainBatch ? " (main figures)" : ""}`, runs);
  for (const k of Object.keys(r.sweep).filter((x) => x.startsWith("bigrooms:"))) {
    scaleRow(k, `${mainBatch} events per sync, +${k.slice(9)} members per room (${Number(k.slice(9)) * Number(r.manifests["200"]?.rooms ?? 0)} tracked users)`, r.sweep[k]!);
  }

  const breakdown: Record<string, Json> = {};
  for (const p of [...payloads, ...Object.keys(r.scaleManifests ?? {})]) {
    const b = breakdownFor(r.profiles, p);
    if (b) breakdown[p] = b;
  }

  let bigRooms: Json | null = null;
  const bp = r.profiles["main:200:bigrooms"] as (Json & { engine?: Acc; exec?: Acc; syncs: number; eps: number; extraMembersPerRoom: number }) | undefined;
  const np = r.profiles["main:200"] as (Json & { engine?: Acc; exec?: Acc; syncs: number; eps: number; extraMembersPerRoom: number }) | undefined;
  if (bp?.engine && bp.exec) {
    const per = (p: typeof bp | undefined, k: string, what: "exec" | "engine"): { msPerSync: number; calls: number } => {
      const t = p?.[what]?.[k];
      return { msPerSync: t && p ? round(t.totalMs / Number(p.syncs), 2) : NaN, calls: t ? t.n : 0 };
    };
    bigRooms = {
      extraMembersPerRoom: bp.extraMembersPerRoom,
      trackedUsers: bp.extraMembersPerRoom * Number(r.manifests["200"]?.rooms ?? 0),
      eps: round(bp.eps, 0),
      epsSmallRooms: np ? round(np.eps, 0) : null,
      receiveSyncChanges: per(bp, "receiveSyncChanges", "exec"),
      "receiveSyncChanges:getTrackedUsers": per(bp, "receiveSyncChanges:store.getTrackedUsers", "engine"),
      "receiveSyncChanges:getRoomMembers": per(bp, "receiveSyncChanges:store.getRoomMembers", "engine"),
      outgoingRequests: per(bp, "outgoingRequests", "exec"),
      "outgoingRequests:getTrackedUsers": per(bp, "outgoingRequests:store.getTrackedUsers", "engine"),
      smallRooms: np ? { receiveSyncChanges: per(np, "receiveSyncChanges", "exec"), outgoingRequests: per(np, "outgoingRequests", "exec") } : null,
    };
  }

  return {
    date: r.date,
    durationSeconds: round(r.durationSeconds, 0),
    machine: r.machine,
    options: r.options,
    workloads: { throughput: r.manifests, scale: r.scaleManifests, backup: r.backupManifest, memory: r.memoryManifest, coldStores: r.coldStores },
    paired: head.rows,
    backup: head.backup,
    send: r.send,
    throughput,
    ratios,
    eventLoop,
    workerBusy,
    firstEventMs,
    coldStart,
    memory,
    targets,
    pool,
    scaling,
    breakdown,
    bigRooms,
    whatIf: r.experiments,
    profiles: r.profiles,
    runs: { raw: r.raw, client: r.client, idle: r.idle, cold: r.cold, memory: r.memory, sweep: r.sweep, backup: r.backup },
  };
}


export { label } from "./format.js";
