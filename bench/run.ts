/**
 * `npm run bench` — decrypt throughput and main-thread responsiveness, measured side by side.
 *
 *   node dist/bench/run.js [--quick] [--runs N] [--secondary-runs N] [--rooms R] [--senders S]
 *                          [--messages M] [--batch B] [--no-cold] [--no-memory] [--no-experiments]
 *                          [--no-sweep] [--no-scale] [--no-backup] [--no-send] [--no-profile] [--keep-temp]
 *
 * Generates the workloads with real libolm sessions (workload.ts, coldStore.ts), then runs every
 * measurement `--runs` times, each in a fresh process (measure.ts), modes interleaved so drift on
 * a noisy machine hits them alike. Every client run of the headline workloads (10 rooms at 200 B
 * and 2 KB, the 1,000-room ones, the key backup pair) is bracketed by raw libolm passes in its
 * own process, and its paired ratio (paired.ts) is the headline; the send benchmark (send.ts)
 * runs once at the end in its own process. Reports medians, min and max: a table on stdout,
 * bench/results/latest.json and bench/results/latest.svg (a --quick run: bench/results/quick/,
 * git-ignored, so the committed full-run results stay as they are; --out DIR elsewhere). Targets are printed PASS/FAIL; the exit
 * code never depends on them.
 */
import { execFile } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { cpus, freemem, loadavg, platform, release, arch, tmpdir, totalmem } from "node:os";
import { join } from "node:path";
import { generateColdStore, type ColdStoreInfo } from "./coldStore.js";
import { DIST_BENCH, libolmVersion, sdkVersion, type Manifest } from "./common.js";
import type { ClientResult, ColdResult, IdleResult, MeasureConfig, RawResult, TunedFlags } from "./measure.js";
import { buildReport, type BenchResults } from "./report.js";
import { renderTable } from "./reportTable.js";
import { renderSvg } from "./reportSvg.js";
import type { SendReport } from "./sendReport.js";
import { generateWorkload } from "./workload.js";
import { parseArgs, resultsDir, type Shape } from "./options.js";
import { poolKey, shardLoad, skewedMessagesPerRoom, type DecryptWorkers } from "./pool.js";

const log = (msg: string): void => {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
};

let measureSeq = 0;
function measure<T>(work: string, cfg: Omit<MeasureConfig, "out"> & Record<string, unknown>): Promise<T | null> {
  const n = ++measureSeq;
  const out = join(work, `result-${n}.json`);
  const cfgPath = join(work, `config-${n}.json`);
  writeFileSync(cfgPath, JSON.stringify({ ...cfg, out }));
  return new Promise((resolve) => {
    const child = execFile(process.execPath, ["--expose-gc", join(DIST_BENCH, "measure.js"), cfgPath], { timeout: 15 * 60_000, maxBuffer: 16 << 20 }, (err) => {
      if (err) {
        log(`measurement ${cfg.mode} failed: ${err.message.split("\n")[0]}`);
        resolve(null);
        return;
      }
      try {
        resolve(JSON.parse(readFileSync(out, "utf8")) as T);
      } catch (e) {
        log(`measurement ${cfg.mode} wrote no result: ${String(e)}`);
        resolve(null);
      }
    });
    child.stderr?.on("data", (d: Buffer) => process.stderr.write(d));
    child.stdout?.on("data", (d: Buffer) => process.stderr.write(d));
  });
}

/** The send benchmark in its own process (send.ts); its report, or null when it failed. */
function runSend(work: string, send: { messages: number; rounds: number }): Promise<SendReport | null> {
  const out = join(work, "send.json");
  return new Promise((resolve) => {
    const child = execFile(process.execPath, [join(DIST_BENCH, "send.js"), "--messages", String(send.messages), "--rounds", String(send.rounds), "--out", out], { timeout: 10 * 60_000, maxBuffer: 16 << 20 }, (err) => {
      if (err) {
        log(`send benchmark failed: ${err.message.split("\n")[0]}`);
        resolve(null);
        return;
      }
      try {
        resolve(JSON.parse(readFileSync(out, "utf8")) as SendReport);
      } catch (e) {
        log(`send benchmark wrote no result: ${String(e)}`);
        resolve(null);
      }
    });
    child.stderr?.on("data", (d: Buffer) => process.stderr.write(d));
    child.stdout?.on("data", (d: Buffer) => process.stderr.write(d));
  });
}

