/**
 * Megolm session key export files, as specified in the client-server API section "Key exports"
 * (the `-----BEGIN MEGOLM SESSION DATA-----` files that Element and the other clients read and write).
 *
 * File layout: an armour header line, the base64 of the binary body, an armour footer line. The body is
 *
 * | bytes   | content                                                              |
 * |---------|----------------------------------------------------------------------|
 * | 1       | version, `0x01`                                                      |
 * | 16      | random salt                                                          |
 * | 16      | random AES-CTR IV; the writer clears bit 63 (top bit of byte 8)       |
 * | 4       | PBKDF2 rounds, unsigned 32-bit big-endian                            |
 * | n       | AES-256-CTR ciphertext of the UTF-8 JSON array of sessions           |
 * | 32      | HMAC-SHA-256 of every preceding byte                                 |
 *
 * The 64 bytes of PBKDF2-HMAC-SHA-512(passphrase as UTF-8, salt, rounds) are split into the AES key
 * (first 32) and the HMAC key (last 32).
 *
 * Key derivation runs on libuv's thread pool (`node:crypto`'s asynchronous `pbkdf2`), so neither the
 * main thread nor the crypto worker's event loop is blocked for the hundreds of milliseconds it takes.
 *
 * Everything here is a pure function of its arguments (plus randomness): no store, no worker, no network.
 *
 * @packageDocumentation
 */

import { createCipheriv, createDecipheriv, createHmac, pbkdf2, randomBytes, timingSafeEqual } from "node:crypto";
import { InvalidArgumentError, KeyExportError } from "../protocol/errors.js";

/** The armour line before the base64 body. */
export const KEY_EXPORT_HEADER = "-----BEGIN MEGOLM SESSION DATA-----";
/** The armour line after the base64 body. */
export const KEY_EXPORT_FOOTER = "-----END MEGOLM SESSION DATA-----";

/**
 * PBKDF2 rounds used by {@link encryptKeyExport} when none are given: 200 000 iterations of
 * HMAC-SHA-512, about 0.1–0.3 s on current hardware. Element Web writes 500 000 and the Rust SDK
 * recommends "values in the 100 000 range"; 200 000 stays comfortably above that floor while keeping
 * exports and imports on slow devices bearable. The importer always uses the count stored in the file.
 */
export const DEFAULT_KEY_EXPORT_ROUNDS = 200_000;

/** Files declaring more PBKDF2 rounds than this are refused on import (denial of service). */
export const MAX_IMPORT_ROUNDS = 10_000_000;

/** The only body version defined by the spec. */
const VERSION = 0x01;
const SALT_LENGTH = 16;
const IV_LENGTH = 16;
const HEADER_LENGTH = 1 + SALT_LENGTH + IV_LENGTH + 4; // 37
const MAC_LENGTH = 32;
/**
 * Binary bytes per armoured line: 96 bytes give 128 base64 characters, exactly what Element Web's
 * `packMegolmKeyFile` writes (`LINE_LENGTH = (72 * 4) / 3` bytes per line). As 96 is a multiple of 3,
 * only the last line can carry `=` padding, so the lines also concatenate into valid base64.
 */
const LINE_BYTES = 96;

/** The Megolm algorithm name, for callers counting sessions of other algorithms. */
export const MEGOLM_V1_ALGORITHM = "m.megolm.v1.aes-sha2";

/**
 * Keys a sender's device claimed when the session was shared, by key algorithm. For Megolm this is
 * `{ ed25519: <the sending device's Ed25519 key> }`.
 */
export interface SenderClaimedKeys {
  /** The sending device's Ed25519 fingerprint key, unpadded base64. */
  ed25519?: string;
  /** Keys of other algorithms, rarely present. */
  [algorithm: string]: string | undefined;
}

/**
 * One session in a key export: the spec's `SessionData` plus `room_id` and `session_id`
 * (what `m.forwarded_room_key` carries, without `sender_claimed_ed25519_key`).
 *
 * Fields not listed here are preserved by {@link parseKeyExportSessions} and written back by
 * {@link encryptKeyExport} unchanged.
 */
