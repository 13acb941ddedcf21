/**
 * An expected decryption failure with its reason code: thrown inside the engine, turned into a
 * reason-coded result (never an error) at the component boundary.
 * @internal
 */
import type { DecryptionFailureCodeValue } from "../../src/protocol/api.js";

/** @internal */
export class DecryptFailure extends Error {
  constructor(
    readonly code: DecryptionFailureCodeValue | string,
    message: string,
    readonly withheldCode?: string,
  ) {
    super(message);
  }
}

/** Longest ciphertext we accept from the wire. @internal */
export const MAX_CIPHERTEXT_LENGTH = 1 << 20;
/** Longest session ID / key / device ID we accept from the wire. @internal */
export const MAX_ID_LENGTH = 255;
