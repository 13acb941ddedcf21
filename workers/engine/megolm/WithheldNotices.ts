/**
 * `m.room_key.withheld` notices: recorded as received (bound to the user who sent them and the
 * sender key they name), and read when an event's session is missing so the failure says the
 * sender withheld the key. A notice counts only for events of that same user and sender key:
 * anyone else's notice changes neither the failure code nor our key request.
 * @internal
 */
import { isStr, type EngineContext, type Json } from "../EngineContext.js";
import type { Transaction } from "../Transaction.js";

/** To-device event types of withheld notices (stable and the pre-stable prefix). @internal */
export const WITHHELD_TYPES: ReadonlySet<string> = new Set(["m.room_key.withheld", "org.matrix.room_key.withheld"]);

/** A recorded notice. @internal */
export interface WithheldNotice {
  code: string;
  reason: string | null;
  /** The to-device sender of the notice. */
  sender: string;
  /** The session's sender key the notice names (absent in notices stored by older versions). */
  senderKey?: string;
}

/** Keyed by the notice's sender too, so another user's notice cannot overwrite the real one. */
const valueKey = (roomId: string, sessionId: string, sender: string): string => `withheld:${roomId}|${sessionId}|${sender}`;
/** The key older versions used (one notice per session, whoever sent it). */
const legacyKey = (roomId: string, sessionId: string): string => `withheld:${roomId}|${sessionId}`;

/** @internal */
export class WithheldNotices {
  constructor(private readonly ctx: EngineContext) {}

  /** Remember that `sender` refused (or could not) share a session with us. */
  record(tx: Transaction, sender: string, c: Json): void {
    if (!isStr(c.room_id) || !isStr(c.session_id) || !isStr(c.code) || c.code.length > 100 || !isStr(c.sender_key) || c.sender_key.length > 128) {
      this.ctx.log.warn(`ignoring malformed m.room_key.withheld from ${sender} (reason: malformed)`);
      return;
    }
    const notice: WithheldNotice = { code: c.code, reason: isStr(c.reason) ? c.reason.slice(0, 500) : null, sender, senderKey: c.sender_key };
    tx.setValue(valueKey(c.room_id, c.session_id, sender), JSON.stringify(notice));
  }

  /** The notice for a session that the event's own sender (`sender`, `senderKey`) sent, if any. */
  lookup(tx: Transaction, roomId: string, sessionId: string, sender: string, senderKey: string): WithheldNotice | null {
    for (const key of [valueKey(roomId, sessionId, sender), legacyKey(roomId, sessionId)]) {
      const w = tx.getValue(key);
      if (!w) continue;
      const notice = JSON.parse(w) as WithheldNotice;
      if (notice.sender === sender && (notice.senderKey === undefined || notice.senderKey === senderKey)) return notice;
    }
    return null;
  }
}
