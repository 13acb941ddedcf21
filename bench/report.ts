/**
 * Turns the raw runs into the report: medians/min/max, ratios, targets (PASS/FAIL, informational
 * only), the per-event cost breakdown from the profile runs, the stdout table and the SVG chart.
 */
import { summarize, round, type Json, type Summary } from "./common.js";
import type { ColdStoreInfo } from "./coldStore.js";
import type { ClientResult, ColdResult, IdleResult, RawResult, TunedFlags } from "./measure.js";
import type { LoopStats } from "./loopMonitor.js";

export interface BenchResults {
  date: string;
  durationSeconds: number;
  machine: Json;
  options: Json;
  manifests: Record<string, Json>;
  memoryManifest: Json | null;
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

export interface Target {
  name: string;
  measured: number;
  unit: string;
  target: string;
  pass: boolean;
  note: string;
}

export interface Report {
  date: string;
  durationSeconds: number;
  machine: Json;
  options: Json;
  workloads: { throughput: Record<string, Json>; memory: Json | null; coldStores: Record<string, ColdStoreInfo> };
  /** decrypted events per second */
  throughput: Record<string, { raw: Summary; rawParse: Summary; sdk: Summary; main: Summary; whatIf: Record<string, Summary> }>;
  ratios: Record<string, { sdkOverRaw: number; sdkOverRawPerRun: Summary; sdkOverRawParse: number; mainOverRaw: number; sdkOverMain: number }>;
  eventLoop: { idle: LoopSummary | null; byPayload: Record<string, { sdk: LoopSummary | null; main: LoopSummary | null; raw: string }> };
  workerBusy: Record<string, Summary>;
  firstEventMs: Record<string, { sdk: Summary; main: Summary }>;
  coldStart: Record<string, { sdk: { firstEventMs: Summary; loginMs: Summary; firstSyncMs: Summary }; main: { firstEventMs: Summary; loginMs: Summary; firstSyncMs: Summary } }>;
  memory: Record<string, { events: number; eps: Summary; rssBeforeMB: Summary; rssAfterMB: Summary; rssAfterGcMB: Summary; maxRssMB: Summary; heapUsedMB: Summary; externalMB: Summary }> | null;
  targets: Target[];
  /** sdk, 200 B: throughput by events per sync, and with big rooms. */
  scaling: { key: string; label: string; eps: Summary; overRaw: number; workerBusy: Summary; loopP99: Summary; loopMax: Summary }[];
  breakdown: Record<string, Json>;
  /** Big rooms: where receiveSyncChanges spends its time (main-thread profile). */
  bigRooms: Json | null;
  whatIf: { key: string; label: string; flags: TunedFlags }[];
  profiles: Record<string, unknown>;
  runs: { raw: Record<string, RawResult[]>; client: Record<string, ClientResult[]>; idle: IdleResult[]; cold: Record<string, ColdResult[]>; memory: Record<string, ClientResult[]>; sweep: Record<string, ClientResult[]> };
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

type Acc = Record<string, { n: number; totalMs: number; usPerDecryptedEvent: number }>;

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
      "engine: receiveSyncChanges (to-device, keys, state; JSON.parse of input)": us(receive),
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

