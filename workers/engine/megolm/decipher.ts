/**
 * The libolm part of decrypting one room event: the ciphertext through the Megolm session, and
 * the plaintext checked to be an event of this room. Pure (no store, no trust): the crypto
 * worker's {@link RoomDecryptor} and the decrypt pool's workers (`workers/decrypt-worker.ts`) run
 * the same checks. Replay detection and the sender's label are the crypto worker's alone.
 * @internal
 */
import type Olm from "@matrix-org/olm";
import { DecryptionFailureCode } from "../../../src/protocol/api.js";
import { DecryptFailure } from "../DecryptFailure.js";

/** A deciphered room event. @internal */
export interface Deciphered {
  plaintext: string;
  messageIndex: number;
  /** The decrypted event type. */
  type: string;
}

/**
 * Decrypt `ciphertext` with `session` and check the plaintext: JSON with a string `type`, an
 * object `content` and `room_id` equal to `roomId`. Throws {@link DecryptFailure}
 * (`unknown_index`, `malformed`, `room_mismatch`).
 */
export function decipherRoomEvent(session: Olm.InboundGroupSession, roomId: string, ciphertext: string, firstKnownIndex: number): Deciphered {
  let dec: { plaintext: string; message_index: number };
  try {
    dec = session.decrypt(ciphertext);
  } catch (e) {
    const msg = String(e instanceof Error ? e.message : e);
    if (msg.includes("UNKNOWN_MESSAGE_INDEX")) throw new DecryptFailure(DecryptionFailureCode.UnknownIndex, `unknown message index, first known index ${firstKnownIndex}`);
    throw new DecryptFailure(DecryptionFailureCode.Malformed, `Megolm decryption failed: ${msg}`);
  }
  let payload: unknown;
  try {
    payload = JSON.parse(dec.plaintext);
  } catch {
    throw new DecryptFailure(DecryptionFailureCode.Malformed, "plaintext is not JSON");
  }
  const p = payload as { type?: unknown; content?: unknown; room_id?: unknown } | null;
  if (p === null || typeof p !== "object" || Array.isArray(p) || typeof p.type !== "string" || p.content === null || typeof p.content !== "object" || Array.isArray(p.content)) {
    throw new DecryptFailure(DecryptionFailureCode.Malformed, "plaintext lacks type or content");
  }
  if (p.room_id !== roomId) throw new DecryptFailure(DecryptionFailureCode.RoomMismatch, `decrypted room_id ${String(p.room_id)} differs from ${roomId}`);
  return { plaintext: dec.plaintext, messageIndex: dec.message_index, type: p.type };
}
