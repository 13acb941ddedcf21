/**
 * Inbound Megolm sessions: storing a received, forwarded or imported room key with its
 * provenance (bound here, at receipt), and handing out live (unpickled, cached) sessions.
 * @internal
 */
import type { InboundGroupSessionRecord, InboundSessionSource, SenderData } from "../../../src/protocol/store.js";
import type { PoolSession } from "../../../src/protocol/pool.js";
import { InternalError } from "../../../src/protocol/errors.js";
import type { EngineContext } from "../EngineContext.js";
import type { Transaction } from "../Transaction.js";
import { GroupSessionCache, type LiveInboundSession } from "./GroupSessionCache.js";

/** A room key to store, as received. @internal */
export interface NewInboundSession {
  roomId: string;
  senderKey: string;
  sessionId: string;
  /** `session_key` (from `m.room_key`) or an exported key (forwarded, imported: `exported`). */
  sessionKey: string;
  exported: boolean;
  claimedEd25519: string;
  forwardingChain: string[];
  /** How the key reached us: decides every label of events decrypted with it. */
  senderData: SenderData;
  /** Already in this backup version (restored from it): not uploaded again. */
  backedUpVersion?: string;
}

/** The legacy `source` column that goes with a provenance (kept for older readers of the store). */
function sourceOf(senderData: SenderData): InboundSessionSource {
  switch (senderData.kind) {
    case "own":
      return "own";
    case "olm":
      return "room_key";
    case "forwarded":
      return "forwarded";
    case "imported":
    case "backup":
      return "imported";
  }
}

/** A session's record without its libolm object (the decrypt pool holds that), with the replay memory. @internal */
export type InboundRecordEntry = Omit<LiveInboundSession, "session"> & { session?: LiveInboundSession["session"] };

/** Records kept for events the decrypt pool deciphered (no libolm object: a few hundred bytes each). */
const RECORD_CACHE_SIZE = 20_000;

/** @internal */
export class InboundSessions {
  private readonly cache: GroupSessionCache;
  /** LRU of records of sessions not in {@link InboundSessions.cache}, for pool-deciphered events. */
  private readonly records = new Map<string, InboundRecordEntry>();

  constructor(
    private readonly ctx: EngineContext,
    cacheSize: number,
  ) {
    this.cache = new GroupSessionCache(cacheSize);
  }

  /** Free every live session. */
  release(): void {
    this.cache.clear();
    this.records.clear();
  }

  /**
   * Store an inbound Megolm session unless we already have it from an earlier (or the same)
   * index. Returns whether it was stored; a malformed key is logged (reason-coded) and refused.
   */
  add(tx: Transaction, s: NewInboundSession): boolean {
    const { ctx } = this;
    const session = new ctx.olm.InboundGroupSession();
    let keep = false;
    try {
      try {
        if (s.exported) session.import_session(s.sessionKey);
        else session.create(s.sessionKey);
      } catch (e) {
        ctx.log.warn(`rejected room key ${s.sessionId} (reason: malformed): ${String(e)}`);
        return false;
      }
      if (session.session_id() !== s.sessionId) {
        ctx.log.warn(`rejected room key: session ID mismatch (reason: malformed)`);
        return false;
      }
      const existing = tx.getInbound(s.roomId, s.senderKey, s.sessionId);
      const firstKnownIndex = session.first_known_index();
      if (existing && existing.firstKnownIndex <= firstKnownIndex) {
        ctx.log.debug(`already have room key ${s.sessionId} from index ${existing.firstKnownIndex}`);
        return false;
      }
      const record: InboundGroupSessionRecord = {
        roomId: s.roomId,
        senderKey: s.senderKey,
        sessionId: s.sessionId,
        pickle: session.pickle(ctx.pickleKey),
        claimedEd25519: s.claimedEd25519,
        forwardingChain: s.forwardingChain,
        firstKnownIndex,
        source: sourceOf(s.senderData),
        senderData: s.senderData,
        createdTs: ctx.now(),
        ...(s.backedUpVersion !== undefined ? { backedUpVersion: s.backedUpVersion } : {}),
      };
      tx.putInbound(record);
      this.records.delete(GroupSessionCache.key(s.roomId, s.senderKey, s.sessionId));
      // A session new to the store has no replay records yet: track them all in memory.
      this.cache.set(GroupSessionCache.key(s.roomId, s.senderKey, s.sessionId), { session, record, seen: new Map(), complete: !existing });
      keep = true;
      return true;
    } finally {
      if (!keep) session.free();
    }
  }

  /** The live session for (room, sender key, session ID), unpickled on first use, or null when unknown. */
  live(tx: Transaction, roomId: string, senderKey: string, sessionId: string): LiveInboundSession | null {
    const key = GroupSessionCache.key(roomId, senderKey, sessionId);
    const hit = this.cache.get(key);
    if (hit) return hit;
    const record = tx.getInbound(roomId, senderKey, sessionId);
    if (!record) return null;
    const session = new this.ctx.olm.InboundGroupSession();
    try {
      session.unpickle(this.ctx.pickleKey, record.pickle);
    } catch (e) {
      session.free();
      throw new InternalError(`could not unpickle inbound session ${sessionId}: ${String(e)}`);
    }
    const v = { session, record };
    this.cache.set(key, v);
    return v;
  }

  /**
   * The live session when cached, else the session's record (no unpickling), or null when
   * unknown: what an event deciphered by the decrypt pool needs (provenance, replay memory).
   */
  cachedOrRecord(tx: Transaction, roomId: string, senderKey: string, sessionId: string): InboundRecordEntry | null {
    const key = GroupSessionCache.key(roomId, senderKey, sessionId);
    const hit = this.cache.get(key);
    if (hit) return hit;
    const known = this.records.get(key);
    if (known) {
      this.records.delete(key);
      this.records.set(key, known);
      return known;
    }
    const record = tx.getInbound(roomId, senderKey, sessionId);
    if (!record) return null;
    const entry: InboundRecordEntry = { record };
    this.records.set(key, entry);
    if (this.records.size > RECORD_CACHE_SIZE) this.records.delete(this.records.keys().next().value as string);
    return entry;
  }

  /** The stored sessions among `keys`, pickled, for the decrypt pool (`protocol/pool.ts`). */
  pickled(tx: Transaction, keys: { roomId: string; senderKey: string; sessionId: string }[]): PoolSession[] {
    const out: PoolSession[] = [];
    for (const k of keys) {
      const rec = this.cachedOrRecord(tx, k.roomId, k.senderKey, k.sessionId)?.record;
      if (rec) out.push({ roomId: rec.roomId, senderKey: rec.senderKey, sessionId: rec.sessionId, pickle: rec.pickle, firstKnownIndex: rec.firstKnownIndex });
    }
    return out;
  }

  /** The session exported at its first known index (for forwarding and key export). */
  exportKey(record: InboundGroupSessionRecord): string {
    const s = new this.ctx.olm.InboundGroupSession();
    try {
      s.unpickle(this.ctx.pickleKey, record.pickle);
      return s.export_session(s.first_known_index());
    } finally {
      s.free();
    }
  }
}
