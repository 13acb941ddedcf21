/**
 * Processes one `/sync` response: room state → the worker's crypto changes (to-device, device
 * lists, one-time keys) → events emitted in order (timeline gaps fetched first, one decryption call
 * for the whole sync) → key sharing → the sync token committed last.
 *
 * The token is committed only after every event of the sync was emitted, so a crash re-processes a
 * sync rather than losing its events. The commit names the worker's batch of that sync (replay
 * records, events kept for their keys); a worker restarted in between no longer has it and
 * refuses, and the same response is processed again (its events are not emitted twice). It holds
 * the sync token the loop resumes from.
 * @internal
 */
import type { RoomDecryptResult, SyncChangesResult } from "../../protocol/api.js";
import { SyncBatchUnknownError } from "../../protocol/errors.js";
import { p, type HttpClient } from "../../http/HttpClient.js";
import type { Logger } from "../../pure/logger.js";
import type { CryptoAccess } from "../CryptoAccess.js";
import type { ClientEventSink } from "../events.js";
import { isObj, type Json } from "../json.js";
import type { KeySharingManager } from "../keys/KeySharingManager.js";
import type { RoomRegistry } from "../rooms/RoomRegistry.js";
import type { OutgoingRequestsLoop } from "../send/OutgoingRequestsLoop.js";
import type { ClientStateStore } from "../state/ClientStateStore.js";
import type { TimelineEmitter } from "../timeline.js";
import type { QuietTime } from "../../util/QuietTime.js";
import type { DecryptPool } from "./DecryptPool.js";
import { cryptoInputJson, decryptPayload, prepareSync, syncEvents, type DecryptPayload, type SyncWork } from "./syncResponse.js";

/** Most events fetched to fill one room's timeline gap; beyond, `room.timelineGap` is emitted. */
const MAX_GAP_EVENTS = 1000;
/** Longest stretch of event emission in one task (ms), and most events in one. */
const EMIT_SLICE_MS = 2;
const EMIT_SLICE_EVENTS = 200;

/** Counts the events of one emission slice; {@link EmitSlice.next} yields to the event loop when the slice is full. */
class EmitSlice {
  private start = performance.now();
  private count = 0;

  /** After one event: resolves at once, or after a turn of the event loop when the slice is over. */
  next(): Promise<void> | void {
    if (++this.count < EMIT_SLICE_EVENTS && performance.now() - this.start < EMIT_SLICE_MS) return;
    return new Promise<void>((resolve) =>
      setImmediate(() => {
        this.start = performance.now();
        this.count = 0;
        resolve();
      }),
    );
  }
}

/** Times one response is processed when the worker keeps losing its batch (restarting). */
const MAX_SYNC_ATTEMPTS = 3;

/**
 * What earlier attempts at processing one response already did, so that processing it again
 * (the worker restarted and lost the sync's batch) does not emit anything twice.
 */
interface Attempts {
  /** Timeline events emitted: `roomId \0 eventId \0 ok|utd` (a later success is still emitted). */
  emitted: Set<string>;
  /** The first attempt's crypto changes, whose events (to-device, room keys, encryption) were emitted. */
  crypto: SyncChangesResult | null;
  /** Key sharing handled {@link Attempts.crypto}. */
  keySharingDone: boolean;
  /** Invites were emitted, `onIngested` was called. */
  ingested: boolean;
  /** The timelines with their gaps filled (fetched once). */
  timelines: { roomId: string; events: Json[] }[] | null;
}