export interface ExportedRoomKey {
  /** Encryption algorithm of the session, normally `m.megolm.v1.aes-sha2`. Other values are kept for the caller to skip. */
  algorithm: string;
  /** Room the session belongs to. */
  room_id: string;
  /** Curve25519 identity key of the device that created the session, unpadded base64. */
  sender_key: string;
  /** Keys the creating device claimed to own (its Ed25519 key for Megolm). */
  sender_claimed_keys: SenderClaimedKeys;
  /** The Megolm session ID, unpadded base64. */
  session_id: string;
  /** The session exported at some message index (libolm/vodozemac "session export" format), unpadded base64. */
  session_key: string;
  /**
   * Curve25519 keys of the devices the session was forwarded through, oldest first; empty when we
   * received it directly from its creator. Missing in a file is read as `[]`.
   */
  forwarding_curve25519_key_chain: string[];
  /**
   * MSC3061 shared-history flag as written by the Rust SDK (`false` when absent): the session may be
   * shared with users invited later.
   */
  "m.shared_history"?: boolean;
}

/** Options of {@link encryptKeyExport} and {@link encryptKeyExportJson}. */
export interface EncryptKeyExportOptions {
  /**
   * PBKDF2-HMAC-SHA-512 iterations, an integer from 1 to 2³²−1. Defaults to
   * {@link DEFAULT_KEY_EXPORT_ROUNDS} (200 000). Only tests should go much lower.
   */
  rounds?: number;
}

/**
 * Encrypt sessions into a key export file.
 *
 * @param sessions - The sessions to export (serialised with `JSON.stringify`, unknown fields included).
 * @param passphrase - The passphrase, used as its UTF-8 bytes without Unicode normalisation.
 * @param opts - Optional {@link EncryptKeyExportOptions.rounds | rounds}.
 * @returns The armoured file: header line, base64 wrapped at 128 characters (96 bytes) per line as
 *   Element writes it, footer line, trailing `\n`.
 * @throws InvalidArgumentError when `rounds` is not an integer in 1..2³²−1.
 */
export async function encryptKeyExport(sessions: ExportedRoomKey[], passphrase: string, opts: EncryptKeyExportOptions = {}): Promise<string> {
  return encryptKeyExportJson(JSON.stringify(sessions), passphrase, opts);
}

/**
 * Encrypt an already serialised plaintext into a key export file. For a caller that builds the JSON
 * array itself (for example page by page); the text is encrypted as given, without any check.
 *
 * @param json - The plaintext; should be a JSON array of {@link ExportedRoomKey} objects to be importable.
 * @param passphrase - The passphrase, used as its UTF-8 bytes.
 * @param opts - Optional {@link EncryptKeyExportOptions.rounds | rounds}.
 * @returns The armoured file, as {@link encryptKeyExport} returns it.
 * @throws InvalidArgumentError when `rounds` is not an integer in 1..2³²−1.
 */
export async function encryptKeyExportJson(json: string, passphrase: string, opts: EncryptKeyExportOptions = {}): Promise<string> {
  const rounds = opts.rounds ?? DEFAULT_KEY_EXPORT_ROUNDS;
  if (!Number.isInteger(rounds) || rounds < 1 || rounds > 0xffff_ffff) {
    throw new InvalidArgumentError("Key export rounds must be an integer from 1 to 4294967295.", { rounds });
  }
  const salt = randomBytes(SALT_LENGTH);
  const iv = randomBytes(IV_LENGTH);
  // Clear bit 63 of the 128-bit counter block, as the spec asks, so that implementations with a
  // 64-bit counter (Android's) never have to carry into the nonce half.
  iv[8] = iv[8]! & 0x7f;

  const keys = await deriveKeys(passphrase, salt, rounds);
  try {
    const header = Buffer.alloc(HEADER_LENGTH);
    header[0] = VERSION;
    salt.copy(header, 1);
    iv.copy(header, 1 + SALT_LENGTH);
    header.writeUInt32BE(rounds, 1 + SALT_LENGTH + IV_LENGTH);

    const cipher = createCipheriv("aes-256-ctr", keys.subarray(0, 32), iv);
    const ciphertext = Buffer.concat([cipher.update(json, "utf8"), cipher.final()]);
    const mac = createHmac("sha256", keys.subarray(32, 64)).update(header).update(ciphertext).digest();
    return armour(Buffer.concat([header, ciphertext, mac]));
  } finally {
    keys.fill(0);
  }
}

