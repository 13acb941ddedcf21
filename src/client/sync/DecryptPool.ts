/**
 * The decrypt pool on the main thread (`encryptionConf.decryptWorkers` ≥ 2): Megolm decrypt
 * workers next to the crypto worker, sharded by room (a room's events always go to the same
 * worker), so one sync's decryption uses several cores. Contract: `src/protocol/pool.ts`.
 *
 * One sync: each worker deciphers the events of its rooms whose sessions it holds, all workers at
 * once (and while the crypto worker still takes the sync's to-device part); then one crypto
 * worker call takes every event, deciphered or not, and decides as without a pool: replay
 * records, events kept for their keys, labels, everything committed with the sync token. Sessions
 * that call deciphered itself go to the workers of their rooms for the next syncs.
 *
 * A decrypt worker that dies rejects its pending call with `CryptoWorkerCrashedError`; its events
 * go to the crypto worker in the same sync (nothing lost, nothing accepted twice: replay is
 * decided there), and the worker is started again, empty, at its next use; one that keeps dying
 * is left alone for a while. Decrypt workers write nothing.
 * @internal
 */
import { Worker } from "node:worker_threads";
import * as Comlink from "comlink/dist/esm/comlink.mjs";
import nodeEndpoint from "comlink/dist/esm/node-adapter.mjs";
import { MEGOLM_ALGORITHM, type EncryptedEventInput, type RoomDecryptResult } from "../../protocol/api.js";
import { CryptoWorkerCrashedError, WorkerProtocolError } from "../../protocol/errors.js";
import { DECRYPT_POOL_PROTOCOL_VERSION, POOL_CELLS, type DecryptWorkerOptions, type PoolCipherRoom, type PoolDeciphered, type PoolSession } from "../../protocol/pool.js";
import type { Logger } from "../../pure/logger.js";
import { inspectCustom, redactedInspect, type InspectFn } from "../../pure/secret.js";
import type { DecryptWorkerFacade } from "../../../workers/decrypt-worker.js";
import type { DecryptPayload } from "./syncResponse.js";

/**
 * The decrypt workers' niceness (Linux; elsewhere they run at the process's priority): when the
 * cores are contended, the main thread and the crypto worker — on every sync's critical path —
 * run first, and the decrypt workers take what is left. On the bench's 2 vCPUs this lowered the
 * main thread's event-loop p99 and max with 2 decrypt workers, throughput unchanged within the
 * noise (bench/README.md).
 * @internal
 */
export const DECRYPT_WORKER_NICENESS = 10;

/** Deaths in a row after which a decrypt worker is left alone for {@link REST_MS}. */
const MAX_DEATHS = 3;
const REST_MS = 30_000;

type RoomResults = { roomId: string; results: RoomDecryptResult[] };
/** Per room of a payload, per event, what the pool deciphered (null: left to the crypto worker); undefined for a room whose worker failed. */
type Deciphered = ((PoolDeciphered | null)[] | undefined)[];
/** The crypto worker's side of a pooled decryption (`decryptSyncTimelinesPooled`). @internal */
export type PooledCryptoCall = (rooms: DecryptPayload) => Promise<{ rooms: RoomResults[]; sessions: PoolSession[] }>;

interface Running {
  worker: Worker;
  remote: Comlink.Remote<DecryptWorkerFacade>;
  pending: Set<(e: Error) => void>;
  dead: boolean;
}

interface Slot {
  running: Running | null;
  starting: Promise<Running> | null;
  deaths: number;
  restingUntil: number;
}

/**
 * A room's events as its decrypt worker takes them ({@link PoolCipherRoom}): the three strings
 * it needs per event, "" for an event that is not Megolm-shaped (left to the crypto worker).
 * @internal
 */
export function cipherRoom(roomId: string, events: EncryptedEventInput[]): PoolCipherRoom {
  const cells: string[] = [];
  for (const ev of events) {
    const c = ev.content;
    if (c && c.algorithm === MEGOLM_ALGORITHM && typeof c.sender_key === "string" && typeof c.session_id === "string" && typeof c.ciphertext === "string") cells.push(c.sender_key, c.session_id, c.ciphertext);
    else cells.push("", "", "");
  }
  return { roomId, cells };
}

/**
 * A decrypt worker's answer for one room of `events` events, as {@link PoolDeciphered} entries
 * (null: left to the crypto worker); null when the answer is not of that shape (every event of
 * the room then goes to the crypto worker).
 * @internal
 */