/** What sync processing needs. @internal */
export interface SyncProcessorDeps {
  http: HttpClient;
  crypto: CryptoAccess;
  events: ClientEventSink;
  log: Logger;
  rooms: RoomRegistry;
  timeline: TimelineEmitter;
  keySharing: KeySharingManager;
  outgoing: OutgoingRequestsLoop;
  /** The count of answered `/keys/upload` requests (see `OutgoingRequestSender.keyUploadsAnswered`). */
  keyUploadsAnswered: () => number;
  /** The logged-in user's ID (syncing runs after login only). */
  userId: () => string | null;
  /** The client's state store (sync token, joined rooms), once logged in. */
  state: () => ClientStateStore | null;
  /** Marked busy while a sync is processed (background work waits for quiet moments). */
  activity?: QuietTime;
  /** The decrypt pool, when there is one (`decryptWorkers` ≥ 2). */
  pool?: () => DecryptPool | null;
}

/** One sync at a time, in order. @internal */
export class SyncProcessor {
  /** The token of the last processed sync (null: none yet, the next sync is a full-state one). */
  private token: string | null = null;

  constructor(private readonly deps: SyncProcessorDeps) {}

  /** The token to sync from: the last one processed, or the one the worker committed. */
  get syncToken(): string | null {
    return this.token;
  }

  /** Resume from the token the worker committed last (at login, before the first sync). */
  resumeFrom(token: string | null): void {
    this.token = token;
  }

  /** {@link prepareSync} for this client's crypto state; throws on a malformed response. */
  prepare(res: unknown): SyncWork {
    return prepareSync(res, this.deps.crypto.ready, this.deps.log);
  }

  /** {@link SyncProcessor.prepare}, or undefined when the response is malformed ({@link SyncProcessor.process} reports it). */
  tryPrepare(res: unknown): SyncWork | undefined {
    try {
      const work = this.prepare(res);
      // With a decrypt pool, its workers start on this sync while the current one finishes.
      if (work.decrypt) this.deps.pool?.()?.decipherAhead(work.decrypt);
      return work;
    } catch {
      return undefined;
    }
  }

  /**
   * Process one `/sync` response: crypto first, then timelines in order, then commit the token.
   * `onIngested(nextBatch)` is called once the worker took the sync's crypto changes (the next
   * sync may be fetched from then on); `prepared` is the response already taken apart, if it was.
   *
   * Call order: one sync at a time, in the order the server gave them (`SyncLoop` does).
   */
  async process(res: unknown, onIngested?: (nextBatch: string) => void, prepared?: SyncWork, uploadsBefore?: number): Promise<void> {
    const work = prepared !== undefined && prepared.res === res ? prepared : this.prepare(res);
    const done: Attempts = { emitted: new Set(), crypto: null, keySharingDone: false, ingested: false, timelines: null };
    this.deps.activity?.begin();
    try {
      for (let attempt = 1; ; attempt++) {
        try {
          await this.processOnce(work, done, onIngested, uploadsBefore);
          return;
        } catch (err) {
          // The worker restarted after this sync's crypto state was staged: nothing of the sync was
          // committed with its token, so the same response is processed again.
          if (!(err instanceof SyncBatchUnknownError) || attempt >= MAX_SYNC_ATTEMPTS) throw err;
          this.deps.log.warn(`the crypto worker lost the state of sync ${work.nextBatch} (it restarted); processing the sync again`);
        }
      }
    } finally {
      this.deps.activity?.end();
    }
  }