  const targets: Target[] = [];
  for (const p of payloads) {
    const ratio = ratios[p]!.sdkOverRaw;
    targets.push({ name: `sdk/raw throughput, ${label(p)}`, measured: ratio, unit: "×", target: "≥ 0.85", pass: ratio >= 0.85, note: "ratio of medians; raw = libolm decrypt alone" });
  }
  for (const p of payloads) {
    const l = eventLoop.byPayload[p]!.sdk;
    if (!l) continue;
    targets.push({ name: `event-loop p99 during sdk decryption, ${label(p)}`, measured: round(l.p99.median, 2), unit: "ms", target: "≤ 10 ms", pass: l.p99.median <= 10, note: `worst run ${round(l.p99.max, 2)} ms` });
    targets.push({ name: `event-loop max during sdk decryption, ${label(p)}`, measured: round(l.max.median, 2), unit: "ms", target: "≤ 50 ms", pass: l.max.median <= 50, note: `worst run ${round(l.max.max, 2)} ms` });
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
  for (const p of payloads) {
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
    workloads: { throughput: r.manifests, memory: r.memoryManifest, coldStores: r.coldStores },
    throughput,
    ratios,
    eventLoop,
    workerBusy,
    firstEventMs,
    coldStart,
    memory,
    targets,
    scaling,
    breakdown,
    bigRooms,
    whatIf: r.experiments,
    profiles: r.profiles,
    runs: { raw: r.raw, client: r.client, idle: r.idle, cold: r.cold, memory: r.memory, sweep: r.sweep },
  };
}

export const label = (p: string): string => (Number(p) >= 1024 ? `${round(Number(p) / 1024, 1)} KB` : `${p} B`);

// -------------------------------------------------------------------------------------------------
// stdout table

const fmt = (x: number, d = 0): string => (Number.isFinite(x) ? x.toLocaleString("en-US", { minimumFractionDigits: d, maximumFractionDigits: d }) : "—");
const cell = (s: Summary, d = 0): string => (Number.isFinite(s.median) ? `${fmt(s.median, d)} [${fmt(s.min, d)}–${fmt(s.max, d)}]` : "—");

function table(head: string[], rows: string[][]): string {
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cols: string[]): string => cols.map((c, i) => (i === 0 ? c.padEnd(w[i]!) : c.padStart(w[i]!))).join("  ");
  return [line(head), w.map((n) => "-".repeat(n)).join("  "), ...rows.map(line)].join("\n");
}

export function renderTable(rep: Report): string {
  const out: string[] = [];
  const m = rep.machine;
  const runs = Number(rep.options.runs);
  out.push(`matrix-e2ee-worker-sdk ${String(m.sdk)} bench${rep.options.quick ? " (--quick: small workloads, indicative only)" : ""} — ${rep.date} — ${String(m.os)}, ${String(m.cpus)} CPUs (${String(m.cpuModel)}), Node ${String(m.node)}, libolm ${String(m.libolm)}`);
  const la = (v: unknown): string => (Array.isArray(v) ? v.map((x: number) => x.toFixed(2)).join(" ") : "?");
  out.push(`${String(m.note)} Load average at start: ${la(m.loadavgStart)}, at end: ${la(m.loadavgEnd)}.`);
  out.push(`Figures: median [min–max] of ${runs} run(s), each in a fresh process; throughput is steady state (after the first sync, which carries the room keys).`);
  out.push("");
  out.push("Decrypt throughput (decrypted events/s)");
  const rows: string[][] = [];
  for (const [p, t] of Object.entries(rep.throughput)) {
    const w = rep.workloads.throughput[p]!;
    const rat = rep.ratios[p]!;
    rows.push([
      `${label(p)} (${fmt(Number(w.totalEvents))} ev, ${String(w.rooms)}×${String(w.senders)})`,
      cell(t.raw),
      cell(t.rawParse),
      cell(t.sdk),
      cell(t.main),
      fmt(rat.sdkOverRaw, 2),
      fmt(rat.sdkOverRawParse, 2),
      fmt(rat.mainOverRaw, 2),
    ]);
  }
  out.push(table(["payload", "raw: libolm decrypt", "raw + JSON.parse", "sdk (worker)", "main-thread engine", "sdk/raw", "sdk/raw+parse", "main/raw"], rows));
  out.push("");
  out.push("Main-thread event-loop delay while decrypting (ms; monitorEventLoopDelay resolution 1 ms; 5 ms probe timer running)");
  const lrows: string[][] = [];
  const lrow = (name: string, l: LoopSummary | null, busy?: Summary): void => {
    if (!l) return;
    lrows.push([name, cell(l.p50, 2), cell(l.p99, 2), cell(l.max, 1), cell(l.probeLateMax, 1), fmt(l.mainElu.median * 100, 0) + " %", busy && Number.isFinite(busy.median) ? fmt(busy.median * 100, 0) + " %" : "—"]);
  };
  lrow("idle (floor)", rep.eventLoop.idle);
  for (const [p, e] of Object.entries(rep.eventLoop.byPayload)) {
    lrow(`sdk ${label(p)}`, e.sdk, rep.workerBusy[p]);
    lrow(`main-thread ${label(p)}`, e.main);
    lrows.push([`raw ${label(p)}`, "n/a", "n/a", "n/a", "n/a", "100 %", "—"]);
  }
  out.push(table(["mode", "p50", "p99", "max", "probe late max", "main busy", "worker busy"], lrows));
  out.push("  raw: a synchronous libolm loop blocks the event loop for its whole duration (no samples).");
  out.push("");
  if (Object.keys(rep.coldStart).length) {
    out.push("Cold start: new MatrixClient → first decrypted event, store pre-populated (ms)");
    const crows: string[][] = [];
    for (const [n, c] of Object.entries(rep.coldStart)) {
      const g = rep.workloads.coldStores[n]!;
      crows.push([`${fmt(Number(n))} sessions (${fmt(g.fileBytes / 1e6, 1)} MB)`, cell(c.sdk.firstEventMs), cell(c.sdk.loginMs), cell(c.main.firstEventMs), cell(c.main.loginMs), `${fmt(g.sessionGenSeconds, 1)} s + ${fmt(g.storeWriteSeconds, 1)} s`]);
    }
    out.push(table(["store", "sdk: first event", "sdk: login done", "main: first event", "main: login done", "generation (libolm + saveChanges)"], crows));
    out.push("");
  }
  if (rep.memory) {
    const mm = rep.workloads.memory!;
    out.push(`Resident memory after decrypting ${fmt(Number(mm.totalEvents))} events across ${fmt(Number(mm.sessions) - Number(mm.lostSessions))} sessions (MB, whole process incl. the worker)`);
    const mrows: string[][] = [];
    for (const [mode, x] of Object.entries(rep.memory)) {
      mrows.push([mode === "sdk" ? "sdk (worker)" : "main-thread engine", cell(x.rssBeforeMB), cell(x.rssAfterMB), cell(x.rssAfterGcMB), cell(x.maxRssMB), cell(x.heapUsedMB, 1), cell(x.eps)]);
    }
    out.push(table(["mode", "RSS before client", "RSS after", "RSS after main gc()", "peak RSS", "main heap used", "ev/s"], mrows));
    out.push("");
  }
  if (rep.whatIf.length) {
    out.push("What-if (bench-only store wrapper in the real worker, see bench/tunedStore.ts; NOT the shipped SDK)");
    const wrows: string[][] = [];
    for (const [p, t] of Object.entries(rep.throughput)) {
      wrows.push([`sdk ${label(p)} as shipped`, cell(t.sdk), fmt(t.sdk.median / t.raw.median, 2)]);
      for (const x of rep.whatIf) {
        const s = t.whatIf[x.key]!;
        wrows.push([`  ${x.label}`, cell(s), fmt(s.median / t.raw.median, 2)]);
      }
    }
    out.push(table(["variant", "ev/s", "/raw"], wrows));
    out.push("");
  }
  if (rep.scaling.length) {
    out.push("Batching granularity and room size (sdk, 200 B payload, same events)");
    out.push(
      table(
        ["variant", "ev/s", "/raw", "worker busy", "loop p99", "loop max"],
        rep.scaling.map((x) => [x.label, cell(x.eps), fmt(x.overRaw, 2), fmt(x.workerBusy.median * 100, 0) + " %", cell(x.loopP99, 2), cell(x.loopMax, 1)]),
      ),
    );
    out.push("");
  }
  if (rep.bigRooms) {
    const b = rep.bigRooms as Record<string, { msPerSync: number; calls: number }> & Json;
    const small = b.smallRooms as unknown as Record<string, { msPerSync: number }> | null;
    out.push(
      `Big rooms (${fmt(Number(b.trackedUsers))} tracked users; one instrumented main-thread run, ${fmt(Number(b.eps))} ev/s vs ${fmt(Number(b.epsSmallRooms))}): ` +
        `receiveSyncChanges ${fmt(b.receiveSyncChanges!.msPerSync, 1)} ms/sync (small rooms: ${fmt(small?.receiveSyncChanges?.msPerSync ?? NaN, 1)}), ` +
        (b["receiveSyncChanges:getTrackedUsers"]!.calls
          ? `of which store.getTrackedUsers ${fmt(b["receiveSyncChanges:getTrackedUsers"]!.msPerSync, 1)} ms (${fmt(b["receiveSyncChanges:getTrackedUsers"]!.calls)} calls) `
          : "store.getTrackedUsers never called (tracked users are kept in memory) ") +
        `and getRoomMembers ${fmt(b["receiveSyncChanges:getRoomMembers"]!.msPerSync, 1)} ms; outgoingRequests ${fmt(b.outgoingRequests!.msPerSync, 1)} ms/sync.`,
    );
    out.push("");
  }
  if (Object.keys(rep.breakdown).length) {
    out.push("Where the time goes (one instrumented run; µs per decrypted event)");
    for (const [p, b] of Object.entries(rep.breakdown)) {
      const per = b.perEventUs as Record<string, number>;
      const brow = Object.entries(per).map(([k, v]) => [k, fmt(v, 1)]);
      brow.push(["total (main-thread engine run)", fmt(Number(b.totalUs), 1)]);
      out.push(`  ${label(p)}:`);
      out.push(
        table(["component", "µs/ev"], brow)
          .split("\n")
          .map((l) => "    " + l)
          .join("\n"),
      );
      const s = b.sdk as Record<string, number | null> | undefined;
      if (s) {
        out.push(
          `    sdk run: ${fmt(Number(s.totalUs), 1)} µs/ev total; decrypt call ${fmt(Number(s["decryptSyncTimelines call, as the main thread sees it (queued behind receiveSyncChanges)"]), 1)} (main-thread engine: ${fmt(Number(s["same span, main-thread engine"]), 1)}); worker busy ${fmt(Number(s["worker busy (ELU)"]) * 100, 0)} % → ceiling ${fmt(Number(s["ceiling if the worker never waited (eps / ELU)"]))} ev/s`,
        );
      }
    }
    out.push("");
  }
  out.push("Targets (informational; the exit code never depends on them)");
  for (const t of rep.targets) out.push(`  ${t.pass ? "PASS" : "FAIL"}  ${t.name}: ${fmt(t.measured, t.unit === "×" ? 2 : t.unit === "ms" && t.measured < 100 ? 2 : 0)}${t.unit === "×" ? "×" : " " + t.unit} (target ${t.target}; ${t.note})`);
  return out.join("\n");
}

// -------------------------------------------------------------------------------------------------
// SVG chart (hand-written, no dependencies)

const esc = (s: string): string => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");

export function renderSvg(rep: Report): string {
  const W = 980;
  const parts: string[] = [];
  let y = 0;
  const text = (x: number, yy: number, s: string, opts: { size?: number; anchor?: string; weight?: string; fill?: string } = {}): void => {
    parts.push(`<text x="${round(x, 1)}" y="${round(yy, 1)}" font-size="${opts.size ?? 12}" text-anchor="${opts.anchor ?? "start"}"${opts.weight ? ` font-weight="${opts.weight}"` : ""} fill="${opts.fill ?? "#222"}">${esc(s)}</text>`);
  };
  const rect = (x: number, yy: number, w: number, h: number, fill: string): void => {
    parts.push(`<rect x="${round(x, 1)}" y="${round(yy, 1)}" width="${round(Math.max(0, w), 1)}" height="${round(Math.max(0, h), 1)}" fill="${fill}"/>`);
  };
  const line = (x1: number, y1: number, x2: number, y2: number, stroke: string, dash = "", width = 1): void => {
    parts.push(`<line x1="${round(x1, 1)}" y1="${round(y1, 1)}" x2="${round(x2, 1)}" y2="${round(y2, 1)}" stroke="${stroke}" stroke-width="${width}"${dash ? ` stroke-dasharray="${dash}"` : ""}/>`);
  };
  const m = rep.machine;
  text(20, 26, `Decrypt throughput and main-thread responsiveness — ${rep.date.slice(0, 10)}${rep.options.quick ? " (--quick run)" : ""}`, { size: 17, weight: "bold" });
  text(20, 46, `${String(m.os)}, ${String(m.cpus)} CPUs, Node ${String(m.node)}, libolm ${String(m.libolm)}, SDK ${String(m.sdk)} — medians of ${String(rep.options.runs)} runs, whiskers min–max. Shared, noisy machine.`, { size: 11, fill: "#555" });
  y = 70;

  const colors: Record<string, string> = { raw: "#7f7f7f", rawParse: "#b0b0b0", sdk: "#1f77b4", main: "#d62728", p99: "#ff7f0e", max: "#8c564b" };

  // Panel 1: throughput bars
  {
    const top = y + 24;
    const h = 220;
    const left = 80;
    const right = W - 30;
    text(20, y + 12, "Decrypted events per second (higher is better)", { size: 14, weight: "bold" });
    const series: [keyof Report["throughput"][string], string][] = [
      ["raw", "raw: libolm decrypt alone"],
      ["rawParse", "raw + JSON.parse"],
      ["sdk", "sdk (worker, full path)"],
      ["main", "main-thread engine"],
    ];
    const payloads = Object.keys(rep.throughput);
    const maxV = Math.max(1, ...payloads.flatMap((p) => series.map(([k]) => (rep.throughput[p]![k] as Summary).max).filter(Number.isFinite)));
    const scaleMax = niceCeil(maxV);
    const yOf = (v: number): number => top + h - (v / scaleMax) * h;
    for (let i = 0; i <= 4; i++) {
      const v = (scaleMax * i) / 4;
      line(left, yOf(v), right, yOf(v), "#e5e5e5");
      text(left - 6, yOf(v) + 4, fmt(v), { size: 10, anchor: "end", fill: "#666" });
    }
    const groupW = (right - left) / payloads.length;
    const barW = Math.min(70, (groupW - 60) / series.length);
    payloads.forEach((p, gi) => {
      const gx = left + gi * groupW + (groupW - barW * series.length) / 2;
      series.forEach(([k], si) => {
        const s = rep.throughput[p]![k] as Summary;
        const x = gx + si * barW;
        if (!Number.isFinite(s.median)) return;
        rect(x + 4, yOf(s.median), barW - 8, top + h - yOf(s.median), colors[k]!);
        line(x + barW / 2, yOf(s.min), x + barW / 2, yOf(s.max), "#000");
        line(x + barW / 2 - 5, yOf(s.min), x + barW / 2 + 5, yOf(s.min), "#000");
        line(x + barW / 2 - 5, yOf(s.max), x + barW / 2 + 5, yOf(s.max), "#000");
        text(x + barW / 2, yOf(s.max) - 4, fmt(s.median), { size: 10, anchor: "middle" });
        if (k === "sdk" || k === "main") text(x + barW / 2, top + h - 6, `${fmt(s.median / rep.throughput[p]!.raw.median, 2)}×`, { size: 10, anchor: "middle", fill: "#fff", weight: "bold" });
      });
      const w = rep.workloads.throughput[p]!;
      text(left + gi * groupW + groupW / 2, top + h + 16, `${label(p)} payload — ${fmt(Number(w.totalEvents))} events`, { size: 12, anchor: "middle" });
    });
    line(left, top + h, right, top + h, "#333");
    let lx = left;
    for (const [k, name] of series) {
      rect(lx, top + h + 28, 12, 12, colors[k]!);
      text(lx + 16, top + h + 38, name, { size: 11 });
      lx += 40 + name.length * 6;
    }
    text(right, top + h + 38, "× = ratio to raw (target sdk ≥ 0.85×)", { size: 11, anchor: "end", fill: "#555" });
    y = top + h + 60;
  }

  // Panel 2: event-loop delay (log scale)
  {
    const top = y + 24;
    const h = 200;
    const left = 80;
    const right = W - 30;
    text(20, y + 12, "Main-thread event-loop delay while decrypting, ms (log scale; lower is better)", { size: 14, weight: "bold" });
    const rows: [string, LoopSummary | null][] = [["idle (floor)", rep.eventLoop.idle]];
    for (const [p, e] of Object.entries(rep.eventLoop.byPayload)) {
      rows.push([`sdk ${label(p)}`, e.sdk]);
      rows.push([`main-thread ${label(p)}`, e.main]);
    }
    const lo = 0.5;
    const hiV = Math.max(100, ...rows.flatMap(([, l]) => (l ? [l.max.max] : [])).filter(Number.isFinite));
    const hi = hiV * 1.6;
    const yOf = (v: number): number => top + h - ((Math.log10(Math.max(lo, v)) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo))) * h;
    for (let d = 1; d <= hi; d *= 10) {
      line(left, yOf(d), right, yOf(d), "#e5e5e5");
      text(left - 6, yOf(d) + 4, String(d), { size: 10, anchor: "end", fill: "#666" });
    }
    line(left, yOf(10), right, yOf(10), colors.p99!, "6 4");
    text(left + 4, yOf(10) - 3, "p99 target 10 ms", { size: 10, fill: colors.p99! });
    line(left, yOf(50), right, yOf(50), colors.max!, "6 4");
    text(left + 4, yOf(50) - 3, "max target 50 ms", { size: 10, fill: colors.max! });
    const groupW = (right - left) / rows.length;
    const barW = Math.min(40, (groupW - 20) / 2);
    rows.forEach(([name, l], gi) => {
      const gx = left + gi * groupW + (groupW - 2 * barW) / 2;
      if (l) {
        (["p99", "max"] as const).forEach((k, si) => {
          const s = l[k];
          const x = gx + si * barW;
          rect(x + 3, yOf(s.median), barW - 6, top + h - yOf(s.median), colors[k]!);
          line(x + barW / 2, yOf(s.min), x + barW / 2, yOf(s.max), "#000");
          text(x + barW / 2, yOf(Math.max(s.max, s.median)) - 4, fmt(s.median, s.median < 10 ? 1 : 0), { size: 10, anchor: "middle" });
        });
      }
      text(left + gi * groupW + groupW / 2, top + h + 16, name, { size: 11, anchor: "middle" });
    });
    line(left, top + h, right, top + h, "#333");
    rect(left, top + h + 28, 12, 12, colors.p99!);
    text(left + 16, top + h + 38, "p99", { size: 11 });
    rect(left + 60, top + h + 28, 12, 12, colors.max!);
    text(left + 76, top + h + 38, "max", { size: 11 });
    text(right, top + h + 38, "raw mode: n/a (a synchronous loop blocks the event loop for the whole run)", { size: 11, anchor: "end", fill: "#555" });
    y = top + h + 60;
  }

