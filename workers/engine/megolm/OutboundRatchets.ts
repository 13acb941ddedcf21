/**
 * The live ratchets of the outbound Megolm sessions this engine encrypts with, kept in memory so
 * that an encryption costs no store write, and the durable "in use" mark that makes this safe.
 *
 * The rule (the security invariant is: a message index is never used twice):
 * - Before a session's ratchet first moves past its stored pickle in this engine's lifetime, the
 *   session's record is committed with `inUseBy` = this lifetime's mark (once per session per
 *   lifetime, in the call's own transaction, before its ciphertext leaves). A session this engine
 *   creates is written marked from the start, so it costs no write of its own.
 * - From then on encryptions advance the ratchet here only. The current pickle is written when a
 *   transaction writes the record anyway (a share) and, unmarked, when the engine closes cleanly
 *   ({@link OutboundRatchets.flush}).
 * - A record read with a mark and no live ratchet of this engine behind it — left by a lifetime
 *   that did not close cleanly (crash, kill), or by this one after its ratchet was dropped — may
 *   hold a pickle behind indices already used: it is discarded, never encrypted with again, and
 *   the next send shares a fresh session. That is all a crash costs.
 *
 * Writes done "lazily" in between would buy nothing: a marked record is discarded after a crash
 * whatever pickle it holds, so only the clean close needs the final state.
 *
 * A custom store written before `inUseBy` existed may drop the field. The first mark committed is
 * read back; if it did not survive, every encryption writes its ratchet as before this change.
 * @internal
 */
import type Olm from "@matrix-org/olm";
import type { OutboundGroupSessionRecord } from "../../../src/protocol/store.js";
import type { EngineContext } from "../EngineContext.js";
import type { Transaction } from "../Transaction.js";

/** A session's ratchet as this engine holds it. */
interface Live {
  sessionId: string;
  og: Olm.OutboundGroupSession;
  messageCount: number;
  /** Whether a committed batch holds this session's record marked with this lifetime. */
  marked: boolean;
}

/** @internal */
export class OutboundRatchets {
  private readonly live = new Map<string, Live>();
  private lifetime: string;
  /** The store does not keep `inUseBy`: every encryption commits its ratchet (the old behaviour). */
  private perMessage = false;

  constructor(private readonly ctx: EngineContext) {
    this.lifetime = ctx.newId();
    ctx.onCommit((tx) => this.afterCommit(tx));
  }

  /** Start a new lifetime (an account was loaded): a new mark, nothing live. */
  reset(): void {
    this.release();
    this.lifetime = this.ctx.newId();
  }

  /** Free the live ratchets without writing them (their records stay marked: discarded on the next read). */
  release(): void {
    for (const l of this.live.values()) l.og.free();
    this.live.clear();
  }

  /**
   * The room's outbound session as this engine may use it: the stored record (read-your-writes)
   * with the live message count; null — and deleted in `tx` — when it is marked in use with no
   * live ratchet of ours behind it (see the file comment).
   */
  current(tx: Transaction, roomId: string): OutboundGroupSessionRecord | null {
    const r = tx.getOutbound(roomId);
    if (!r) return null;
    const l = this.live.get(roomId);
    if (l && l.sessionId === r.sessionId) return { ...r, messageCount: l.messageCount };
    if (l) this.drop(roomId);
    if (r.inUseBy !== undefined) {
      this.ctx.log.warn(`discarding the outbound session ${r.sessionId} of ${roomId}: it was in use by a crypto worker that did not close cleanly, so its stored ratchet may be behind indices already used; the next send shares a new session`);
      tx.deleteOutbound(roomId);
      return null;
    }
    return r;
  }

  /** A session just created (written in `tx` through {@link OutboundRatchets.record}): live from now on. */
  adopt(roomId: string, sessionId: string, og: Olm.OutboundGroupSession): void {
    this.drop(roomId);
    this.live.set(roomId, { sessionId, og, messageCount: 0, marked: false });
  }

