/**
 * Room-event decryption: Megolm decrypt, replay detection (persistent message-index records),
 * events kept waiting for their keys and decrypted again when the keys arrive, and the label of
 * each event from {@link senderTrust}.
 * @internal
 */
import { DecryptionFailureCode, MEGOLM_ALGORITHM, type DecryptionFailureCodeValue, type RoomDecryptResult, type SyncChangesResult } from "../../../src/protocol/api.js";
import type { PoolSession } from "../../../src/protocol/pool.js";
import { DecryptFailure, MAX_CIPHERTEXT_LENGTH, MAX_ID_LENGTH } from "../DecryptFailure.js";
import { isObj, isStr, type EngineContext } from "../EngineContext.js";
import type { DeviceTracker } from "../identities/DeviceTracker.js";
import type { UserIdentities } from "../identities/UserIdentities.js";
import type { Transaction } from "../Transaction.js";
import { provenanceOf, senderTrust } from "../trust/senderTrust.js";
import type { InboundSessions } from "./InboundSessions.js";
import type { WithheldNotices } from "./WithheldNotices.js";
import { decipherRoomEvent, type Deciphered } from "./decipher.js";
import { GroupSessionCache } from "./GroupSessionCache.js";

/** Upper bound on events kept waiting for their keys. */
const MAX_PENDING_EVENTS = 20_000;
/** Value key of the sessions whose waiting events were decrypted but not yet confirmed by a sync token. @internal */
export const UNCONFIRMED_REDECRYPT = "unconfirmed_redecrypt";

/** Called for an event whose key may still come (so that it can be requested). @internal */
export type MissingKeyHandler = (tx: Transaction, roomId: string, senderKey: string, sessionId: string, sender: string) => void;

/** The decrypt pool's part of an event (`pre`), when it is well-formed. */
function preDeciphered(ev: Record<string, unknown>): { messageIndex: number; type: string } | null {
  const pre = ev.pre;
  if (!isObj(pre) || !Number.isSafeInteger(pre.messageIndex) || (pre.messageIndex as number) < 0 || !isStr(pre.type)) return null;
  return { messageIndex: pre.messageIndex as number, type: pre.type };
}

/** Decrypted results of one room. @internal */
export interface RoomResults {
  roomId: string;
  results: RoomDecryptResult[];
}

/** How many more events may be stored to wait for their keys (null: not counted yet). @internal */
export interface PendingBudget {
  left: number | null;
  /** The store was asked for the exact count once, when the kept count said "full". */
  recounted?: boolean;
}

/** @internal */
export class RoomDecryptor {
  constructor(
    private readonly ctx: EngineContext,
    private readonly inbound: InboundSessions,
    private readonly devices: DeviceTracker,
    private readonly identities: UserIdentities,
    private readonly withheld: WithheldNotices,
    private readonly onMissingKey: MissingKeyHandler,
  ) {}

  /**
   * Decrypt a batch of `m.room.encrypted` events of one room. Failures are results with a reason
   * code; with `keepPending`, events whose key may still arrive are stored to be decrypted then,
   * within the store's limit of waiting events. `budget` is shared by the batches of one sync (the
   * count of waiting events, kept in memory by `PendingMirror`, is taken once, when an event has to
   * wait).
   *
   * With `exported` (the pooled sync call only), an event may come deciphered by the decrypt pool
   * (`pre`): its result then has an empty `plaintextJson` (the caller holds the plaintext), and
   * every session this call deciphered with itself is added to `exported`, for the pool. Without
   * it, a `pre` field (e.g. in events a server sent) is ignored.
   */
  decryptBatch(tx: Transaction, roomId: string, events: unknown[], keepPending: boolean, budget: PendingBudget = { left: null }, exported?: Map<string, PoolSession>): RoomDecryptResult[] {
    const out: RoomDecryptResult[] = [];
    for (const ev of events) {
      const eventId = isObj(ev) && isStr(ev.event_id) ? ev.event_id : "";
      try {
        out.push(this.decryptOne(tx, roomId, ev, exported));
      } catch (e) {
        const code = e instanceof DecryptFailure ? (e.code as DecryptionFailureCodeValue) : DecryptionFailureCode.Malformed;
        const message = e instanceof Error ? e.message : String(e);
        const content = isObj(ev) && isObj(ev.content) ? ev.content : {};
        const sessionId = isStr(content.session_id) ? content.session_id : null;
        const failure: RoomDecryptResult = { ok: false, eventId, code, message, sessionId };
        if (e instanceof DecryptFailure && e.withheldCode) failure.withheldCode = e.withheldCode;
        out.push(failure);
        const mayArrive = code === DecryptionFailureCode.MissingSession || code === DecryptionFailureCode.UnknownIndex || code === DecryptionFailureCode.Withheld;
        if (mayArrive && code !== DecryptionFailureCode.Withheld && sessionId && isStr(content.sender_key) && content.algorithm === MEGOLM_ALGORITHM && isObj(ev) && isStr(ev.sender)) {
          this.onMissingKey(tx, roomId, content.sender_key, sessionId, ev.sender);
        }
        // A pooled event crossed without its ciphertext (the pool holds it): it cannot wait for a key.
        if (mayArrive && keepPending && sessionId && eventId && !(exported && isObj(ev) && isObj(ev.pre))) {
          const kept = this.ctx.mirrors.pending;
          budget.left ??= MAX_PENDING_EVENTS - kept.storedCount();
          // The kept count may be a little high (see PendingMirror): the store has the last word.
          if (budget.left <= 0 && !budget.recounted) {
            budget.recounted = true;
            budget.left += kept.storedCount() - kept.recount();
          }
          if (budget.left > 0 && !tx.hasPending(roomId, eventId)) {
            tx.putPending({ roomId, sessionId, eventId, eventJson: JSON.stringify(ev), receivedTs: this.ctx.now() });
            budget.left--;
          }
        } else if (code !== DecryptionFailureCode.MissingSession) {
          this.ctx.log.warn(`could not decrypt ${eventId} in ${roomId} (reason: ${code}): ${message}`);
        }
      }
    }
    return out;
  }