  // Panel 3: cold start + memory
  const coldKeys = Object.keys(rep.coldStart);
  if (coldKeys.length) {
    const top = y + 24;
    const h = 160;
    const left = 80;
    const right = W / 2 + 40;
    text(20, y + 12, "Cold start → first decrypted event, ms", { size: 14, weight: "bold" });
    const vals = coldKeys.flatMap((n) => [rep.coldStart[n]!.sdk.firstEventMs.max, rep.coldStart[n]!.main.firstEventMs.max]).filter(Number.isFinite);
    const scaleMax = niceCeil(Math.max(1100, ...vals));
    const yOf = (v: number): number => top + h - (v / scaleMax) * h;
    for (let i = 0; i <= 4; i++) {
      const v = (scaleMax * i) / 4;
      line(left, yOf(v), right, yOf(v), "#e5e5e5");
      text(left - 6, yOf(v) + 4, fmt(v), { size: 10, anchor: "end", fill: "#666" });
    }
    line(left, yOf(1000), right, yOf(1000), "#2ca02c", "6 4");
    text(right, yOf(1000) - 3, "target < 1000 ms (largest store, sdk)", { size: 10, anchor: "end", fill: "#2ca02c" });
    const groupW = (right - left) / coldKeys.length;
    const barW = Math.min(60, (groupW - 20) / 2);
    coldKeys.forEach((n, gi) => {
      const gx = left + gi * groupW + (groupW - 2 * barW) / 2;
      (["sdk", "main"] as const).forEach((k, si) => {
        const s = rep.coldStart[n]![k].firstEventMs;
        if (!Number.isFinite(s.median)) return;
        const x = gx + si * barW;
        rect(x + 4, yOf(s.median), barW - 8, top + h - yOf(s.median), colors[k]!);
        line(x + barW / 2, yOf(s.min), x + barW / 2, yOf(s.max), "#000");
        text(x + barW / 2, yOf(s.max) - 4, fmt(s.median), { size: 10, anchor: "middle" });
      });
      text(left + gi * groupW + groupW / 2, top + h + 16, `${fmt(Number(n))} sessions`, { size: 11, anchor: "middle" });
    });
    line(left, top + h, right, top + h, "#333");
    rect(left, top + h + 28, 12, 12, colors.sdk!);
    text(left + 16, top + h + 38, "sdk (worker)", { size: 11 });
    rect(left + 110, top + h + 28, 12, 12, colors.main!);
    text(left + 126, top + h + 38, "main-thread engine", { size: 11 });

    // memory as text, right side
    const mx = W / 2 + 90;
    text(mx, y + 12, "Resident memory", { size: 14, weight: "bold" });
    let my = top + 10;
    if (rep.memory && rep.workloads.memory) {
      const mm = rep.workloads.memory;
      text(mx, my, `after ${fmt(Number(mm.totalEvents))} events across ${fmt(Number(mm.sessions) - Number(mm.lostSessions))} sessions (whole process):`, { size: 11 });
      my += 22;
      for (const [mode, x] of Object.entries(rep.memory)) {
        text(mx, my, `${mode === "sdk" ? "sdk (worker)" : "main-thread engine"}: RSS ${fmt(x.rssAfterMB.median)} MB (before client ${fmt(x.rssBeforeMB.median)} MB, peak ${fmt(x.maxRssMB.median)} MB)`, { size: 11 });
        my += 18;
      }
    }
    my += 10;
    text(mx, my, "Targets:", { size: 12, weight: "bold" });
    my += 18;
    for (const t of rep.targets) {
      text(mx, my, `${t.pass ? "PASS" : "FAIL"} ${t.name}: ${fmt(t.measured, t.unit === "×" ? 2 : 1)}${t.unit === "×" ? "×" : " " + t.unit}`, { size: 10.5, fill: t.pass ? "#2ca02c" : "#d62728" });
      my += 15;
    }
    y = Math.max(top + h + 60, my + 10);
  }