/**
 * Decrypt a key export file and parse its sessions (see {@link parseKeyExportSessions}).
 *
 * @param text - The file's text. Accepted: text before the header and after the footer, CRLF or LF
 *   line endings, any wrapping of the body (including a single line), padded or unpadded standard
 *   base64, surrounding whitespace.
 * @param passphrase - The passphrase the file was written with.
 * @returns Every session in the file, unknown algorithms included.
 * @throws KeyExportError with reason `bad_format`, `unsupported_version`, `bad_passphrase_or_mac` or `bad_json`.
 */
export async function decryptKeyExport(text: string, passphrase: string): Promise<ExportedRoomKey[]> {
  return parseKeyExportSessions(await decryptKeyExportToJson(text, passphrase));
}

/**
 * Decrypt a key export file and return its plaintext without parsing it, for a caller that parses
 * the (possibly large) JSON array itself. The plaintext is authenticated (MAC checked in constant
 * time before anything is decrypted) and valid UTF-8, but not checked to be JSON.
 *
 * @param text - The file's text; the same leniency as {@link decryptKeyExport}.
 * @param passphrase - The passphrase the file was written with.
 * @returns The decrypted plaintext.
 * @throws KeyExportError with reason `bad_format` (no armour, bad base64, too short, zero rounds),
 *   `unsupported_version` (version byte other than 1), `bad_passphrase_or_mac` (wrong passphrase
 *   or altered file) or `bad_json` (plaintext is not UTF-8).
 */
export async function decryptKeyExportToJson(text: string, passphrase: string): Promise<string> {
  const body = unarmour(text);
  if (body.length < 1) throw new KeyExportError("bad_format", "The key export file is empty.");
  if (body[0] !== VERSION) {
    throw new KeyExportError("unsupported_version", `Unsupported key export version ${body[0]}; only version 1 is known.`, { version: body[0] });
  }
  if (body.length < HEADER_LENGTH + MAC_LENGTH) {
    throw new KeyExportError("bad_format", "The key export file is too short.", { length: body.length });
  }
  const salt = body.subarray(1, 1 + SALT_LENGTH);
  const iv = body.subarray(1 + SALT_LENGTH, HEADER_LENGTH - 4);
  const rounds = body.readUInt32BE(HEADER_LENGTH - 4);
  if (rounds === 0) throw new KeyExportError("bad_format", "The key export file declares zero PBKDF2 rounds.");
  // A crafted file could declare billions of rounds and keep a thread busy for hours.
  if (rounds > MAX_IMPORT_ROUNDS) throw new KeyExportError("bad_format", `The key export file declares ${rounds} PBKDF2 rounds (more than ${MAX_IMPORT_ROUNDS}).`, { rounds });
  const ciphertext = body.subarray(HEADER_LENGTH, body.length - MAC_LENGTH);
  const mac = body.subarray(body.length - MAC_LENGTH);

  const keys = await deriveKeys(passphrase, salt, rounds);
  let plaintext: Buffer;
  try {
    const expected = createHmac("sha256", keys.subarray(32, 64))
      .update(body.subarray(0, body.length - MAC_LENGTH))
      .digest();
    if (!timingSafeEqual(expected, mac)) {
      throw new KeyExportError("bad_passphrase_or_mac", "Wrong passphrase, or the key export file was altered (MAC mismatch).");
    }
    const decipher = createDecipheriv("aes-256-ctr", keys.subarray(0, 32), iv);
    plaintext = Buffer.concat([decipher.update(ciphertext), decipher.final()]);
  } finally {
    keys.fill(0);
  }
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(plaintext);
  } catch (cause) {
    throw new KeyExportError("bad_json", "The decrypted key export is not valid UTF-8.", {}, { cause });
  } finally {
    plaintext.fill(0);
  }
}

/**
 * Parse and validate the plaintext of a key export.
 *
 * The text must be a JSON array of objects. In each object `algorithm`, `room_id`, `sender_key`,
 * `session_id` and `session_key` must be strings; `sender_claimed_keys` (default `{}`) must be an
 * object of strings, `forwarding_curve25519_key_chain` (default `[]`) an array of strings and
 * `m.shared_history`, when present, a boolean. These are the fields the Rust SDK requires and
 * defaults. Entries of unknown algorithms are returned too (see {@link MEGOLM_V1_ALGORITHM}), so the
 * caller can skip and count them; unknown fields are kept.
 *
 * @param json - The decrypted plaintext.
 * @returns The sessions, in file order.
 * @throws KeyExportError with reason `bad_json`; `details` has `index` and `field` for an invalid entry.
 */
