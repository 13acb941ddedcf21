/**
 * One measurement, in a fresh process (so modes do not share JIT state, heaps or RSS):
 *   node dist/bench/measure.js <config.json>
 * Writes its result as JSON to `config.out`. Spawned by run.ts.
 *
 * Modes:
 * - raw:   libolm `InboundGroupSession.decrypt` alone on this thread, sessions pre-created.
 * - sdk:   a real MatrixClient (real worker, real SQLite store in a temp dir) syncing from the
 *          fixture server; throughput = decrypted `room.event` emissions per second in steady
 *          state (after the first sync, which carries the room state and the room keys).
 * - main:  the same client with the engine + SQLite store on the main thread (InProcessHost).
 * - idle:  the event-loop monitor alone (the floor of the delay figures).
 * - cold-sdk / cold-main: time from `new MatrixClient` to the first decrypted event with a
 *          pre-populated store.
 */
import { fork, type ChildProcess } from "node:child_process";
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import type { Worker } from "node:worker_threads";
import { MatrixClient } from "../src/client/MatrixClient.js";
import type { RoomEvent, UndecryptableEvent } from "../src/client/events.js";
import { BENCH_PICKLE_KEY, DIST_BENCH, RECEIVER_DEVICE, RECEIVER_PASSWORD, RECEIVER_USER, sleep, type Json, type Manifest } from "./common.js";
import type { FixtureConfig, FixtureMessage } from "./fixtureServer.js";
import { InProcessHost } from "./inProcessHost.js";
import { LoopMonitor, type LoopStats } from "./loopMonitor.js";
import type { TunedStoreOptions } from "./tunedStore.js";
import { loadRawWork, rawPass, type RawWork } from "./rawLoop.js";
import { PoolWindow, type DecryptWorkers, type PoolFigures } from "./pool.js";
import { installClientProfile, installPoolProfile, profileSummary, type Profile } from "./profile.js";
import { readProcess, threadCosts, type ProcessReading, type ThreadCosts } from "./threadCpu.js";

/** What-if store flags (bench/tunedStore.ts). */
export type TunedFlags = Omit<TunedStoreOptions, "path">;

export type MeasureConfig =
  | { mode: "raw"; manifestDir: string; out: string }
  | { mode: "idle"; seconds: number; out: string }
  | {
      mode: "sdk" | "main";
      manifestDir: string;
      out: string;
      profile?: boolean;
      memory?: boolean;
      tuned?: TunedFlags;
      extraMembersPerRoom?: number;
      /** Time raw libolm over the same events in this process right before and right after the client run. */
      pairedRaw?: boolean;
      /** `enableKeyBackup()` after login, before the first sync; after the last event, wait for the upload to finish. */
      backup?: boolean;
      /** `encryptionConf.decryptWorkers` (issue 18); absent: the option is not passed (today's default). */
      decryptWorkers?: DecryptWorkers;
    }
  | { mode: "cold-sdk" | "cold-main"; coldDir: string; out: string };

export interface RawResult {
  mode: "raw";
  events: number;
  /** decrypt only */
  decryptSeconds: number;
  decryptEps: number;
  /** decrypt + JSON.parse of the plaintext */
  decryptParseSeconds: number;
  decryptParseEps: number;
  loop: LoopStats;
}

export interface MemoryFigures {
  rssBeforeMB: number;
  rssAfterMB: number;
  rssAfterGcMB: number;
  maxRssMB: number;
  heapUsedMB: number;
  externalMB: number;
  arrayBuffersMB: number;
}

