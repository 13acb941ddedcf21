/**
 * Room keys in the spec's session-export format: pages of our inbound sessions out, batches of a
 * key file in (provenance "imported": never better than `unauthenticated`).
 * @internal
 */
import { MEGOLM_ALGORITHM } from "../../../src/protocol/api.js";
import { isObj, isStr, type EngineContext, type Json } from "../EngineContext.js";
import type { InboundSessions } from "../megolm/InboundSessions.js";
import type { Transaction } from "../Transaction.js";

/** @internal */
export class RoomKeyExport {
  constructor(
    private readonly ctx: EngineContext,
    private readonly inbound: InboundSessions,
  ) {}

  /** One page of inbound sessions, each exported at its first known index; `after` is the previous page's `next`. */
  exportPage(limit: number, after?: string): { keys: Json[]; next: string | null; total: number } {
    const records = this.ctx.store.listInboundGroupSessions(limit, after);
    const keys: Json[] = records.map((r) => ({
      algorithm: MEGOLM_ALGORITHM,
      room_id: r.roomId,
      sender_key: r.senderKey,
      sender_claimed_keys: { ed25519: r.claimedEd25519 },
      session_id: r.sessionId,
      session_key: this.inbound.exportKey(r),
      forwarding_curve25519_key_chain: r.forwardingChain,
    }));
    const last = records[records.length - 1];
    const next = records.length === limit && last ? `${last.roomId}|${last.senderKey}|${last.sessionId}` : null;
    return { keys, next, total: this.ctx.store.countInboundGroupSessions() };
  }

  /**
   * Import exported sessions into `tx`: malformed entries are skipped; an existing session is
   * replaced only by one that starts at an earlier index. Returns the sessions stored.
   */
  importBatch(tx: Transaction, keys: unknown[]): { stored: { roomId: string; sessionId: string; senderKey: string }[]; skipped: number } {
    const stored: { roomId: string; sessionId: string; senderKey: string }[] = [];
    let skipped = 0;
    for (const k of keys) {
      const ok =
        isObj(k) &&
        k.algorithm === MEGOLM_ALGORITHM &&
        isStr(k.room_id) &&
        isStr(k.sender_key) &&
        isStr(k.session_id) &&
        isStr(k.session_key) &&
        isObj(k.sender_claimed_keys) &&
        isStr(k.sender_claimed_keys.ed25519) &&
        this.inbound.add(tx, {
          roomId: k.room_id,
          senderKey: k.sender_key,
          sessionId: k.session_id,
          sessionKey: k.session_key,
          exported: true,
          claimedEd25519: k.sender_claimed_keys.ed25519,
          forwardingChain: Array.isArray(k.forwarding_curve25519_key_chain) ? k.forwarding_curve25519_key_chain.filter(isStr) : [],
          senderData: { kind: "imported" },
        });
      if (ok) stored.push({ roomId: k.room_id as string, sessionId: k.session_id as string, senderKey: k.sender_key as string });
      else skipped++;
    }
    return { stored, skipped };
  }
}