  /** The mark to write on a record created now. */
  get mark(): string {
    return this.lifetime;
  }

  /** The session key at the ratchet's current index (what a recipient added now may decrypt from). */
  sessionKey(rec: OutboundGroupSessionRecord): string {
    const l = this.live.get(rec.roomId);
    if (l && l.sessionId === rec.sessionId) return l.og.session_key();
    const og = new this.ctx.olm.OutboundGroupSession();
    try {
      og.unpickle(this.ctx.pickleKey, rec.pickle);
      return og.session_key();
    } finally {
      og.free();
    }
  }

  /**
   * `rec` (from {@link OutboundRatchets.current}) changed by `patch`, as it must be written: with
   * the live ratchet's pickle and count when there is one, its mark kept.
   */
  record(rec: OutboundGroupSessionRecord, patch: Partial<OutboundGroupSessionRecord> = {}): OutboundGroupSessionRecord {
    const l = this.live.get(rec.roomId);
    const out = { ...rec, ...patch };
    if (l && l.sessionId === rec.sessionId) {
      out.pickle = l.og.pickle(this.ctx.pickleKey);
      out.messageCount = l.messageCount;
    }
    return out;
  }

  /**
   * Encrypt `plaintext` with the session of `rec` (from {@link OutboundRatchets.current}) at the
   * next index. The first use in this lifetime stages the record, marked, in `tx`: the caller
   * commits `tx` before the ciphertext leaves.
   */
  encrypt(tx: Transaction, rec: OutboundGroupSessionRecord, plaintext: string): string {
    let l = this.live.get(rec.roomId);
    if (!l || l.sessionId !== rec.sessionId) {
      // Unmarked (current() discards marked records without a live ratchet): its pickle is current.
      const og = new this.ctx.olm.OutboundGroupSession();
      try {
        og.unpickle(this.ctx.pickleKey, rec.pickle);
      } catch (e) {
        og.free();
        throw e;
      }
      this.drop(rec.roomId);
      l = { sessionId: rec.sessionId, og, messageCount: rec.messageCount, marked: false };
      this.live.set(rec.roomId, l);
    }
    const ciphertext = l.og.encrypt(plaintext);
    l.messageCount++;
    if (!l.marked || this.perMessage) tx.putOutbound({ ...rec, pickle: l.og.pickle(this.ctx.pickleKey), messageCount: l.messageCount, inUseBy: this.lifetime });
    return ciphertext;
  }

  /** Clean close: every live ratchet's current pickle and count, unmarked, into `tx`. Returns how many. */
  flush(tx: Transaction): number {
    let n = 0;
    for (const [roomId, l] of this.live) {
      const r = tx.getOutbound(roomId);
      if (!r || r.sessionId !== l.sessionId) continue;
      const { inUseBy: _mark, ...rest } = r;
      tx.putOutbound({ ...rest, pickle: l.og.pickle(this.ctx.pickleKey), messageCount: l.messageCount });
      n++;
    }
    return n;
  }

  /** After a commit: ratchets of deleted or replaced sessions are freed, committed marks noted. */
  private afterCommit(tx: Transaction): void {
    for (const [roomId, rec] of tx.outboundChanges()) {
      const l = this.live.get(roomId);
      if (!l) continue;
      if (!rec || rec.sessionId !== l.sessionId) {
        this.drop(roomId);
        continue;
      }
      if (l.marked || rec.inUseBy !== this.lifetime) continue;
      l.marked = true;
      if (!this.perMessage && this.ctx.store.getOutboundGroupSession(roomId)?.inUseBy !== this.lifetime) {
        this.perMessage = true;
        this.ctx.log.warn("the crypto store does not keep OutboundGroupSessionRecord.inUseBy: every encryption writes its ratchet to the store (update the store to keep the field)");
      }
    }
  }

  private drop(roomId: string): void {
    this.live.get(roomId)?.og.free();
    this.live.delete(roomId);
  }
}