export interface ClientResult {
  mode: "sdk" | "main";
  decrypted: number;
  undecryptable: number;
  failureCodes: Record<string, number>;
  /** Steady state: from the end of the first sync (room state + Olm-encrypted room keys + first batch) to the last event. */
  seconds: number;
  eps: number;
  /** Whole window: from client.start() (first /sync request) to the last event, all events. */
  fullSeconds: number;
  fullEps: number;
  /** ms from client.start() to the first decrypted event. */
  firstEventMs: number;
  syncs: number;
  loop: LoopStats;
  /** Crypto worker's event-loop utilisation over the window (sdk mode). */
  workerElu: number | null;
  prepareToDeviceMs: number;
  memory?: MemoryFigures;
  profile?: Json;
  fixture?: Json;
  /** Raw libolm decrypts/s over the same events in this process, right before and right after the client run (`pairedRaw`). */
  pairedRaw?: { before: number; after: number };
  /** Key backup mode: when the upload was done, and what the fixture received. */
  backup?: BackupFigures;
  /** `decryptWorkers` given: the pool's figures over the window (pool.ts). */
  pool?: PoolFigures;
  /** Process RSS at the last event, and its peak so far (MB; main thread + every worker). */
  rssMB?: number;
  maxRssMB?: number;
  /** Steady state: each thread group's CPU and wait for a core per event (threadCpu.ts; Linux). */
  threads?: ThreadCosts;
}

/** The key backup mode's figures. */
export interface BackupFigures {
  /** ms `enableKeyBackup()` took (version created on the fixture). */
  enableMs: number;
  /** ms from the last event to `flushKeyBackup()` resolving with every session uploaded (NaN: never). */
  doneAfterLastEventMs: number;
  /** Distinct sessions the fixture received, and how many the workload shares. */
  uploadedSessions: number;
  expectedSessions: number;
  puts: number;
}

export interface IdleResult {
  mode: "idle";
  loop: LoopStats;
}

export interface ColdResult {
  mode: "cold-sdk" | "cold-main";
  sessions: number;
  /** new MatrixClient → first decrypted room.event */
  firstEventMs: number;
  /** new MatrixClient → login() resolved (worker up, store open, account loaded) */
  loginMs: number;
  /** start() → first /sync answered (main thread received and parsed it) */
  firstSyncMs: number | null;
}

const MB = (b: number): number => b / (1024 * 1024);

async function startFixture(cfg: FixtureConfig): Promise<{ child: ChildProcess; port: number; call: (cmd: string, want: FixtureMessage["type"]) => Promise<FixtureMessage> }> {
  const child = fork(join(DIST_BENCH, "fixtureServer.js"), [JSON.stringify(cfg)], { stdio: ["ignore", "inherit", "inherit", "ipc"] });
  const waiters: { want: FixtureMessage["type"]; resolve: (m: FixtureMessage) => void; reject: (e: Error) => void }[] = [];
  child.on("message", (m: FixtureMessage) => {
    if (m.type === "error") {
      for (const w of waiters.splice(0)) w.reject(new Error(`fixture server: ${m.message}`));
      return;
    }
    const i = waiters.findIndex((w) => w.want === m.type);
    if (i >= 0) waiters.splice(i, 1)[0]!.resolve(m);
  });
  child.on("exit", (code) => {
    for (const w of waiters.splice(0)) w.reject(new Error(`fixture server exited (${code})`));
  });
  const wait = (want: FixtureMessage["type"]): Promise<FixtureMessage> => new Promise((resolve, reject) => waiters.push({ want, resolve, reject }));
  const ready = (await wait("ready")) as Extract<FixtureMessage, { type: "ready" }>;
  const call = (cmd: string, want: FixtureMessage["type"]): Promise<FixtureMessage> => {
    const p = wait(want);
    child.send({ cmd });
    return p;
  };
  return { child, port: ready.port, call };
}

function stopFixture(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null) return resolve();
    child.once("exit", () => resolve());
    child.send({ cmd: "exit" });
    setTimeout(() => child.kill(), 2000).unref();
  });
}

function readManifest(dir: string): Manifest {
  return JSON.parse(readFileSync(join(dir, "manifest.json"), "utf8")) as Manifest;
}

// -------------------------------------------------------------------------------------------------
// raw

async function runRaw(cfg: Extract<MeasureConfig, { mode: "raw" }>): Promise<RawResult> {
  const work = loadRawWork(cfg.manifestDir);
  const mon = new LoopMonitor();
  mon.start();
  const plain = await rawPass(work);
  const parsed = await rawPass(work, { parse: true, warmup: 0 });
  const loop = mon.stop();
  return { mode: "raw", events: plain.events, decryptSeconds: plain.seconds, decryptEps: plain.eps, decryptParseSeconds: parsed.seconds, decryptParseEps: parsed.eps, loop };
}

