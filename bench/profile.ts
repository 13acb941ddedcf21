/**
 * The bench's profile runs (one instrumented run per workload; never the measured runs): the
 * client's `/sync` fetches and worker calls timed on the main thread; in the main-thread mode
 * also every libolm call and store method inside the engine, attributed to the engine call
 * running; with a decrypt pool, its sync spans, each decrypt worker's calls, and the main thread's
 * preparing and emitting (pool.ts, issue 18).
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import Olm from "@matrix-org/olm";
import type { MatrixClient } from "../src/client/MatrixClient.js";
import { POOL_CELLS } from "../src/protocol/pool.js";
import type { CryptoStore } from "../src/protocol/store.js";
import type { Json } from "./common.js";
import type { InProcessHost } from "./inProcessHost.js";

/** Profiling hooks (one profiling run only; never in the measured runs). */
export interface Profile {
  syncFetchMs: number[];
  processMs: number[];
  /** Wall time of each worker call as the main thread sees it (includes queueing behind other calls). */
  calls: Record<string, { n: number; ms: number }>;
  /** Per sync: span of the decryptSyncTimelines call (dispatch → answer). */
  decryptSpanMs: number[];
  /** Main mode: execution time of each engine call, and of the JSON.parse of its arguments. */
  exec?: Record<string, { n: number; ms: number; firstMs?: number }>;
  parse?: Record<string, { n: number; ms: number }>;
  /** Main mode: libolm and store time, keyed "<engine call>:<what>". */
  engine?: Record<string, { n: number; ms: number }>;
  /** Main-thread work of sync processing ({@link installPoolProfile}): taking a response apart, emitting timeline events. */
  mainThread?: Record<"prepare" | "emit", { n: number; ms: number }>;
  /** With a decrypt pool: each sync's `decryptSync` span, and each decrypt worker's `decipher` calls (span as the main thread sees it, events sent). */
  pool?: { sync: { n: number; ms: number; events: number }; decipher: Record<string, { n: number; ms: number; events: number }> };
}

/**
 * Times the main thread's own sync work (`SyncProcessor.prepare`, `TimelineEmitter.emitTimelineEvent`)
 * and, with a decrypt pool, its per-sync spans and each worker's `decipher` calls, by wrapping
 * the client's private objects (bench only). Install after login (the pool starts there).
 */
export function installPoolProfile(client: MatrixClient, prof: Profile): void {
  const timed = (obj: Record<string, unknown> | undefined, name: string, acc: { n: number; ms: number }): void => {
    const orig = obj?.[name];
    if (!obj || typeof orig !== "function") return;
    obj[name] = function (this: unknown, ...args: unknown[]) {
      const t0 = performance.now();
      try {
        return (orig as (...a: unknown[]) => unknown).apply(obj, args);
      } finally {
        acc.n++;
        acc.ms += performance.now() - t0;
      }
    };
  };
  const sp = (client as unknown as { syncProcessor?: Record<string, unknown> & { deps?: { timeline?: Record<string, unknown> } } }).syncProcessor;
  prof.mainThread = { prepare: { n: 0, ms: 0 }, emit: { n: 0, ms: 0 } };
  timed(sp, "prepare", prof.mainThread.prepare);
  timed(sp?.deps?.timeline, "emitTimelineEvent", prof.mainThread.emit);
  const pool = client.decryptPoolForTesting as unknown as (Record<string, unknown> & { size: number }) | null;
  if (!pool) return;
  const acc: NonNullable<Profile["pool"]> = { sync: { n: 0, ms: 0, events: 0 }, decipher: {} };
  prof.pool = acc;
  // A decrypt worker's rooms carry POOL_CELLS strings per event (src/protocol/pool.ts).
  const cellEvents = (rooms: unknown): number => (Array.isArray(rooms) ? rooms.reduce((a: number, r: { cells?: unknown[] }) => a + Math.floor((r.cells?.length ?? 0) / POOL_CELLS), 0) : 0);
  const count = (rooms: unknown): number => (Array.isArray(rooms) ? rooms.reduce((a: number, r: { events?: unknown[] }) => a + (r.events?.length ?? 0), 0) : 0);
  const origSync = pool.decryptSync as (...a: unknown[]) => Promise<unknown>;
  pool.decryptSync = async (...a: unknown[]) => {
    const t0 = performance.now();
    try {
      return await origSync.apply(pool, a);
    } finally {
      acc.sync.n++;
      acc.sync.ms += performance.now() - t0;
      acc.sync.events += count(a[0]);
    }
  };
  const origCall = pool.call as (shard: number, method: string, args: unknown[]) => Promise<unknown>;
  if (typeof origCall !== "function") return;
  pool.call = async (shard: number, method: string, args: unknown[]) => {
    if (method !== "decipher") return origCall.call(pool, shard, method, args);
    const t0 = performance.now();
    try {
      return await origCall.call(pool, shard, method, args);
    } finally {
      const e = (acc.decipher[String(shard)] ??= { n: 0, ms: 0, events: 0 });
      e.n++;
      e.ms += performance.now() - t0;
      e.events += cellEvents(args[0]);
    }
  };
}