export function parseKeyExportSessions(json: string): ExportedRoomKey[] {
  let value: unknown;
  try {
    value = JSON.parse(json);
  } catch (cause) {
    throw new KeyExportError("bad_json", "The decrypted key export is not JSON.", {}, { cause });
  }
  if (!Array.isArray(value)) {
    throw new KeyExportError("bad_json", "The decrypted key export is not a JSON array of sessions.", { type: jsonType(value) });
  }
  const out: ExportedRoomKey[] = [];
  for (let index = 0; index < value.length; index++) {
    out.push(validateSession(value[index], index));
  }
  return out;
}

// -------------------------------------------------------------------------------------------------

function validateSession(entry: unknown, index: number): ExportedRoomKey {
  const invalid = (field: string | undefined, what: string): KeyExportError =>
    new KeyExportError("bad_json", `Key export entry ${index}: ${what}.`, field === undefined ? { index } : { index, field });
  if (!isPlainObject(entry)) throw invalid(undefined, `expected an object, got ${jsonType(entry)}`);
  for (const field of ["algorithm", "room_id", "sender_key", "session_id", "session_key"] as const) {
    if (typeof entry[field] !== "string") throw invalid(field, `"${field}" must be a string`);
  }
  const claimed = entry.sender_claimed_keys ?? {};
  if (!isPlainObject(claimed) || !Object.values(claimed).every((v) => typeof v === "string")) {
    throw invalid("sender_claimed_keys", `"sender_claimed_keys" must be an object of strings`);
  }
  const chain = entry.forwarding_curve25519_key_chain ?? [];
  if (!Array.isArray(chain) || !chain.every((v) => typeof v === "string")) {
    throw invalid("forwarding_curve25519_key_chain", `"forwarding_curve25519_key_chain" must be an array of strings`);
  }
  if (entry["m.shared_history"] !== undefined && typeof entry["m.shared_history"] !== "boolean") {
    throw invalid("m.shared_history", `"m.shared_history" must be a boolean`);
  }
  return { ...entry, sender_claimed_keys: claimed, forwarding_curve25519_key_chain: chain } as unknown as ExportedRoomKey;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function jsonType(v: unknown): string {
  return v === null ? "null" : Array.isArray(v) ? "array" : typeof v;
}

/** PBKDF2-HMAC-SHA-512 → 64 bytes (AES key ‖ HMAC key), on the libuv thread pool. */
function deriveKeys(passphrase: string, salt: Uint8Array, rounds: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    pbkdf2(Buffer.from(passphrase, "utf8"), salt, rounds, 64, "sha512", (err, key) => (err ? reject(err) : resolve(key)));
  });
}

function armour(body: Buffer): string {
  const lines = [KEY_EXPORT_HEADER];
  for (let o = 0; o < body.length; o += LINE_BYTES) lines.push(body.subarray(o, o + LINE_BYTES).toString("base64"));
  lines.push(KEY_EXPORT_FOOTER, "");
  return lines.join("\n");
}

const STD_BASE64 = /^[A-Za-z0-9+/]*$/;

/** Extract and decode the body between the armour lines. */
function unarmour(text: string): Buffer {
  if (typeof text !== "string") throw new KeyExportError("bad_format", "A key export must be text.");
  const start = text.indexOf(KEY_EXPORT_HEADER);
  if (start < 0) throw new KeyExportError("bad_format", `Not a key export file: no "${KEY_EXPORT_HEADER}" line.`);
  const bodyStart = start + KEY_EXPORT_HEADER.length;
  const end = text.indexOf(KEY_EXPORT_FOOTER, bodyStart);
  if (end < 0) throw new KeyExportError("bad_format", `Truncated key export file: no "${KEY_EXPORT_FOOTER}" line.`);
  let b64 = text.slice(bodyStart, end).replace(/\s+/g, "");
  // Padding may only end the whole body (at most two `=`, total length a multiple of 4); without
  // padding, a length of 1 mod 4 cannot be base64.
  const unpadded = b64.replace(/={1,2}$/, "");
  if (unpadded.length !== b64.length && b64.length % 4 !== 0) {
    throw new KeyExportError("bad_format", "The key export body has misplaced base64 padding.");
  }
  b64 = unpadded;
  if (!STD_BASE64.test(b64) || b64.length % 4 === 1) {
    throw new KeyExportError("bad_format", "The key export body is not valid base64.");
  }
  return Buffer.from(b64, "base64");
}