// -------------------------------------------------------------------------------------------------
// idle

async function runIdle(cfg: Extract<MeasureConfig, { mode: "idle" }>): Promise<IdleResult> {
  const mon = new LoopMonitor();
  mon.start();
  await sleep(cfg.seconds * 1000);
  return { mode: "idle", loop: mon.stop() };
}

// -------------------------------------------------------------------------------------------------
// client modes

function newClient(port: number, dbDir: string, mode: "sdk" | "main", extra: { restoreDeviceId?: boolean; tuned?: TunedFlags | undefined; decryptWorkers?: DecryptWorkers | undefined } = {}): MatrixClient {
  const path = join(dbDir, "crypto.db");
  const tunedStore = extra.tuned ? { module: join(DIST_BENCH, "tunedStore.js"), export: "TunedSqliteStore", options: { path, ...extra.tuned } } : null;
  const client = new MatrixClient(`http://127.0.0.1:${port}`, {
    encryption: true,
    ...(extra.restoreDeviceId ? { restoreDeviceId: true } : {}),
    encryptionConf: { storeConf: { dbPath: dbDir, dbName: "crypto.db", pickleKey: BENCH_PICKLE_KEY }, ...(tunedStore ? { store: tunedStore } : {}), ...(extra.decryptWorkers !== undefined ? { decryptWorkers: extra.decryptWorkers } : {}) },
    syncTimeoutMs: 2000,
  });
  if (mode === "main") {
    const c = client as unknown as { host: unknown };
    if (!("host" in c)) throw new Error("MatrixClient has no private `host` field any more: update bench/inProcessHost.ts");
    c.host = new InProcessHost({
      store: tunedStore ? { kind: "module", ...tunedStore } : { kind: "sqlite", path },
      pickleKey: BENCH_PICKLE_KEY,
      logLevel: "silent",
    });
  }
  return client;
}

function cryptoWorker(client: MatrixClient): Worker | null {
  const host = (client as unknown as { host: { gen?: { worker?: Worker } } | null }).host;
  return host?.gen?.worker ?? null;
}