export function installClientProfile(client: MatrixClient, mode: "sdk" | "main"): Profile {
  const prof: Profile = { syncFetchMs: [], processMs: [], calls: {}, decryptSpanMs: [] };
  const c = client as unknown as { http: { request: (...a: unknown[]) => Promise<unknown> }; host: { call: (m: string, a: unknown[]) => Promise<unknown> } };
  const http = c.http;
  const origRequest = http.request.bind(http);
  let syncDoneAt = 0;
  http.request = async (...a: unknown[]) => {
    const isSync = typeof a[1] === "string" && (a[1] as string).startsWith("/_matrix/client/v3/sync");
    const t0 = performance.now();
    const r = await origRequest(...a);
    if (isSync) {
      prof.syncFetchMs.push(performance.now() - t0);
      syncDoneAt = performance.now();
    }
    return r;
  };
  client.on("sync", () => {
    if (syncDoneAt) prof.processMs.push(performance.now() - syncDoneAt);
  });
  const host = c.host;
  const origCall = host.call.bind(host);
  let spanStart = -1;
  let inflight = 0;
  host.call = async (m: string, a: unknown[]) => {
    const t0 = performance.now();
    if (m === "decryptSyncTimelines") {
      if (inflight === 0) spanStart = t0;
      inflight++;
    }
    try {
      return await origCall(m, a);
    } finally {
      const t1 = performance.now();
      const e = (prof.calls[m] ??= { n: 0, ms: 0 });
      e.n++;
      e.ms += t1 - t0;
      if (m === "decryptSyncTimelines" && --inflight === 0) prof.decryptSpanMs.push(t1 - spanStart);
    }
  };
  if (mode === "main") {
    const ip = host as unknown as InProcessHost;
    ip.profile = { exec: {}, parse: {} };
    prof.exec = ip.profile.exec;
    prof.parse = ip.profile.parse;
    installEngineProfile(prof, ip);
  }
  return prof;
}

/** The CryptoStore interface's data methods (src/protocol/store.ts). */
const STORE_METHODS = [
  "listAccounts", "getStoredDeviceId", "useAccount", "deleteAccount", "getOlmSessions", "getInboundGroupSession",
  "countInboundGroupSessions", "listInboundGroupSessions", "getOutboundGroupSession", "getUserDevices", "getDevice",
  "getDeviceByCurve25519", "getTrackedUsers", "getRoom", "getRoomMembers", "getReplayRecord", "getPendingEvents",
  "countPendingEvents", "hasToDeviceDigest", "getSyncToken", "getValue", "saveChanges",
];