  // Panel 4: what moves the sdk figure (200 B): what-if store variants, sync size, big rooms
  const t200 = rep.throughput["200"];
  const hrows: { name: string; s: Summary; color: string }[] = [];
  if (t200) {
    hrows.push({ name: "sdk as shipped (250 events/sync)", s: t200.sdk, color: colors.sdk! });
    for (const x of rep.whatIf) {
      const s = t200.whatIf[x.key];
      if (s && Number.isFinite(s.median)) hrows.push({ name: `what-if: ${x.label}`, s, color: "#6baed6" });
    }
    for (const x of rep.scaling) if (!x.label.includes("(main figures)")) hrows.push({ name: x.label, s: x.eps, color: x.key.startsWith("bigrooms") ? "#e377c2" : "#9467bd" });
  }
  if (t200 && hrows.length > 1) {
    const top = y + 30;
    const rowH = 20;
    const left = 420;
    const right = W - 40;
    text(20, y + 12, "What moves the sdk figure (200 B payload, decrypted events/s)", { size: 14, weight: "bold" });
    const raw = t200.raw.median;
    const scaleMax = niceCeil(Math.max(raw * 1.05, ...hrows.map((r) => r.s.max).filter(Number.isFinite)));
    const xOf = (v: number): number => left + (v / scaleMax) * (right - left);
    for (let i = 0; i <= 4; i++) {
      const v = (scaleMax * i) / 4;
      line(xOf(v), top - 4, xOf(v), top + hrows.length * rowH, "#e5e5e5");
      text(xOf(v), top + hrows.length * rowH + 14, fmt(v), { size: 10, anchor: "middle", fill: "#666" });
    }
    hrows.forEach((r, i) => {
      const yy = top + i * rowH;
      text(left - 8, yy + 13, r.name.length > 66 ? r.name.slice(0, 65) + "…" : r.name, { size: 10.5, anchor: "end" });
      rect(left, yy + 3, xOf(r.s.median) - left, rowH - 6, r.color);
      line(xOf(r.s.min), yy + rowH / 2, xOf(r.s.max), yy + rowH / 2, "#000");
      text(xOf(Math.max(r.s.max, r.s.median)) + 4, yy + 13, `${fmt(r.s.median)} (${fmt(r.s.median / raw, 2)}×)`, { size: 10 });
    });
    line(xOf(raw), top - 6, xOf(raw), top + hrows.length * rowH, colors.raw!, "6 4", 1.5);
    text(xOf(raw), top - 9, "raw", { size: 10, anchor: "middle", fill: "#555" });
    line(xOf(0.85 * raw), top - 6, xOf(0.85 * raw), top + hrows.length * rowH, "#2ca02c", "6 4", 1.5);
    text(xOf(0.85 * raw), top - 9, "0.85× raw", { size: 10, anchor: "middle", fill: "#2ca02c" });
    y = top + hrows.length * rowH + 30;
  }

  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${round(y, 0)}" viewBox="0 0 ${W} ${round(y, 0)}" font-family="Helvetica, Arial, sans-serif">\n<rect width="100%" height="100%" fill="#fff"/>\n${parts.join("\n")}\n</svg>\n`;
}

function niceCeil(v: number): number {
  const e = 10 ** Math.floor(Math.log10(v));
  for (const f of [1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10]) if (f * e >= v) return f * e;
  return 10 * e;
}