  /** One attempt at {@link SyncProcessor.process}; `done` carries what earlier attempts emitted. */
  private async processOnce(work: SyncWork, done: Attempts, onIngested?: (nextBatch: string) => void, uploadsBefore?: number): Promise<void> {
    const { crypto, events, rooms, timeline } = this.deps;
    const { nextBatch, invite, cryptoRooms } = work;

    // Main-thread room view.
    rooms.applySyncState(cryptoRooms, this.token === null);
    let cryptoResult: SyncChangesResult | null = null;
    // When the events to decrypt are already known (no timeline gap to fetch), the decryption is
    // queued right behind the sync's crypto changes, so the worker goes from one to the other
    // without waiting for this thread. Its side effects are committed only with the sync token.
    let early: Promise<{ roomId: string; results: RoomDecryptResult[] }[]> | null = null;
    if (crypto.ready) {
      // A /keys/upload answered since this sync was requested: its key counts may predate the upload.
      const keyCountsStale = uploadsBefore !== undefined && this.deps.keyUploadsAnswered() !== uploadsBefore;
      const pool = this.deps.pool?.() ?? null;
      const opts = { ...(keyCountsStale ? { keyCountsStale } : {}), ...(pool ? { exportSessions: true } : {}) };
      const changes = crypto.api.receiveSyncChanges(work.cryptoInputJson ?? cryptoInputJson(work, this.deps.log), Object.keys(opts).length ? opts : undefined);
      // The room keys of this sync, to the decrypt pool's workers as soon as the crypto worker took
      // them: this sync's events of those keys are deciphered by the pool once they are there.
      const handedOut = pool
        ? changes.then((r) => {
            if (r.poolSessions?.length) pool.addSessions(r.poolSessions);
          })
        : undefined;
      handedOut?.catch(() => undefined); // the same failure is `changes`', awaited below
      if (work.decrypt !== null) {
        early = this.decryptTimelines(work.decrypt, handedOut);
        early.catch(() => undefined); // awaited below; if the crypto changes fail, nobody does
      }
      cryptoResult = await changes;
      await handedOut;
      // Processed again: the to-device part was committed the first time (and is skipped now).
      if (!done.crypto) {
        done.crypto = cryptoResult;
        for (const f of cryptoResult.toDeviceFailures) events.emit("toDevice.failure", f);
        for (const t of cryptoResult.toDevice) {
          events.emit("toDevice", { type: t.type, sender: t.sender, content: JSON.parse(t.contentJson) as Json, encrypted: t.encrypted, senderCurve25519: t.senderCurve25519 });
        }
        for (const k of cryptoResult.roomKeys) events.emit("room.key", k);
        for (const e of cryptoResult.encryptedRooms) events.emit("room.encrypted", e.roomId, e.encryption);
      }
    } else {
      for (const t of syncEvents(work.res, "to_device")) {
        if (isObj(t) && typeof t.type === "string" && typeof t.sender === "string" && isObj(t.content)) {
          events.emit("toDevice", { type: t.type, sender: t.sender, content: t.content, encrypted: false, senderCurve25519: null });
        }
      }
    }

    if (!done.ingested) {
      done.ingested = true;
      onIngested?.(nextBatch);
      for (const [roomId, r] of Object.entries(invite)) {
        const inv = syncEvents(r, "invite_state").find((e) => isObj(e) && e.type === "m.room.member" && e.state_key === this.deps.userId());
        events.emit("room.invite", roomId, isObj(inv) && typeof inv.sender === "string" ? inv.sender : null);
      }
    }

    // Timelines, in order per room; gaps of limited timelines fetched first (once per response).
    let emitted = 0;
    const timelines = done.timelines ?? [];
    if (!done.timelines) {
      for (const t of work.timelines) {
        // A limited timeline skipped events since our last sync: fetch the gap so nothing is lost.
        const gap = t.gapFrom !== null && this.token ? await this.fetchGap(t.roomId, t.gapFrom, this.token, t.events) : [];
        timelines.push({ roomId: t.roomId, events: gap.length ? [...gap, ...t.events] : t.events });
      }
      done.timelines = timelines;
    }
    // One worker call for the whole sync's encrypted timeline events (O(1) hops per sync).
    const decrypted = new Map<string, RoomDecryptResult>();
    if (crypto.ready) {
      const payload = early ? null : decryptPayload(timelines);
      const out = early ?? (payload !== null ? this.decryptTimelines(payload) : null);
      if (out) for (const o of await out) for (const r of o.results) decrypted.set(`${o.roomId}\u0000${r.eventId}`, r);
    }
    // Emitted once per response, unless an earlier attempt could not decrypt what this one did.
    const once = (key: string): boolean => {
      if (done.emitted.has(key)) return false;
      done.emitted.add(key);
      return true;
    };
    // Emitted in slices: the application's timers and I/O run between them, so a big sync does
    // not hold the event loop for the whole of its events (order is kept: nothing else emits).
    const slice = new EmitSlice();
    for (let ti = 0; ti < timelines.length; ti++) {
      const t = timelines[ti]!;
      for (let i = 0; i < t.events.length; i++) {
        const ev = t.events[i]!;
        const r = ev.type === "m.room.encrypted" && typeof ev.event_id === "string" ? decrypted.get(`${t.roomId}\u0000${ev.event_id}`) : undefined;
        if (once(`t${ti}:${i}:${r?.ok === true || ev.type !== "m.room.encrypted" ? "event" : "utd"}`)) timeline.emitTimelineEvent(t.roomId, ev, r, false);
        emitted++;
        const full = slice.next();
        if (full) await full;
      }
    }
    for (const batch of cryptoResult?.redecrypted ?? []) {
      for (const r of batch.results) {
        if (r.ok && once(`late:${batch.roomId}\u0000${r.eventId}`)) timeline.emitDecrypted(batch.roomId, { event_id: r.eventId }, r, true);
      }
    }
    if (done.crypto && !done.keySharingDone) {
      await this.deps.keySharing.onSyncResult(done.crypto);
      done.keySharingDone = true;
    }

    // Room state and token first (one transaction), then the crypto store's token: this store is
    // never behind the token the client resumes from. With a crypto worker, the state store's write
    // does not wait for the disk here: the worker syncs its file before committing the token, so
    // this thread never blocks on the disk while processing a sync.
    const state = this.deps.state();
    let syncFirst: string[] = [];
    if (state) {
      const { joined, left, saved } = rooms.persisted(work.cryptoRooms);
      state.saveSync(nextBatch, joined, left, { deferSync: cryptoResult !== null });
      if (cryptoResult) syncFirst = state.durabilityFiles();
      saved();
    }
    if (cryptoResult) await crypto.api.commitSyncToken(nextBatch, cryptoResult.batchId, syncFirst);
    this.token = nextBatch;
    events.emit("sync", { nextBatch, events: emitted });
    void this.deps.outgoing.trigger();
  }

