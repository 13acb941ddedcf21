/**
 * The pagination cursor of inbound group sessions, `${roomId}|${senderKey}|${sessionId}`, shared
 * by the built-in stores' `listInboundGroupSessions`.
 *
 * The engine builds the cursor of the next page from the last record of a page in this format.
 * Sender keys and session IDs are unpadded base64 (never `|`), so a cursor is split from the
 * right and room IDs may contain `|`.
 *
 * @packageDocumentation
 */

import { StoreError } from "../../src/protocol/errors.js";

/** The identifying fields of an inbound group session. */
export interface InboundSessionKey {
  roomId: string;
  senderKey: string;
  sessionId: string;
}

/** The cursor of `r`: pass the cursor of a page's last record as `after` to get the next page. */
export function inboundGroupSessionCursor(r: InboundSessionKey): string {
  return `${r.roomId}|${r.senderKey}|${r.sessionId}`;
}

/** Split a cursor from the right; throws `StoreError` (`reason: "invalid_cursor"`) when it has fewer than two `|`. */
export function parseInboundGroupSessionCursor(after: string): InboundSessionKey {
  const j = after.lastIndexOf("|");
  const i = j > 0 ? after.lastIndexOf("|", j - 1) : -1;
  if (i < 0) throw new StoreError("Invalid inbound group session cursor.", { reason: "invalid_cursor" });
  return { roomId: after.slice(0, i), senderKey: after.slice(i + 1, j), sessionId: after.slice(j + 1) };
}
