/**
 * The decrypt pool's bench modes (issue 18): the sdk path with `encryptionConf.decryptWorkers`
 * 1, 2 and "auto", the skewed workload's shape (one room holding half the events), each decrypt
 * worker's busy share over the measured window, and how the pool shards a workload's rooms.
 * The arithmetic is pure and unit-tested (test/bench/pool.test.ts); {@link PoolWindow} reads the
 * running client.
 */
import type { EventLoopUtilization } from "node:perf_hooks";
import type { Worker } from "node:worker_threads";
import type { MatrixClient } from "../src/client/MatrixClient.js";
import { shardOf } from "../src/client/sync/DecryptPool.js";

/** `encryptionConf.decryptWorkers` as the bench passes it. */
export type DecryptWorkers = number | "auto";

/** The pool modes run on every pool workload, and the results key of one: "pool:2:200". */
export const poolKey = (workers: DecryptWorkers, workload: string): string => `pool:${String(workers)}:${workload}`;

/**
 * Messages per sender in each room of a skewed workload: room 0 holds `hotShare` of
 * `totalEvents`, the rest is spread as evenly as whole messages allow over `otherRooms` rooms
 * (the first rooms get one message per sender more when it does not divide). Every room gets at
 * least one message per sender; throws when that is impossible or the arguments are not sensible.
 */
export function skewedMessagesPerRoom(totalEvents: number, senders: number, otherRooms: number, hotShare = 0.5): number[] {
  if (!(senders >= 1 && otherRooms >= 1 && hotShare > 0 && hotShare < 1) || !Number.isInteger(senders) || !Number.isInteger(otherRooms)) {
    throw new Error(`a skewed workload needs senders ≥ 1, other rooms ≥ 1 and 0 < hot share < 1 (got ${senders}, ${otherRooms}, ${hotShare})`);
  }
  const hot = Math.max(1, Math.round((totalEvents * hotShare) / senders));
  const restPerSender = Math.round(totalEvents / senders) - hot;
  if (restPerSender < otherRooms) throw new Error(`${totalEvents} events from ${senders} senders leave fewer than one message per sender for each of ${otherRooms} other rooms`);
  const base = Math.floor(restPerSender / otherRooms);
  const extra = restPerSender - base * otherRooms;
  return [hot, ...Array.from({ length: otherRooms }, (_, i) => base + (i < extra ? 1 : 0))];
}

/**
 * Event-loop utilisation between two cumulative readings of one thread (what
 * `eventLoopUtilization(end, start)` gives): active time over elapsed time. NaN when no time
 * passed or the readings go backwards (another thread's, or a restarted worker's).
 */
export function eluWindow(start: Pick<EventLoopUtilization, "idle" | "active">, end: Pick<EventLoopUtilization, "idle" | "active">): number {
  const active = end.active - start.active;
  const idle = end.idle - start.idle;
  if (!(active >= 0 && idle >= 0) || active + idle <= 0) return NaN;
  return active / (active + idle);
}

/**
 * Events per shard when the pool shards `eventsPerRoom` over `size` workers (the pool's own
 * {@link shardOf}): the largest share bounds what the pool can overlap, since one room's events
 * always go to the same worker.
 */
export function shardLoad(eventsPerRoom: Record<string, number>, size: number): { events: number[]; maxShare: number } {
  const events = new Array<number>(Math.max(1, size)).fill(0);
  for (const [roomId, n] of Object.entries(eventsPerRoom)) events[shardOf(roomId, Math.max(1, size))]! += n;
  const total = events.reduce((a, b) => a + b, 0);
  return { events, maxShare: total > 0 ? Math.max(...events) / total : NaN };
}

/** The pool's figures of one client run (sdk mode with `decryptWorkers`). */
export interface PoolFigures {
  /** What was asked for. */
  requested: DecryptWorkers;
  /** Decrypt workers the client started (0: none, the crypto worker decrypts alone — `decryptWorkers` 1, or "auto" on 2 cores). */
  size: number;
  /** Events the pool deciphered, and those left to the crypto worker (`pool.stats`, whole run). */
  deciphered: number;
  toCryptoWorker: number;
  /** Each decrypt worker's busy share: over the measured window when `windowed`, else since its start. */
  busy: (number | null)[];
  /** True when every worker was read at the window's start and end (the same Worker both times). */
  windowed: boolean;
  /** Each decrypt worker's busy share since it started (`pool.utilisation()`), for comparison. */
  busySinceStart: (number | null)[];
}

interface PoolInternals {
  size: number;
  stats: { deciphered: number; toCryptoWorker: number };
  utilisation(): (number | null)[];
  slots?: { running: { worker: Worker } | null }[];
}

/**
 * Reads the decrypt pool's workers at the start and end of the measured window. The Worker
 * objects are private to the pool (`slots[i].running.worker`); when that shape is gone the
 * figures fall back to `pool.utilisation()` since each worker's start (`windowed: false`).
 */
export class PoolWindow {
  private pool: PoolInternals | null;
  private start0: { worker: Worker; elu: EventLoopUtilization }[] | null = null;

  constructor(client: MatrixClient, private readonly requested: DecryptWorkers) {
    this.pool = (client.decryptPoolForTesting as unknown as PoolInternals | null) ?? null;
  }

  private workers(): (Worker | null)[] | null {
    const slots = this.pool?.slots;
    return Array.isArray(slots) ? slots.map((s) => s.running?.worker ?? null) : null;
  }

  /** The window starts (call right before `client.start()`). */
  start(): void {
    const w = this.workers();
    this.start0 = w && w.every((x) => x) ? w.map((worker) => ({ worker: worker!, elu: worker!.performance.eventLoopUtilization() })) : null;
  }

  /** The window ends (call at the last event). */
  stop(): PoolFigures {
    const p = this.pool;
    if (!p) return { requested: this.requested, size: 0, deciphered: 0, toCryptoWorker: 0, busy: [], windowed: false, busySinceStart: [] };
    const since = p.utilisation();
    const now = this.workers();
    const s0 = this.start0;
    const windowed = !!(s0 && now && now.length === s0.length && now.every((w, i) => w === s0[i]!.worker));
    const busy = windowed ? s0!.map(({ worker, elu }) => eluWindow(elu, worker.performance.eventLoopUtilization())) : since;
    return { requested: this.requested, size: p.size, deciphered: p.stats.deciphered, toCryptoWorker: p.stats.toCryptoWorker, busy: busy.map((x) => (x === null || Number.isNaN(x) ? null : x)), windowed, busySinceStart: since };
  }
}