export function decipheredOf(answer: unknown, events: number): (PoolDeciphered | null)[] | null {
  if (!Array.isArray(answer) || answer.length !== events * POOL_CELLS) return null;
  const out: (PoolDeciphered | null)[] = new Array(events);
  for (let k = 0; k < events; k++) {
    const plaintextJson: unknown = answer[k * POOL_CELLS];
    const messageIndex: unknown = answer[k * POOL_CELLS + 1];
    const type: unknown = answer[k * POOL_CELLS + 2];
    out[k] = typeof plaintextJson === "string" && plaintextJson && typeof messageIndex === "number" && Number.isSafeInteger(messageIndex) && messageIndex >= 0 && typeof type === "string" ? { plaintextJson, messageIndex, type } : null;
  }
  return out;
}

/** Stable shard of a room: FNV-1a of its ID. @internal */
export function shardOf(roomId: string, size: number): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < roomId.length; i++) {
    h ^= roomId.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return (h >>> 0) % size;
}

/** @internal */
export class DecryptPool {
  private readonly slots: Slot[];
  private closed = false;
  /** Syncs being deciphered ahead of their processing ({@link DecryptPool.decipherAhead}). */
  private readonly ahead = new WeakMap<DecryptPayload, { since: number; done: Promise<Deciphered> }>();
  /** Counts {@link DecryptPool.addSessions} calls; each room's last one, by that count. */
  private handOuts = 0;
  private readonly roomHandOut = new Map<string, number>();
  /** Events deciphered by the pool, and those left to the crypto worker, since the start. */
  readonly stats = { deciphered: 0, toCryptoWorker: 0 };
  /** Holds the pickle key: out of reach of `util.inspect` and `JSON.stringify`. */
  readonly #options: DecryptWorkerOptions;

  constructor(
    readonly size: number,
    options: DecryptWorkerOptions,
    private readonly workerUrl: URL,
    private readonly log: Logger,
  ) {
    this.#options = options;
    this.slots = Array.from({ length: size }, () => ({ running: null, starting: null, deaths: 0, restingUntil: 0 }));
  }

  /** Start every worker now (otherwise each starts at its first sync). */
  async start(): Promise<void> {
    await Promise.all(this.slots.map((s) => this.ensure(s).catch(() => undefined)));
  }

  /**
   * Decrypt one sync's encrypted timeline events: the pool deciphers what it can, `crypto`
   * decides everything. Results as `decryptSyncTimelines` gives them, plaintexts filled in.
   * `keysHandedOut` settles once this sync's room keys were given to the workers
   * ({@link DecryptPool.addSessions}); the events they left in rooms that got sessions since the
   * deciphering started are then deciphered again ({@link DecryptPool.catchUp}).
   */
  async decryptSync(payload: DecryptPayload, crypto: PooledCryptoCall, keysHandedOut?: Promise<unknown>): Promise<RoomResults[]> {
    const ahead = this.ahead.get(payload);
    this.ahead.delete(payload);
    const since = ahead?.since ?? this.handOuts;
    const first = await (ahead?.done ?? this.decipher(payload));
    // This sync's own room keys: once they are with the workers, their events are deciphered too.
    await keysHandedOut?.catch(() => undefined);
    const deciphered = await this.catchUp(payload, since, first);
    const withPre: DecryptPayload = payload.map((r, i) => {
      const d = deciphered[i];
      if (!d) {
        this.stats.toCryptoWorker += r.events.length;
        return r;
      }
      return {
        roomId: r.roomId,
        events: r.events.map((ev, k): EncryptedEventInput => {
          const got = d[k];
          if (!got) {
            this.stats.toCryptoWorker++;
            return ev;
          }
          this.stats.deciphered++;
          // The crypto worker needs no ciphertext for it: the clone stays small.
          return { ...ev, content: ev.content && { ...ev.content, ciphertext: "" }, pre: { messageIndex: got.messageIndex, type: got.type } };
        }),
      };
    });
    const { rooms, sessions } = await crypto(withPre);
    this.addSessions(sessions);
    rooms.forEach((room, i) => {
      const d = payload[i]?.roomId === room.roomId ? deciphered[i] : undefined;
      room.results.forEach((r, k) => {
        if (!r.ok || r.plaintextJson !== "") return;
        const p = d?.[k];
        // The crypto worker accepted an event the pool deciphered: its plaintext is the pool's.
        if (p && p.messageIndex === r.messageIndex) r.plaintextJson = p.plaintextJson;
        else room.results[k] = { ok: false, eventId: r.eventId, code: "malformed", message: "the deciphered plaintext went missing", sessionId: r.sessionId };
      });
    });
    return rooms;
  }