  private decryptOne(tx: Transaction, roomId: string, ev: unknown, exported?: Map<string, PoolSession>): RoomDecryptResult & { ok: true } {
    const me = this.ctx.me();
    if (!isObj(ev) || !isStr(ev.event_id) || !isStr(ev.sender) || !isObj(ev.content)) throw new DecryptFailure(DecryptionFailureCode.Malformed, "event lacks event_id, sender or content");
    const c = ev.content;
    if (c.algorithm !== MEGOLM_ALGORITHM) throw new DecryptFailure(DecryptionFailureCode.UnknownAlgorithm, `unsupported algorithm ${String(c.algorithm)}`);
    if (!isStr(c.ciphertext) || !isStr(c.session_id) || !isStr(c.sender_key) || c.ciphertext.length > MAX_CIPHERTEXT_LENGTH || c.session_id.length > MAX_ID_LENGTH || c.sender_key.length > MAX_ID_LENGTH) {
      throw new DecryptFailure(DecryptionFailureCode.Malformed, "missing ciphertext, session_id or sender_key");
    }
    // Deciphered by the decrypt pool (its workers hold the session; see decipher.ts): only the
    // message index and type come from there; the session's record, replay and label from here.
    // Only the pooled sync call (the one that passes `exported`) may carry it: the main thread
    // sets it from the pool's own results, never from what the server sent.
    const pre = exported ? preDeciphered(ev) : null;
    const live = pre ? this.inbound.cachedOrRecord(tx, roomId, c.sender_key, c.session_id) : this.inbound.live(tx, roomId, c.sender_key, c.session_id);
    if (!live) {
      const w = this.withheld.lookup(tx, roomId, c.session_id, ev.sender, c.sender_key);
      if (w) throw new DecryptFailure(DecryptionFailureCode.Withheld, `the sender withheld the key: ${w.code}${w.reason ? ` (${w.reason})` : ""}`, w.code);
      throw new DecryptFailure(DecryptionFailureCode.MissingSession, `no session ${c.session_id} from ${c.sender_key}`);
    }
    // A session decrypts only events of the room and creator key it claims (whatever its provenance).
    if (live.record.roomId !== roomId) throw new DecryptFailure(DecryptionFailureCode.RoomMismatch, `session ${c.session_id} belongs to ${live.record.roomId}, not ${roomId}`);
    if (live.record.senderKey !== c.sender_key) throw new DecryptFailure(DecryptionFailureCode.SenderMismatch, `session ${c.session_id} belongs to sender key ${live.record.senderKey}, not ${c.sender_key}`);
    const deciphered: Deciphered = pre ? { plaintext: "", messageIndex: pre.messageIndex, type: pre.type } : decipherRoomEvent(live.session!, roomId, c.ciphertext, live.record.firstKnownIndex);
    if (!pre && exported && !exported.has(GroupSessionCache.key(roomId, c.sender_key, c.session_id))) {
      exported.set(GroupSessionCache.key(roomId, c.sender_key, c.session_id), { roomId, senderKey: c.sender_key, sessionId: c.session_id, pickle: live.record.pickle, firstKnownIndex: live.record.firstKnownIndex });
    }
    const dec = { plaintext: deciphered.plaintext, message_index: deciphered.messageIndex };
    const payload = { type: deciphered.type };

    // replay detection (persistent)
    const ts = typeof ev.origin_server_ts === "number" ? ev.origin_server_ts : 0;
    const mem = live.seen?.get(dec.message_index);
    const stored = mem ? { eventId: mem.eventId, originServerTs: mem.ts } : live.complete ? null : tx.getReplay(c.sender_key, c.session_id, dec.message_index);
    if (stored) {
      if (stored.eventId !== ev.event_id || stored.originServerTs !== ts) {
        throw new DecryptFailure(DecryptionFailureCode.Replay, `message index ${dec.message_index} of session ${c.session_id} was already used by ${stored.eventId}`);
      }
    } else {
      tx.putReplay({ senderKey: c.sender_key, sessionId: c.session_id, messageIndex: dec.message_index, eventId: ev.event_id, originServerTs: ts });
    }
    (live.seen ??= new Map()).set(dec.message_index, { eventId: stored?.eventId ?? ev.event_id, ts: stored?.originServerTs ?? ts });

    // the label, from the session's provenance and current device trust (same answer after a restart)
    const rec = live.record;
    const label = senderTrust({
      provenance: provenanceOf(rec),
      eventSender: ev.sender,
      claimedDeviceId: isStr(c.device_id) ? c.device_id : null,
      own: { userId: me.userId, deviceId: me.deviceId },
      lookupDevice: (userId, curve25519) => {
        const device = this.devices.deviceByKey(tx, userId, curve25519);
        return device ? { device, ...this.identities.deviceTrust(tx, device) } : null;
      },
    });
    if (!label.ok) throw new DecryptFailure(label.code, label.message);
    return {
      ok: true,
      eventId: ev.event_id,
      sender: ev.sender,
      originServerTs: ts,
      type: payload.type,
      plaintextJson: dec.plaintext,
      senderCurve25519: c.sender_key,
      claimedEd25519: rec.claimedEd25519,
      senderDeviceId: label.senderDeviceId,
      sessionId: c.session_id,
      messageIndex: dec.message_index,
      verification: label.verification,
      crossSigned: label.crossSigned,
      forwardingChain: rec.forwardingChain,
    };
  }