async function runClient(cfg: Extract<MeasureConfig, { mode: "sdk" | "main" }>): Promise<ClientResult> {
  const manifest = readManifest(cfg.manifestDir);
  const rawWork: RawWork | null = cfg.pairedRaw ? loadRawWork(cfg.manifestDir) : null;
  const dbDir = mkdtempSync(join(tmpdir(), "mxbench-store-"));
  const fx = await startFixture({ manifestDir: cfg.manifestDir, initialSince: null, includeState: true, userId: RECEIVER_USER, ...(cfg.extraMembersPerRoom ? { extraMembersPerRoom: cfg.extraMembersPerRoom } : {}) });
  const rssBefore = process.memoryUsage().rss;
  const client = newClient(fx.port, dbDir, cfg.mode, { tuned: cfg.tuned, decryptWorkers: cfg.decryptWorkers });
  let prof: Profile | null = null;
  let result: ClientResult;
  try {
    await client.login(RECEIVER_USER, RECEIVER_PASSWORD, { deviceId: RECEIVER_DEVICE });
    if (cfg.profile) {
      prof = installClientProfile(client, cfg.mode);
      installPoolProfile(client, prof);
    }
    let enableMs = NaN;
    if (cfg.backup) {
      const tb = performance.now();
      await client.enableKeyBackup();
      enableMs = performance.now() - tb;
    }
    const prepared = (await fx.call("prepare", "prepared")) as Extract<FixtureMessage, { type: "prepared" }>;
    // Raw libolm right before the client run, in this process (the client is logged in and idle).
    let rawBefore = NaN;
    if (rawWork) {
      rawBefore = (await rawPass(rawWork)).eps;
      (globalThis as unknown as { gc?: () => void }).gc?.();
    }

    let decrypted = 0;
    let undecryptable = 0;
    let firstAt = 0;
    let syncs = 0;
    const failureCodes: Record<string, number> = {};
    const total = manifest.totalEvents;
    let doneResolve: (t: number) => void = () => undefined;
    const done = new Promise<number>((r) => (doneResolve = r));
    const check = (): void => {
      if (decrypted + undecryptable >= total) doneResolve(performance.now());
    };
    client.on("room.event", (ev: RoomEvent) => {
      if (!ev.encryption) return;
      if (decrypted++ === 0) firstAt = performance.now();
      check();
    });
    client.on("room.undecryptable", (ev: UndecryptableEvent) => {
      undecryptable++;
      failureCodes[ev.code] = (failureCodes[ev.code] ?? 0) + 1;
      check();
    });
    let steadyT0 = 0;
    let steadyD0 = 0;
    let threads0: ProcessReading = new Map();
    let fixture0: ProcessReading = new Map();
    client.on("sync", () => {
      if (syncs++ === 0) {
        threads0 = readProcess(process.pid);
        fixture0 = fx.child.pid ? readProcess(fx.child.pid) : new Map();
        steadyT0 = performance.now();
        steadyD0 = decrypted;
      }
    });
    client.on("error", (err) => console.error(`[bench ${cfg.mode}] client error: ${err.message}`));

    const worker = cryptoWorker(client);
    const wElu0 = worker?.performance.eventLoopUtilization();
    const poolWindow = cfg.decryptWorkers !== undefined ? new PoolWindow(client, cfg.decryptWorkers) : null;
    poolWindow?.start();
    const mon = new LoopMonitor();
    mon.start();
    const t0 = performance.now();
    client.start();
    const timeout = setTimeout(() => doneResolve(NaN), 600_000);
    const t1 = await done;
    const threads1 = readProcess(process.pid);
    const fixture1 = fx.child.pid ? readProcess(fx.child.pid) : new Map<number, never>();
    clearTimeout(timeout);
    const loop = mon.stop();
    const workerElu = worker && wElu0 ? worker.performance.eventLoopUtilization(wElu0).utilization : null;
    const pool = poolWindow?.stop();
    const rssMB = MB(process.memoryUsage().rss);
    if (!Number.isFinite(t1)) throw new Error(`timed out: ${decrypted} decrypted + ${undecryptable} undecryptable of ${total}`);

    result = {
      mode: cfg.mode,
      decrypted,
      undecryptable,
      failureCodes,
      seconds: (t1 - steadyT0) / 1000,
      eps: (decrypted - steadyD0) / ((t1 - steadyT0) / 1000),
      fullSeconds: (t1 - t0) / 1000,
      fullEps: decrypted / ((t1 - t0) / 1000),
      firstEventMs: firstAt - t0,
      syncs,
      loop,
      workerElu,
      prepareToDeviceMs: prepared.ms,
      rssMB,
      maxRssMB: process.resourceUsage().maxRSS / 1024,
      ...(pool ? { pool } : {}),
    };
    const threads = threadCosts(process.pid, threads0, threads1, fixture0, fixture1, decrypted - steadyD0, (t1 - steadyT0) * 1e6);
    if (threads) result.threads = threads;
    if (cfg.backup) result.backup = await waitForBackup(client, fx.call, manifest, t1, enableMs);
    if (rawWork) result.pairedRaw = { before: rawBefore, after: NaN };
    if (cfg.memory) {
      await sleep(300);
      const m = process.memoryUsage();
      (globalThis as unknown as { gc?: () => void }).gc?.();
      await sleep(100);
      const g = process.memoryUsage();
      result.memory = {
        rssBeforeMB: MB(rssBefore),
        rssAfterMB: MB(m.rss),
        rssAfterGcMB: MB(g.rss),
        maxRssMB: process.resourceUsage().maxRSS / 1024,
        heapUsedMB: MB(g.heapUsed),
        externalMB: MB(g.external),
        arrayBuffersMB: MB(g.arrayBuffers),
      };
    }
    if (prof) {
      const stats = (await fx.call("stats", "stats")) as Extract<FixtureMessage, { type: "stats" }>;
      result.fixture = { requests: stats.requests, syncBytes: stats.syncBytes, syncServed: stats.syncServed };
      result.profile = profileSummary(prof, decrypted, result.fullSeconds * 1000, cfg.manifestDir);
    }
  } finally {
    await client.close().catch(() => undefined);
    await stopFixture(fx.child);
    rmSync(dbDir, { recursive: true, force: true });
  }
  // Raw libolm right after (the client closed, its worker gone), same process.
  if (rawWork && result.pairedRaw) result.pairedRaw.after = (await rawPass(rawWork)).eps;
  return result;
}

