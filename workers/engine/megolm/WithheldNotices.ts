/**
 * `m.room_key.withheld` notices: recorded as received, and read when an event's session is missing
 * so the failure says the sender withheld the key.
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
  sender: string;
}

const valueKey = (roomId: string, sessionId: string): string => `withheld:${roomId}|${sessionId}`;

/** @internal */
export class WithheldNotices {
  constructor(private readonly ctx: EngineContext) {}

  /** Remember that `sender` refused (or could not) share a session with us. */
  record(tx: Transaction, sender: string, c: Json): void {
    if (!isStr(c.room_id) || !isStr(c.session_id) || !isStr(c.code) || c.code.length > 100) {
      this.ctx.log.warn(`ignoring malformed m.room_key.withheld from ${sender} (reason: malformed)`);
      return;
    }
    const notice: WithheldNotice = { code: c.code, reason: isStr(c.reason) ? c.reason.slice(0, 500) : null, sender };
    tx.setValue(valueKey(c.room_id, c.session_id), JSON.stringify(notice));
  }

  /** The notice recorded for a session, if any. */
  lookup(tx: Transaction, roomId: string, sessionId: string): WithheldNotice | null {
    const w = tx.getValue(valueKey(roomId, sessionId));
    return w ? (JSON.parse(w) as WithheldNotice) : null;
  }
}