/**
 * Main mode only: time libolm calls and each store method inside the engine (the same engine code
 * the worker runs), attributed to the engine call running, to split a decryptSyncTimelines call into
 * libolm / store reads / commit / the rest.
 */
function installEngineProfile(prof: Profile, host: InProcessHost): void {
  const acc: Record<string, { n: number; ms: number }> = {};
  prof.engine = acc;
  const add = (k: string, ms: number): void => {
    const e = (acc[`${host.current ?? "-"}:${k}`] ??= { n: 0, ms: 0 });
    e.n++;
    e.ms += ms;
  };
  const wrap = (obj: Record<string, unknown>, name: string, label: string, self?: unknown): void => {
    const orig = obj[name];
    if (typeof orig !== "function") return;
    obj[name] = function (this: unknown, ...args: unknown[]) {
      const t0 = performance.now();
      try {
        return (orig as (...a: unknown[]) => unknown).apply(self ?? this, args);
      } finally {
        add(label, performance.now() - t0);
      }
    };
  };
  wrap(Olm.InboundGroupSession.prototype as unknown as Record<string, unknown>, "decrypt", "olm.megolmDecrypt");
  wrap(Olm.InboundGroupSession.prototype as unknown as Record<string, unknown>, "unpickle", "olm.inboundUnpickle");
  wrap(Olm.InboundGroupSession.prototype as unknown as Record<string, unknown>, "create", "olm.inboundCreate");
  wrap(Olm.InboundGroupSession.prototype as unknown as Record<string, unknown>, "pickle", "olm.inboundPickle");
  wrap(Olm.Session.prototype as unknown as Record<string, unknown>, "decrypt", "olm.olmDecrypt");
  wrap(Olm.Session.prototype as unknown as Record<string, unknown>, "unpickle", "olm.olmUnpickle");
  wrap(Olm.Session.prototype as unknown as Record<string, unknown>, "pickle", "olm.olmPickle");
  const store = (host as unknown as { store: CryptoStore }).store as unknown as Record<string, unknown>;
  for (const name of STORE_METHODS) wrap(store, name, `store.${name}`, store);
  // The engine's live-session cache is not visible from here; its hit rate shows as the ratio of
  // olm.inboundUnpickle to olm.megolmDecrypt.
}

export function profileSummary(prof: Profile, decrypted: number, windowMs: number, manifestDir: string): Json {
  const sum = (a: number[]): number => a.reduce((x, y) => x + y, 0);
  const table = (t: Record<string, { n: number; ms: number; firstMs?: number }>): Json => {
    const o: Json = {};
    for (const [k, v] of Object.entries(t)) o[k] = { n: v.n, totalMs: v.ms, usPerDecryptedEvent: (v.ms * 1000) / decrypted, ...(v.firstMs !== undefined ? { firstMs: v.firstMs } : {}) };
    return o;
  };
  // Offline: what JSON.parse of the sync bodies costs the main thread (the HTTP layer does it).
  const lines = readFileSync(join(manifestDir, "batches.jsonl"), "utf8").split("\n").filter((l) => l.length);
  let parseMs = 0;
  for (const l of lines) {
    const t0 = performance.now();
    JSON.parse(l);
    parseMs += performance.now() - t0;
  }
  const out: Json = {
    windowMs,
    syncs: prof.syncFetchMs.length,
    syncFetchTotalMs: sum(prof.syncFetchMs),
    processSyncTotalMs: sum(prof.processMs),
    decryptSpanTotalMs: sum(prof.decryptSpanMs),
    syncBodyJsonParseTotalMs: parseMs,
    calls: table(prof.calls),
  };
  if (prof.exec) out.exec = table(prof.exec);
  if (prof.parse) out.parse = table(prof.parse);
  if (prof.engine) out.engine = table(prof.engine);
  if (prof.mainThread) out.mainThread = table(prof.mainThread);
  if (prof.pool) out.poolSpans = prof.pool as unknown as Json;
  return out;
}