/**
 * Backup mode, after the last event: `flushKeyBackup()` until the fixture holds every session the
 * workload shares (or 120 s passed), and how long after the last event (`lastEventAt`) that was.
 */
async function waitForBackup(client: MatrixClient, call: (cmd: string, want: FixtureMessage["type"]) => Promise<FixtureMessage>, manifest: Manifest, lastEventAt: number, enableMs: number): Promise<BackupFigures> {
  const expected = manifest.sessions.filter((s) => !s.lost).length;
  const deadline = performance.now() + 120_000;
  for (;;) {
    await client.flushKeyBackup();
    const st = ((await call("stats", "stats")) as Extract<FixtureMessage, { type: "stats" }>).backup;
    const now = performance.now();
    if (st.sessions >= expected || now > deadline) {
      return { enableMs, doneAfterLastEventMs: st.sessions >= expected ? now - lastEventAt : NaN, uploadedSessions: st.sessions, expectedSessions: expected, puts: st.puts };
    }
    await sleep(20);
  }
}

// -------------------------------------------------------------------------------------------------
// cold start

async function runCold(cfg: Extract<MeasureConfig, { mode: "cold-sdk" | "cold-main" }>): Promise<ColdResult> {
  const info = JSON.parse(readFileSync(join(cfg.coldDir, "cold.json"), "utf8")) as { sessions: number; syncToken: string };
  const dbDir = mkdtempSync(join(tmpdir(), "mxbench-cold-"));
  copyFileSync(join(cfg.coldDir, "crypto.db"), join(dbDir, "crypto.db"));
  const fx = await startFixture({ manifestDir: cfg.coldDir, initialSince: info.syncToken, includeState: false, userId: RECEIVER_USER, otkCountOverride: 50 });
  const mode = cfg.mode === "cold-sdk" ? "sdk" : "main";
  let client: MatrixClient | null = null;
  try {
    const t0 = performance.now();
    client = newClient(fx.port, dbDir, mode, { restoreDeviceId: true });
    const first = new Promise<number>((resolve) => {
      client!.on("room.event", (ev) => {
        if (ev.encryption) resolve(performance.now());
      });
    });
    let firstSyncAt: number | null = null;
    const c = client as unknown as { http: { request: (...a: unknown[]) => Promise<unknown> } };
    const orig = c.http.request.bind(c.http);
    c.http.request = async (...a: unknown[]) => {
      const r = await orig(...a);
      if (firstSyncAt === null && typeof a[1] === "string" && (a[1] as string).startsWith("/_matrix/client/v3/sync")) firstSyncAt = performance.now();
      return r;
    };
    await client.login(RECEIVER_USER, RECEIVER_PASSWORD);
    const tLogin = performance.now();
    client.start();
    const timeout = sleep(120_000).then(() => NaN);
    const t1 = await Promise.race([first, timeout]);
    if (!Number.isFinite(t1)) throw new Error("cold start: no decrypted event within 120 s");
    return { mode: cfg.mode, sessions: info.sessions, firstEventMs: t1 - t0, loginMs: tLogin - t0, firstSyncMs: firstSyncAt !== null ? firstSyncAt - tLogin : null };
  } finally {
    await client?.close().catch(() => undefined);
    await stopFixture(fx.child);
    rmSync(dbDir, { recursive: true, force: true });
  }
}

// -------------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const cfgPath = process.argv[2];
  if (!cfgPath) throw new Error("usage: measure.js <config.json>");
  const cfg = JSON.parse(readFileSync(cfgPath, "utf8")) as MeasureConfig;
  let result: unknown;
  switch (cfg.mode) {
    case "raw":
      result = await runRaw(cfg);
      break;
    case "idle":
      result = await runIdle(cfg);
      break;
    case "sdk":
    case "main":
      result = await runClient(cfg);
      break;
    case "cold-sdk":
    case "cold-main":
      result = await runCold(cfg);
      break;
  }
  writeFileSync(cfg.out, JSON.stringify(result));
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(`[bench] measurement failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    process.exit(1);
  },
);