/** Workload key of a many-room shape, e.g. "rooms1000x5x2". */
export const shapeKey = (s: Shape): string => `rooms${s.rooms}x${s.senders}x${s.messages}`;

const clientLog = (what: string, r: ClientResult): void => {
  const pr = r.pairedRaw;
  const paired = pr ? `, raw before/after ${pr.before.toFixed(0)}/${pr.after.toFixed(0)} → ${(r.eps / ((pr.before + pr.after) / 2)).toFixed(2)}×` : "";
  const pool = r.pool && !r.pool.size ? "; no pool" : r.pool ? `; pool ${r.pool.size}: deciphered ${r.pool.deciphered}/${r.pool.deciphered + r.pool.toCryptoWorker}, busy ${r.pool.busy.map((b) => (b === null ? "–" : `${(b * 100).toFixed(0)} %`)).join(" / ")}${r.pool.windowed ? "" : " (since start)"}` : "";
  log(`  ${what}: ${r.eps.toFixed(0)} ev/s${paired}, loop p99 ${r.loop.p99.toFixed(1)} ms max ${r.loop.max.toFixed(1)} ms${r.workerElu !== null ? `, worker busy ${(r.workerElu * 100).toFixed(0)} %` : ""}${pool}`);
};

/** `decryptWorkers` values in run `run`'s order (rotated, so no value always goes first). */
const rotate = <T>(xs: T[], run: number): T[] => xs.map((_, k) => xs[(k + run - 1) % xs.length]!);

/** What-if variants run in the sdk mode (bench/tunedStore.ts). */
export const EXPERIMENTS: { key: string; label: string; flags: TunedFlags }[] = [
  { key: "relaxed", label: "token commit without fsync (synchronous=NORMAL)", flags: { relaxedTokenCommit: true } },
  { key: "noreplay", label: "no replay records written (upper bound)", flags: { skipReplayRows: true } },
];