  /**
   * Start deciphering a sync that is not processed yet (the prefetched next one), so that the
   * workers run while the crypto worker and this thread finish the current one; its
   * {@link DecryptPool.decryptSync} then takes the result, after deciphering again the events
   * left over in rooms whose workers got sessions since ({@link DecryptPool.catchUp}).
   */
  decipherAhead(payload: DecryptPayload): void {
    if (!this.ahead.has(payload)) this.ahead.set(payload, { since: this.handOuts, done: this.decipher(payload) });
  }

  /**
   * A sync's deciphering, completed: the events it left to the crypto worker in rooms whose
   * workers were handed sessions since it started (this sync's own room keys, typically) are
   * deciphered again, so a key arriving in a sync serves that sync's events in the pool too.
   */
  private async catchUp(payload: DecryptPayload, since: number, deciphered: Deciphered): Promise<Deciphered> {
    const again: { i: number; events: number[] }[] = [];
    payload.forEach((r, i) => {
      const d = deciphered[i];
      if (!d || (this.roomHandOut.get(r.roomId) ?? 0) <= since) return;
      const events = d.flatMap((x, k) => (x ? [] : [k]));
      if (events.length) again.push({ i, events });
    });
    if (!again.length) return deciphered;
    const more = await this.decipher(again.map(({ i, events }) => ({ roomId: payload[i]!.roomId, events: events.map((k) => payload[i]!.events[k]!) })));
    again.forEach(({ i, events }, j) => {
      const got = more[j];
      if (got) events.forEach((k, n) => (deciphered[i]![k] = got[n] ?? null));
    });
    return deciphered;
  }

  /** Each room's events deciphered by its worker (undefined for a room whose worker failed). Never rejects. */
  private async decipher(payload: DecryptPayload): Promise<Deciphered> {
    const byShard = new Map<number, number[]>();
    payload.forEach((r, i) => {
      const s = shardOf(r.roomId, this.size);
      const list = byShard.get(s) ?? [];
      byShard.set(s, list);
      list.push(i);
    });
    const deciphered: Deciphered = new Array(payload.length);
    await Promise.all(
      [...byShard].map(async ([s, rooms]) => {
        const got = await this.call(s, "decipher", [rooms.map((i) => cipherRoom(payload[i]!.roomId, payload[i]!.events))]).catch((err: unknown) => {
          this.log.warn(`decrypt worker ${s}: ${String(err)}; its rooms are decrypted by the crypto worker`);
          return null;
        });
        if (Array.isArray(got)) rooms.forEach((i, k) => (deciphered[i] = decipheredOf(got[k], payload[i]!.events.length) ?? undefined));
      }),
    );
    return deciphered;
  }

  /** Give each session to the worker of its room (in order before that worker's next call). */
  addSessions(sessions: PoolSession[]): void {
    if (!sessions.length) return;
    const byShard = new Map<number, PoolSession[]>();
    this.handOuts++;
    for (const s of sessions) {
      this.roomHandOut.set(s.roomId, this.handOuts);
      const k = shardOf(s.roomId, this.size);
      const list = byShard.get(k) ?? [];
      byShard.set(k, list);
      list.push(s);
    }
    for (const [k, list] of byShard) void this.call(k, "addSessions", [list]).catch(() => undefined);
  }

  private async ensure(slot: Slot): Promise<Running> {
    if (slot.running) return slot.running;
    if (this.closed) throw new CryptoWorkerCrashedError("the decrypt pool is closed");
    if (Date.now() < slot.restingUntil) throw new CryptoWorkerCrashedError("decrypt worker resting after repeated crashes");
    slot.starting ??= this.spawn(slot).finally(() => (slot.starting = null));
    return slot.starting;
  }