  /**
   * Decrypt the events waiting for the sessions in `result.roomKeys` and push them to
   * `result.redecrypted`: one entry per room, in timeline order (`origin_server_ts`, then the
   * order they arrived in: `receivedTs`, then the store's order), whatever their sessions and event
   * IDs (events of two sessions alike in both: in the order of their sessions' keys).
   *
   * `batch` is the open sync batch, if any (see `CryptoEngine.receiveSyncChanges`): the events it
   * kept for later wait too, although they are not stored yet.
   * - `deferDeletes` (sync processing): the waiting rows are deleted in `batch`, committed only
   *   with the sync token, and the sessions are remembered in `tx` until then: if the process dies
   *   before the client emitted the events, the next sync decrypts them again (the key's to-device
   *   message itself will not come back).
   * - otherwise (key import): the rows are deleted in `tx`, and in `batch` too, so that the sync
   *   in progress does not store the events it kept once they are decrypted here.
   */
  redecryptPending(tx: Transaction, result: SyncChangesResult, batch: Transaction | null, deferDeletes = false): void {
    const keys = result.roomKeys.map((k) => [k.roomId, k.sessionId] as [string, string]);
    const unconfirmed = deferDeletes ? tx.getValue(UNCONFIRMED_REDECRYPT) : null;
    if (unconfirmed) {
      for (const [r, sid] of JSON.parse(unconfirmed) as [string, string][]) {
        if (!keys.some(([a, b]) => a === r && b === sid)) keys.push([r, sid]);
      }
    }
    const touched: [string, string][] = [];
    const byRoom = new Map<string, { r: RoomDecryptResult; receivedTs: number; seq: number }[]>();
    let seq = 0;
    for (const [roomId, sessionId] of keys) {
      const waiting = (batch ?? tx).getPendingEvents(roomId, sessionId);
      if (!waiting.length) continue;
      const results = this.decryptBatch(tx, roomId, waiting.map((p) => JSON.parse(p.eventJson) as unknown), false);
      let any = false;
      results.forEach((r, i) => {
        if (!r.ok) return;
        any = true;
        if (deferDeletes) batch?.deletePending(roomId, r.eventId);
        else {
          tx.deletePending(roomId, r.eventId);
          batch?.deletePending(roomId, r.eventId);
        }
        const list = byRoom.get(roomId) ?? [];
        byRoom.set(roomId, list);
        list.push({ r, receivedTs: waiting[i]!.receivedTs, seq: seq++ });
      });
      if (any && deferDeletes) touched.push([roomId, sessionId]);
    }
    for (const [roomId, list] of byRoom) {
      const ts = (x: RoomDecryptResult): number => (x.ok ? x.originServerTs : 0);
      list.sort((a, b) => ts(a.r) - ts(b.r) || a.receivedTs - b.receivedTs || a.seq - b.seq);
      result.redecrypted.push({ roomId, results: list.map((x) => x.r) });
    }
    if (deferDeletes && (touched.length || unconfirmed)) tx.setValue(UNCONFIRMED_REDECRYPT, touched.length ? JSON.stringify(touched) : null);
  }
}