async function main(): Promise<void> {
  const opts = parseArgs(process.argv.slice(2));
  const started = Date.now();
  const work = mkdtempSync(join(tmpdir(), "mxbench-"));
  const cleanup = (): void => {
    if (!opts.keepTemp) rmSync(work, { recursive: true, force: true });
  };
  process.on("SIGINT", () => {
    cleanup();
    process.exit(130);
  });
  const load0 = loadavg();
  log(`${opts.quick ? "quick" : "full"} run, ${opts.runs} run(s) per measurement, temp dir ${work}`);

  // ---- workloads -----------------------------------------------------------------------------
  const manifests: Record<string, Manifest> = {};
  for (const p of opts.payloads) {
    const key = String(p);
    const m = await generateWorkload(
      { name: `${key}B`, rooms: opts.rooms, senders: opts.senders, messages: opts.messages, payloadBytes: p, batchSize: opts.batch, undecryptableFraction: 0.01, delayedFraction: 0.02, seed: 1000 + p },
      join(work, `w${key}`),
    );
    manifests[key] = m;
    log(`workload ${key} B: ${m.totalEvents} events (${m.undecryptableEvents} undecryptable, ${m.outOfOrderEvents} out of order), ${m.sessions.length} sessions, ${m.batches} syncs, generated in ${m.generationSeconds.toFixed(1)} s`);
  }
  const scaleManifests: Record<string, Manifest> = {};
  for (const [i, sh] of opts.scale.entries()) {
    const key = shapeKey(sh);
    // No undecryptable events here: at 10 events per room, one lost session per room would be 10 %.
    const m = await generateWorkload({ name: key, ...sh, payloadBytes: 200, batchSize: opts.batch, undecryptableFraction: 0, delayedFraction: 0.02, seed: 3000 + i }, join(work, `w${key}`));
    scaleManifests[key] = m;
    log(`workload ${sh.rooms} rooms × ${sh.senders} × ${sh.messages}: ${m.totalEvents} events, ${m.sessions.length} sessions, ${m.outOfOrderEvents} out of order, generated in ${m.generationSeconds.toFixed(1)} s`);
  }
  // The skewed pool workload (issue 18): the 10-room workload's events and senders, one room holding half of them.
  let skewManifest: Manifest | null = null;
  let skewLabel = "";
  // How 2 decrypt workers shard each pool workload's events (the pool's own hash of the room IDs).
  const poolShards: Record<string, { events: number[]; maxShare: number }> = {};
  const uniform = (m: Manifest): Record<string, number> => Object.fromEntries(m.rooms.map((r) => [r, m.totalEvents / m.rooms.length]));
  if (opts.pool && manifests["200"]) poolShards["200"] = shardLoad(uniform(manifests["200"]), 2);
  const firstScaleManifest = Object.entries(scaleManifests)[0];
  if (opts.pool && firstScaleManifest) poolShards[firstScaleManifest[0]] = shardLoad(uniform(firstScaleManifest[1]), 2);
  if (opts.pool) {
    const perRoom = skewedMessagesPerRoom(opts.rooms * opts.senders * opts.messages, opts.senders, opts.pool.skewRooms, opts.pool.hotShare);
    skewManifest = await generateWorkload(
      { name: "skew", rooms: perRoom.length, senders: opts.senders, messages: perRoom[1]!, messagesPerRoom: perRoom, payloadBytes: 200, batchSize: opts.batch, undecryptableFraction: 0.01, delayedFraction: 0.02, seed: 5000 },
      join(work, "wskew"),
    );
    skewLabel = `skewed: ${perRoom.length} rooms × ${opts.senders} senders (1 room × ${perRoom[0]} messages each = half the events, ${opts.pool.skewRooms} × ~${perRoom[1]}), 200 B`;
    poolShards.skew = shardLoad(Object.fromEntries(skewManifest.rooms.map((r, i) => [r, perRoom[i]! * opts.senders])), 2);
    log(`skewed workload: ${skewManifest.totalEvents} events, 1 room × ${opts.senders} × ${perRoom[0]} + ${opts.pool.skewRooms} rooms × ${opts.senders} × ~${perRoom[1]}, ${skewManifest.sessions.length} sessions`);
  }
  // The long pool workload: the 10-room shape with more messages (the JIT's warm-up amortised).
  let longManifest: Manifest | null = null;
  if (opts.pool?.longMessages && opts.payloads.includes(200)) {
    longManifest = await generateWorkload(
      { name: "long", rooms: opts.rooms, senders: opts.senders, messages: opts.pool.longMessages, payloadBytes: 200, batchSize: opts.batch, undecryptableFraction: 0.01, delayedFraction: 0.02, seed: 6000 },
      join(work, "wlong"),
    );
    poolShards.long = shardLoad(uniform(longManifest), 2);
    log(`long pool workload: ${longManifest.totalEvents} events (${opts.rooms} rooms × ${opts.senders} × ${opts.pool.longMessages}), generated in ${longManifest.generationSeconds.toFixed(1)} s`);
  }
  let backupManifest: Manifest | null = null;
  if (opts.backup) {
    const sh = opts.backup;
    backupManifest = await generateWorkload({ name: "backup", ...sh, payloadBytes: 200, batchSize: opts.batch, undecryptableFraction: 0, delayedFraction: 0.02, seed: 4000 }, join(work, "wbackup"));
    log(`backup workload ${sh.rooms} rooms × ${sh.senders} × ${sh.messages}: ${backupManifest.totalEvents} events, ${backupManifest.sessions.length} sessions, generated in ${backupManifest.generationSeconds.toFixed(1)} s`);
  }
  let memManifest: Manifest | null = null;
  if (opts.memory) {
    const mm = opts.memory;
    memManifest = await generateWorkload(
      { name: "memory", rooms: mm.rooms, senders: mm.senders, messages: mm.messages, payloadBytes: 200, batchSize: opts.batch, undecryptableFraction: 0, delayedFraction: 0.02, seed: 7 },
      join(work, "wmem"),
    );
    log(`memory workload: ${memManifest.totalEvents} events across ${mm.rooms * mm.senders} sessions, generated in ${memManifest.generationSeconds.toFixed(1)} s`);
  }
  const sweepManifests: Record<string, Manifest> = {};
  if (opts.sweep) {
    for (const b of opts.sweep.batches) {
      sweepManifests[String(b)] = await generateWorkload(
        { name: `200B-batch${b}`, rooms: opts.rooms, senders: opts.senders, messages: opts.messages, payloadBytes: 200, batchSize: b, undecryptableFraction: 0.01, delayedFraction: 0.02, seed: 1200 },
        join(work, `wb${b}`),
      );
    }
    log(`sweep workloads: ${opts.sweep.batches.join(", ")} events per sync`);
  }
  const cold: Record<string, ColdStoreInfo> = {};
  for (const n of opts.coldSizes) {
    const t0 = performance.now();
    cold[String(n)] = await generateColdStore(join(work, `cold${n}`), n, 99 + n);
    const c = cold[String(n)]!;
    log(`cold store with ${n} inbound sessions: ${(c.fileBytes / 1e6).toFixed(1)} MB, libolm ${c.sessionGenSeconds.toFixed(1)} s + saveChanges ${c.storeWriteSeconds.toFixed(1)} s (${((performance.now() - t0) / 1000).toFixed(1)} s)`);
  }

  // ---- measurements --------------------------------------------------------------------------
  const raw: Record<string, RawResult[]> = {};
  const client: Record<string, ClientResult[]> = {};
  const idle: IdleResult[] = [];
  const coldRuns: Record<string, ColdResult[]> = {};
  const memRuns: Record<string, ClientResult[]> = {};
  const sweep: Record<string, ClientResult[]> = {};
  const backup: { off: (ClientResult | null)[]; on: (ClientResult | null)[] } = { off: [], on: [] };
  const push = <T>(rec: Record<string, T[]>, key: string, v: T | null): void => {
    if (v) (rec[key] ??= []).push(v);
  };
  for (let run = 1; run <= opts.runs; run++) {
    log(`run ${run}/${opts.runs}`);
    const secondary = run <= opts.secondaryRuns;
    const i = await measure<IdleResult>(work, { mode: "idle", seconds: opts.idleSeconds });
    if (i) idle.push(i);
    for (const p of opts.payloads) {
      const key = String(p);
      const dir = manifests[key]!.dir;
      // The raw mode in its own process is secondary now (the headline pairs raw in-process);
      // --quick runs it with the other secondary experiments only.
      const modes = opts.quick && !secondary ? ["sdk", "main"] : ["raw", "sdk", "main"];
      const order = modes.map((_, k) => modes[(k + run - 1) % modes.length]!);
      for (const mode of order) {
        if (mode === "raw") {
          const r = await measure<RawResult>(work, { mode: "raw", manifestDir: dir });
          push(raw, key, r);
          if (r) log(`  ${key} B raw: ${r.decryptEps.toFixed(0)} ev/s (decrypt + JSON.parse ${r.decryptParseEps.toFixed(0)} ev/s)`);
        } else {
          const r = await measure<ClientResult>(work, { mode: mode as "sdk" | "main", manifestDir: dir, pairedRaw: true });
          push(client, `${mode}:${key}`, r);
          if (r) clientLog(`${key} B ${mode}`, r);
        }
      }
      if (opts.experiments && secondary) {
        // --quick keeps the most telling variant only.
        for (const x of opts.quick ? EXPERIMENTS.filter((e) => e.key === "noreplay") : EXPERIMENTS) {
          const r = await measure<ClientResult>(work, { mode: "sdk", manifestDir: dir, tuned: x.flags });
          push(client, `sdk+${x.key}:${key}`, r);
          if (r) log(`  ${key} B sdk what-if [${x.key}]: ${r.eps.toFixed(0)} ev/s`);
        }
      }
    }
    // Pool modes (issue 18), paired with raw like the headline; decryptWorkers order rotated per run.
    const poolRun = (key: string, dir: string, workers: DecryptWorkers[]): Promise<void> =>
      rotate(workers, run).reduce(async (prev, w) => {
        await prev;
        const r = await measure<ClientResult>(work, { mode: "sdk", manifestDir: dir, pairedRaw: true, decryptWorkers: w });
        push(client, poolKey(w, key), r);
        if (r) clientLog(`${key} sdk, decryptWorkers ${String(w)}`, r);
      }, Promise.resolve());
    const pooled = opts.pool && run <= opts.pool.runs ? opts.pool : null;
    if (pooled && opts.payloads.includes(200)) await poolRun("200", manifests["200"]!.dir, pooled.workers);
    if (pooled && longManifest) await poolRun("long", longManifest.dir, [1, 2]);
    for (const [key, m] of Object.entries(scaleManifests)) {
      const r = await measure<ClientResult>(work, { mode: "sdk", manifestDir: m.dir, pairedRaw: true });
      push(client, `sdk:${key}`, r);
      if (r) clientLog(`${key} sdk`, r);
    }
    const firstScale = Object.entries(scaleManifests)[0];
    if (pooled && firstScale) await poolRun(firstScale[0], firstScale[1].dir, pooled.manyRoomsWorkers);
    if (pooled && skewManifest) await poolRun("skew", skewManifest.dir, pooled.skewWorkers);
    if (backupManifest) {
      // Interleaved, order alternating per run; both paired with raw.
      for (const on of run % 2 ? [false, true] : [true, false]) {
        const r = await measure<ClientResult>(work, { mode: "sdk", manifestDir: backupManifest.dir, pairedRaw: true, backup: on });
        (on ? backup.on : backup.off)[run - 1] = r;
        if (r) clientLog(`backup workload sdk, key backup ${on ? "on" : "off"}`, r);
        if (r?.backup) log(`    backup: ${r.backup.uploadedSessions}/${r.backup.expectedSessions} sessions in ${r.backup.puts} PUTs, done ${r.backup.doneAfterLastEventMs.toFixed(0)} ms after the last event`);
      }
    }
    if (opts.sweep && secondary) {
      for (const b of opts.sweep.batches) {
        const r = await measure<ClientResult>(work, { mode: "sdk", manifestDir: sweepManifests[String(b)]!.dir });
        push(sweep, `batch:${b}`, r);
        if (r) log(`  200 B sdk, ${b} events/sync: ${r.eps.toFixed(0)} ev/s`);
      }
      const r = await measure<ClientResult>(work, { mode: "sdk", manifestDir: manifests["200"]!.dir, extraMembersPerRoom: opts.sweep.extraMembers });
      push(sweep, `bigrooms:${opts.sweep.extraMembers}`, r);
      if (r) log(`  200 B sdk, +${opts.sweep.extraMembers} members per room: ${r.eps.toFixed(0)} ev/s`);
    }
    for (const n of secondary ? opts.coldSizes : []) {
      for (const mode of ["cold-sdk", "cold-main"] as const) {
        const r = await measure<ColdResult>(work, { mode, coldDir: join(work, `cold${n}`) });
        push(coldRuns, `${mode}:${n}`, r);
        if (r) log(`  cold start ${n} sessions (${mode.slice(5)}): first event after ${r.firstEventMs.toFixed(0)} ms (login ${r.loginMs.toFixed(0)} ms)`);
      }
    }
    if (memManifest && secondary) {
      for (const mode of ["sdk", "main"] as const) {
        const r = await measure<ClientResult>(work, { mode, manifestDir: memManifest.dir, memory: true });
        push(memRuns, mode, r);
        if (r?.memory) log(`  memory (${mode}): RSS ${r.memory.rssAfterMB.toFixed(0)} MB after ${r.decrypted} events (${r.eps.toFixed(0)} ev/s)`);
      }
    }
  }

  // ---- profile (one extra, instrumented run per payload; not part of the figures above) -----
  const profiles: Record<string, unknown> = {};
  if (opts.profile) {
    // --quick: the 200 B profile only.
    for (const p of opts.quick ? opts.payloads.slice(0, 1) : opts.payloads) {
      for (const mode of ["sdk", "main"] as const) {
        const r = await measure<ClientResult>(work, { mode, manifestDir: manifests[String(p)]!.dir, profile: true });
        if (r) profiles[`${mode}:${p}`] = { eps: r.eps, workerElu: r.workerElu, decrypted: r.decrypted, ...(r.profile ?? {}), fixture: r.fixture };
      }
    }
    // Where 1,000 rooms spend it (full run: the first many-room workload, both modes).
    for (const [key, m] of opts.quick ? [] : Object.entries(scaleManifests).slice(0, 1)) {
      for (const mode of ["sdk", "main"] as const) {
        const r = await measure<ClientResult>(work, { mode, manifestDir: m.dir, profile: true });
        if (r) profiles[`${mode}:${key}`] = { eps: r.eps, workerElu: r.workerElu, decrypted: r.decrypted, ...(r.profile ?? {}), fixture: r.fixture };
      }
    }
    if (opts.pool && manifests["200"]) {
      // Per-event costs with 2 decrypt workers (issue 18's scaling table): the sdk path's spans
      // and utilisations, and the main-thread engine with the same pool for the pooled call's parts.
      for (const mode of ["sdk", "main"] as const) {
        const r = await measure<ClientResult>(work, { mode, manifestDir: manifests["200"].dir, profile: true, decryptWorkers: 2 });
        if (r) profiles[`${mode}:pool2:200`] = { eps: r.eps, workerElu: r.workerElu, mainElu: r.loop.elu, decrypted: r.decrypted, fullSeconds: r.fullSeconds, pool: r.pool, ...(r.profile ?? {}), fixture: r.fixture };
      }
    }
    if (opts.sweep && !opts.quick) {
      // Where big rooms spend it: the same engine, instrumented, with the big-rooms state.
      const r = await measure<ClientResult>(work, { mode: "main", manifestDir: manifests["200"]!.dir, profile: true, extraMembersPerRoom: opts.sweep.extraMembers });
      if (r) profiles[`main:200:bigrooms`] = { eps: r.eps, decrypted: r.decrypted, extraMembersPerRoom: opts.sweep.extraMembers, ...(r.profile ?? {}) };
    }
    log("profile runs done");
  }

  let send: SendReport | null = null;
  if (opts.send) {
    log(`send benchmark (${opts.send.messages} messages per mode, ${opts.send.rounds} rounds)`);
    send = await runSend(work, opts.send);
  }

  const results: BenchResults = {
    date: new Date(started).toISOString(),
    durationSeconds: (Date.now() - started) / 1000,
    machine: {
      os: `${platform()} ${release()} ${arch()}`,
      cpus: cpus().length,
      cpuModel: cpus()[0]?.model ?? "unknown",
      totalMemMB: Math.round(totalmem() / 2 ** 20),
      freeMemMB: Math.round(freemem() / 2 ** 20),
      loadavgStart: load0,
      loadavgEnd: loadavg(),
      node: process.version,
      libolm: libolmVersion(),
      sdk: sdkVersion(),
      note: "2 vCPUs, shared and noisy: expect run-to-run spread; compare modes within one run.",
    },
    options: { ...opts },
    manifests: Object.fromEntries(Object.entries(manifests).map(([k, m]) => [k, strip(m)])),
    scaleManifests: Object.fromEntries(Object.entries(scaleManifests).map(([k, m]) => [k, strip(m)])),
    backupManifest: backupManifest ? strip(backupManifest) : null,
    skewManifest: skewManifest ? { ...strip(skewManifest), label: skewLabel } : null,
    longManifest: longManifest ? { ...strip(longManifest), label: `long: ${opts.rooms} rooms × ${opts.senders} × ${opts.pool?.longMessages}, 200 B (3× the events: less JIT warm-up per event)` } : null,
    poolShards,
    backup,
    send,
    memoryManifest: memManifest ? strip(memManifest) : null,
    coldStores: cold,
    raw,
    client,
    idle,
    cold: coldRuns,
    memory: memRuns,
    profiles,
    experiments: opts.experiments && opts.secondaryRuns > 0 ? (opts.quick ? EXPERIMENTS.filter((e) => e.key === "noreplay") : EXPERIMENTS) : [],
    sweep,
  };
  const report = buildReport(results);
  const outDir = resultsDir(opts);
  mkdirSync(outDir, { recursive: true });
  writeFileSync(join(outDir, "latest.json"), JSON.stringify(report, null, 1) + "\n");
  writeFileSync(join(outDir, "latest.svg"), renderSvg(report));
  process.stdout.write(renderTable(report) + "\n");
  log(`wrote ${join(outDir, "latest.json")} and latest.svg (${((Date.now() - started) / 1000).toFixed(0)} s)`);
  cleanup();
}

function strip(m: Manifest): Record<string, unknown> {
  const { senders, sessions, rooms: _r, dir: _d, ...rest } = m;
  const shared = sessions.filter((s) => !s.lost).length;
  return { ...rest, rooms: m.rooms.length, senders: senders.length, sessions: sessions.length, lostSessions: sessions.length - shared, messagesPerRoomAndSender: m.totalEvents / (m.rooms.length * senders.length) };
}

main().catch((err: unknown) => {
  log(`bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  process.exitCode = 1;
});