  /** One sync's encrypted timeline events through the crypto worker, with the decrypt pool's help when there is one. */
  private decryptTimelines(payload: DecryptPayload, keysHandedOut?: Promise<unknown>): Promise<{ roomId: string; results: RoomDecryptResult[] }[]> {
    const { crypto } = this.deps;
    const pool = this.deps.pool?.();
    return pool ? pool.decryptSync(payload, (rooms) => crypto.api.decryptSyncTimelinesPooled(rooms), keysHandedOut) : crypto.api.decryptSyncTimelines(payload);
  }

  /** Events between `from` (a limited timeline's prev_batch) and our last sync token, oldest first. */
  private async fetchGap(roomId: string, from: string, to: string, known: Json[]): Promise<Json[]> {
    const seen = new Set(known.map((e) => e.event_id));
    const out: Json[] = [];
    let token: string | undefined = from;
    try {
      while (token && out.length < MAX_GAP_EVENTS) {
        const res: Json = await this.deps.http.request<Json>("GET", p`/_matrix/client/v3/rooms/${roomId}/messages`, { query: { dir: "b", from: token, to, limit: 100 } });
        const chunk = (Array.isArray(res.chunk) ? res.chunk : []).filter(isObj);
        if (!chunk.length) return out.reverse();
        for (const e of chunk) if (!seen.has(e.event_id)) out.push(e);
        token = typeof res.end === "string" && res.end !== token ? res.end : undefined;
      }
    } catch (err) {
      this.deps.log.warn(`could not fetch the timeline gap of ${roomId}: ${String(err)}`);
      this.deps.events.emit("room.timelineGap", roomId, from);
      return out.reverse();
    }
    if (token) this.deps.events.emit("room.timelineGap", roomId, token);
    return out.reverse();
  }
}