  private async spawn(slot: Slot): Promise<Running> {
    const worker = new Worker(this.workerUrl, { workerData: this.#options });
    await new Promise<void>((resolve, reject) => {
      const onMessage = (m: unknown): void => {
        const msg = m as { __sdk?: string; protocolVersion?: number } | null;
        if (msg?.__sdk === "ready") {
          cleanup();
          if (msg.protocolVersion === DECRYPT_POOL_PROTOCOL_VERSION) resolve();
          else {
            void worker.terminate();
            reject(new WorkerProtocolError(`decrypt worker speaks protocol ${String(msg.protocolVersion)}, expected ${DECRYPT_POOL_PROTOCOL_VERSION}`));
          }
        } else if (msg?.__sdk === "init-error") {
          cleanup();
          void worker.terminate();
          reject(new CryptoWorkerCrashedError("decrypt worker failed to start"));
        }
      };
      const onExit = (code: number): void => {
        cleanup();
        reject(new CryptoWorkerCrashedError(`decrypt worker exited during start-up (code ${code})`));
      };
      const cleanup = (): void => {
        worker.off("message", onMessage);
        worker.off("exit", onExit);
        worker.off("error", onExit);
      };
      worker.on("message", onMessage);
      worker.on("exit", onExit);
      worker.on("error", onExit);
    }).catch((err: unknown) => {
      this.died(slot);
      throw err;
    });
    const running: Running = { worker, remote: Comlink.wrap<DecryptWorkerFacade>(nodeEndpoint(worker as unknown as Parameters<typeof nodeEndpoint>[0])), pending: new Set(), dead: false };
    const onDeath = (why: string): void => {
      if (running.dead) return;
      running.dead = true;
      if (slot.running === running) slot.running = null;
      const err = new CryptoWorkerCrashedError(`decrypt worker ${why}`);
      for (const reject of running.pending) reject(err);
      running.pending.clear();
      if (this.closed) return;
      this.log.error(`decrypt worker ${why}; it starts again at its next use`);
      this.died(slot);
    };
    worker.on("error", (err) => onDeath(`crashed: ${err.message}`));
    worker.on("exit", (code) => onDeath(`exited with code ${code}`));
    slot.running = running;
    return running;
  }

  private died(slot: Slot): void {
    if (++slot.deaths >= MAX_DEATHS) {
      slot.deaths = 0;
      slot.restingUntil = Date.now() + REST_MS;
    }
  }

  private async call(shard: number, method: keyof DecryptWorkerFacade, args: unknown[]): Promise<unknown> {
    const slot = this.slots[shard]!;
    const running = await this.ensure(slot);
    return new Promise((resolve, reject) => {
      running.pending.add(reject);
      const fn = running.remote[method] as unknown as (...a: unknown[]) => Promise<unknown>;
      fn(...args).then(
        (v) => {
          running.pending.delete(reject);
          if (method === "decipher") slot.deaths = 0;
          resolve(v);
        },
        (err: unknown) => {
          running.pending.delete(reject);
          reject(err instanceof Error ? err : new CryptoWorkerCrashedError(String(err)));
        },
      );
    });
  }

  /** Each worker's event-loop utilisation since it started (null: not running). */
  utilisation(): (number | null)[] {
    return this.slots.map((s) => (s.running ? s.running.worker.performance.eventLoopUtilization().utilization : null));
  }

  /** Kill one worker abruptly (tests of crash handling). */
  async terminateForTesting(shard: number): Promise<void> {
    await this.slots[shard]?.running?.worker.terminate();
  }

  /** Stop every worker. */
  async close(): Promise<void> {
    this.closed = true;
    await Promise.all(
      this.slots.map(async (s) => {
        const r = s.running ?? (s.starting ? await s.starting.catch(() => null) : null);
        s.running = null;
        if (!r) return;
        r.dead = true;
        for (const reject of r.pending) reject(new CryptoWorkerCrashedError("the decrypt pool is closed"));
        r.pending.clear();
        r.remote[Comlink.releaseProxy]();
        await r.worker.terminate();
      }),
    );
  }

  /** What `JSON.stringify` shows: the size and running workers, never the options (they hold the pickle key). */
  toJSON(): { size: number; running: number } {
    return { size: this.size, running: this.slots.filter((s) => s.running).length };
  }

  /** What `util.inspect` shows: {@link DecryptPool.toJSON}. */
  [inspectCustom](_depth: number, options: object, inspect: InspectFn): string {
    return redactedInspect("DecryptPool", this.toJSON(), options, inspect);
  }
}
