/**
 * Secret storage building blocks (Matrix client-server spec, "Secrets" → "Storage"), algorithm
 * `m.secret_storage.v1.aes-hmac-sha2`: the recovery key text format (spec Appendices,
 * "Cryptographic key representation"), PBKDF2 passphrase keys, key descriptions
 * (`m.secret_storage.key.<id>` account data) with their check MAC, and encrypting / decrypting
 * one secret.
 *
 * Pure functions: no network, no store. Binary values are written as unpadded base64 (the spec's
 * SHOULD) and read in either unpadded or padded form (the spec's MUST accept).
 *
 * @internal
 */
import { createCipheriv, createHmac, hkdfSync, pbkdf2, randomBytes, timingSafeEqual } from "node:crypto";
import { InvalidArgumentError } from "../../../src/protocol/errors.js";

/** The only secret storage algorithm the spec defines. */
export const SECRET_STORAGE_ALGORITHM_V1_AES = "m.secret_storage.v1.aes-hmac-sha2";
/** The only passphrase algorithm the spec defines. */
export const PASSPHRASE_ALGORITHM_PBKDF2 = "m.pbkdf2";

/**
 * Why secret storage input was refused:
 * - `bad_recovery_key_alphabet`: a character outside the base58 (Bitcoin) alphabet;
 * - `bad_recovery_key_length`: the decoded key is not 35 bytes;
 * - `bad_recovery_key_prefix`: the decoded key does not start with 0x8B 0x01;
 * - `bad_recovery_key_parity`: the parity byte does not match;
 * - `bad_mac`: the MAC of an encrypted secret does not match (wrong key, wrong secret name, or altered data);
 * - `bad_format`: `iv` / `ciphertext` / `mac` missing, not base64 or of the wrong length, or the plaintext is not UTF-8.
 */
export type SecretStorageErrorReason =
  | "bad_recovery_key_alphabet"
  | "bad_recovery_key_length"
  | "bad_recovery_key_prefix"
  | "bad_recovery_key_parity"
  | "bad_mac"
  | "bad_format";

/**
 * A recovery key or an encrypted secret was refused. Its code is `InvalidArgument`
 * (`M_SDK_INVALID_ARGUMENT`), so it crosses the worker boundary as an {@link InvalidArgumentError}
 * whose `details.reason` keeps the sub-reason.
 */
export class SecretStorageError extends InvalidArgumentError {
  /** The sub-reason, also in `details.reason`. */
  readonly reason: SecretStorageErrorReason;
  constructor(reason: SecretStorageErrorReason, message: string, details: Record<string, unknown> = {}) {
    super(message, { ...details, reason });
    this.reason = reason;
  }
}

/** `passphrase` of a key description (`m.pbkdf2`). */
export interface PassphraseInfo {
  algorithm: typeof PASSPHRASE_ALGORITHM_PBKDF2;
  salt: string;
  iterations: number;
  /** Optional; 256 when absent. */
  bits?: number;
}

/** Content of the `m.secret_storage.key.<key ID>` account data for `m.secret_storage.v1.aes-hmac-sha2`. */
export interface AesHmacSha2KeyDescription {
  algorithm: typeof SECRET_STORAGE_ALGORITHM_V1_AES;
  name?: string;
  passphrase?: PassphraseInfo;
  /** Base64 IV of the key check (optional in the spec). */
  iv?: string;
  /** Base64 MAC of 32 zero bytes encrypted with the key and secret name "" (optional in the spec). */
  mac?: string;
  [extra: string]: unknown;
}

/** One entry of a secret's `encrypted` map (spec `AesHmacSha2EncryptedData`). */
export interface AesHmacSha2EncryptedData {
  iv: string;
  ciphertext: string;
  mac: string;
}

const KEY_LENGTH = 32;
const IV_LENGTH = 16;
const MAC_LENGTH = 32;
const RECOVERY_PREFIX = [0x8b, 0x01] as const;
const RECOVERY_DECODED_LENGTH = 2 + KEY_LENGTH + 1;
const BASE58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
const BASE58_INDEX = new Map([...BASE58_ALPHABET].map((c, i) => [c, i] as const));
const B64 = /^[A-Za-z0-9+/]*={0,2}$/;

// ---------------------------------------------------------------------------------------------
// encodings

function toB64(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("base64").replace(/=+$/, "");
}

/** Strict base64 (padded or unpadded, standard alphabet); null if malformed. */
function fromB64(s: unknown): Buffer | null {
  if (typeof s !== "string" || !B64.test(s)) return null;
  const body = s.replace(/=+$/, "");
  if (body.length % 4 === 1) return null;
  if (s.length !== body.length && s.length % 4 !== 0) return null; // padding present but wrong
  return Buffer.from(body, "base64");
}

function base58Encode(bytes: Uint8Array): string {
  let n = 0n;
  for (const b of bytes) n = (n << 8n) | BigInt(b);
  let out = "";
  while (n > 0n) {
    out = BASE58_ALPHABET[Number(n % 58n)]! + out;
    n /= 58n;
  }
  for (const b of bytes) {
    if (b !== 0) break;
    out = "1" + out;
  }
  return out;
}

function base58Decode(s: string): Uint8Array {
  let n = 0n;
  for (const c of s) {
    const v = BASE58_INDEX.get(c);
    if (v === undefined) throw new SecretStorageError("bad_recovery_key_alphabet", "The recovery key contains a character that is not base58.");
    n = n * 58n + BigInt(v);
  }
  const body: number[] = [];
  while (n > 0n) {
    body.unshift(Number(n & 0xffn));
    n >>= 8n;
  }
  let zeros = 0;
  for (const c of s) {
    if (c !== "1") break;
    zeros++;
  }
  return Uint8Array.from([...new Array<number>(zeros).fill(0), ...body]);
}

function checkKey32(key: unknown, what = "privateKey"): Uint8Array {
  if (!(key instanceof Uint8Array) || key.length !== KEY_LENGTH) {
    throw new InvalidArgumentError(`${what} must be a ${KEY_LENGTH}-byte Uint8Array`);
  }
  return key;
}

// ---------------------------------------------------------------------------------------------
// recovery key (spec Appendices, "Cryptographic key representation")

/**
 * The text form of a 32-byte key: 0x8B 0x01 ‖ key ‖ parity (XOR of all previous bytes), base58
 * (Bitcoin alphabet), in groups of four characters separated by spaces.
 */
export function encodeRecoveryKey(privateKey: Uint8Array): string {
  checkKey32(privateKey);
  const bytes = new Uint8Array(RECOVERY_DECODED_LENGTH);
  bytes.set(RECOVERY_PREFIX, 0);
  bytes.set(privateKey, 2);
  let parity = 0;
  for (let i = 0; i < RECOVERY_DECODED_LENGTH - 1; i++) parity ^= bytes[i]!;
  bytes[RECOVERY_DECODED_LENGTH - 1] = parity;
  const text = base58Encode(bytes);
  bytes.fill(0);
  return text.match(/.{1,4}/g)!.join(" ");
}

/** A new random secret storage key and its text form. */
export function generateRecoveryKey(): { privateKey: Uint8Array; encoded: string } {
  const privateKey = new Uint8Array(randomBytes(KEY_LENGTH));
  return { privateKey, encoded: encodeRecoveryKey(privateKey) };
}

/**
 * The 32-byte key of a recovery key text. Whitespace is ignored. Throws a
 * {@link SecretStorageError} (`bad_recovery_key_*`) when the text is not a valid key.
 */
export function decodeRecoveryKey(text: string): Uint8Array {
  if (typeof text !== "string") throw new InvalidArgumentError("the recovery key must be a string");
  const bytes = base58Decode(text.replace(/\s+/g, ""));
  try {
    if (bytes.length !== RECOVERY_DECODED_LENGTH) {
      throw new SecretStorageError("bad_recovery_key_length", `The recovery key decodes to ${bytes.length} bytes, not ${RECOVERY_DECODED_LENGTH}.`);
    }
    if (bytes[0] !== RECOVERY_PREFIX[0] || bytes[1] !== RECOVERY_PREFIX[1]) {
      throw new SecretStorageError("bad_recovery_key_prefix", "The recovery key has the wrong prefix.");
    }
    let parity = 0;
    for (const b of bytes) parity ^= b; // XOR of all bytes including the parity byte is 0 when valid
    if (parity !== 0) throw new SecretStorageError("bad_recovery_key_parity", "The recovery key's parity byte does not match (mistyped?).");
    return bytes.slice(2, 2 + KEY_LENGTH);
  } finally {
    bytes.fill(0);
  }
}

// ---------------------------------------------------------------------------------------------
// passphrase (spec "Deriving keys from passphrases", m.pbkdf2)

/**
 * PBKDF2-HMAC-SHA-512 of `passphrase` with `salt` (both as UTF-8 bytes, as the other
 * implementations do), `iterations` rounds, `bits` bits (256 by default).
 */
export function deriveKeyFromPassphrase(passphrase: string, salt: string, iterations: number, bits = 256): Promise<Uint8Array> {
  if (typeof passphrase !== "string") return Promise.reject(new InvalidArgumentError("passphrase must be a string"));
  if (typeof salt !== "string") return Promise.reject(new InvalidArgumentError("salt must be a string"));
  if (!Number.isSafeInteger(iterations) || iterations < 1) return Promise.reject(new InvalidArgumentError("iterations must be a positive integer", { iterations }));
  if (!Number.isSafeInteger(bits) || bits < 8 || bits % 8 !== 0) return Promise.reject(new InvalidArgumentError("bits must be a positive multiple of 8", { bits }));
  return new Promise((resolve, reject) => {
    pbkdf2(Buffer.from(passphrase, "utf8"), Buffer.from(salt, "utf8"), iterations, bits / 8, "sha512", (err, key) => {
      if (err) reject(new InvalidArgumentError(`PBKDF2 failed: ${err.message}`));
      else resolve(new Uint8Array(key.buffer, key.byteOffset, key.byteLength));
    });
  });
}

// ---------------------------------------------------------------------------------------------
// m.secret_storage.v1.aes-hmac-sha2

/** HKDF-SHA-256(key, salt = 32 zero bytes, info = name) → AES-256 key ‖ HMAC-SHA-256 key. */
function deriveKeys(privateKey: Uint8Array, name: string): { aesKey: Buffer; macKey: Buffer } {
  const okm = Buffer.from(hkdfSync("sha256", privateKey, Buffer.alloc(32), Buffer.from(name, "utf8"), 64));
  return { aesKey: okm.subarray(0, 32), macKey: okm.subarray(32, 64) };
}

/** A random IV with bit 63 cleared (spec; avoids AES-CTR counter-width differences). */
function newIv(): Buffer {
  const iv = randomBytes(IV_LENGTH);
  iv[8]! &= 0x7f;
  return iv;
}

function aesCtr(aesKey: Buffer, iv: Uint8Array, data: Uint8Array): Buffer {
  const cipher = createCipheriv("aes-256-ctr", aesKey, iv);
  return Buffer.concat([cipher.update(data), cipher.final()]);
}

function hmac(macKey: Buffer, data: Uint8Array): Buffer {
  return createHmac("sha256", macKey).update(data).digest();
}

function encryptBytes(plaintext: Uint8Array, privateKey: Uint8Array, name: string, iv: Buffer): { iv: Buffer; ciphertext: Buffer; mac: Buffer } {
  const { aesKey, macKey } = deriveKeys(privateKey, name);
  try {
    const ciphertext = aesCtr(aesKey, iv, plaintext);
    return { iv, ciphertext, mac: hmac(macKey, ciphertext) };
  } finally {
    aesKey.fill(0);
    macKey.fill(0);
  }
}

/**
 * Encrypt `secret` (UTF-8) for the secret storage key `privateKey` under the secret name `name`
 * (the account data event type, e.g. `m.cross_signing.master`). All fields are unpadded base64.
 */
export function encryptSecret(secret: string, privateKey: Uint8Array, name: string): AesHmacSha2EncryptedData {
  if (typeof secret !== "string") throw new InvalidArgumentError("secret must be a string");
  if (typeof name !== "string") throw new InvalidArgumentError("name must be a string");
  checkKey32(privateKey);
  const { iv, ciphertext, mac } = encryptBytes(Buffer.from(secret, "utf8"), privateKey, name, newIv());
  return { iv: toB64(iv), ciphertext: toB64(ciphertext), mac: toB64(mac) };
}

/**
 * Decrypt an `AesHmacSha2EncryptedData` made for `privateKey` and secret name `name`. The MAC is
 * checked (in constant time) before decrypting: a wrong key or name, or altered data, throws a
 * {@link SecretStorageError} `bad_mac`; malformed fields throw `bad_format`.
 */
export function decryptSecret(data: AesHmacSha2EncryptedData, privateKey: Uint8Array, name: string): string {
  if (typeof name !== "string") throw new InvalidArgumentError("name must be a string");
  checkKey32(privateKey);
  const d = (typeof data === "object" && data !== null ? data : {}) as Partial<Record<keyof AesHmacSha2EncryptedData, unknown>>;
  const iv = fromB64(d.iv);
  const ciphertext = fromB64(d.ciphertext);
  const mac = fromB64(d.mac);
  if (!iv || iv.length !== IV_LENGTH) throw new SecretStorageError("bad_format", `The encrypted secret ${name} has no valid 16-byte iv.`, { name });
  if (!ciphertext) throw new SecretStorageError("bad_format", `The encrypted secret ${name} has no valid ciphertext.`, { name });
  if (!mac || mac.length !== MAC_LENGTH) throw new SecretStorageError("bad_format", `The encrypted secret ${name} has no valid 32-byte mac.`, { name });
  const { aesKey, macKey } = deriveKeys(privateKey, name);
  try {
    if (!timingSafeEqual(hmac(macKey, ciphertext), mac)) {
      throw new SecretStorageError("bad_mac", `Cannot decrypt secret ${name}: bad MAC (wrong key, or altered data).`, { name });
    }
    const plain = aesCtr(aesKey, iv, ciphertext);
    try {
      return new TextDecoder("utf-8", { fatal: true }).decode(plain);
    } catch {
      throw new SecretStorageError("bad_format", `The secret ${name} is not UTF-8.`, { name });
    } finally {
      plain.fill(0);
    }
  } finally {
    aesKey.fill(0);
    macKey.fill(0);
  }
}

/**
 * The `m.secret_storage.key.<key ID>` account data content for `privateKey`: the algorithm, the
 * key check (`iv`, and `mac` of 32 zero bytes encrypted with secret name ""), and optionally a
 * `name` and the `m.pbkdf2` parameters the key was derived with.
 */
export function makeKeyDescription(
  privateKey: Uint8Array,
  opts: { name?: string; passphrase?: { salt: string; iterations: number; bits?: number } } = {},
): AesHmacSha2KeyDescription {
  checkKey32(privateKey);
  const { iv, mac } = encryptBytes(new Uint8Array(KEY_LENGTH), privateKey, "", newIv());
  const desc: AesHmacSha2KeyDescription = { algorithm: SECRET_STORAGE_ALGORITHM_V1_AES };
  if (opts.name !== undefined) desc.name = opts.name;
  if (opts.passphrase) {
    const { salt, iterations, bits } = opts.passphrase;
    if (typeof salt !== "string" || salt === "") throw new InvalidArgumentError("passphrase.salt must be a non-empty string");
    if (!Number.isSafeInteger(iterations) || iterations < 1) throw new InvalidArgumentError("passphrase.iterations must be a positive integer");
    desc.passphrase = { algorithm: PASSPHRASE_ALGORITHM_PBKDF2, salt, iterations, ...(bits !== undefined ? { bits } : {}) };
  }
  desc.iv = toB64(iv);
  desc.mac = toB64(mac);
  return desc;
}

/**
 * Whether `privateKey` is the key `description` describes: recompute the MAC of 32 zero bytes with
 * the stored IV and compare in constant time. False for another algorithm or a malformed
 * `iv`/`mac`. As the spec requires, a description without `iv` and `mac` accepts any key.
 */
export function checkKey(privateKey: Uint8Array, description: AesHmacSha2KeyDescription | Record<string, unknown>): boolean {
  checkKey32(privateKey);
  if (typeof description !== "object" || description === null) return false;
  if (description.algorithm !== SECRET_STORAGE_ALGORITHM_V1_AES) return false;
  if (description.iv === undefined && description.mac === undefined) return true;
  const iv = fromB64(description.iv);
  const mac = fromB64(description.mac);
  if (!iv || iv.length !== IV_LENGTH || !mac || mac.length !== MAC_LENGTH) return false;
  const expected = encryptBytes(new Uint8Array(KEY_LENGTH), privateKey, "", iv).mac;
  return timingSafeEqual(expected, mac);
}

/** A new random key ID (32 alphanumeric characters, like matrix-rust-sdk's). */
export function newSecretStorageKeyId(): string {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  let id = "";
  while (id.length < 32) {
    for (const b of randomBytes(48)) {
      if (b < 248 && id.length < 32) id += alphabet[b % 62]!; // 248 = 4 × 62: unbiased
    }
  }
  return id;
}

/**
 * The secret storage private key that a recovery key or passphrase opens, checked against the
 * key description (`m.secret_storage.key.<id>` content). Throws a {@link SecretStorageError}:
 * `bad_recovery_key_*` for a malformed recovery key, `bad_format` for a passphrase on a key
 * without `m.pbkdf2` parameters, `bad_mac` when the key does not match the description.
 */
export async function openSecretStorageKey(description: Record<string, unknown>, secret: { recoveryKey?: string; passphrase?: string }): Promise<Uint8Array> {
  let privateKey: Uint8Array;
  if (secret.recoveryKey) privateKey = decodeRecoveryKey(secret.recoveryKey);
  else if (secret.passphrase) {
    const pp = typeof description.passphrase === "object" && description.passphrase !== null ? (description.passphrase as Record<string, unknown>) : null;
    if (!pp || typeof pp.salt !== "string" || typeof pp.iterations !== "number") throw new SecretStorageError("bad_format", "this secret storage key has no passphrase");
    privateKey = await deriveKeyFromPassphrase(secret.passphrase, pp.salt, pp.iterations, typeof pp.bits === "number" ? pp.bits : 256);
  } else throw new InvalidArgumentError("a recovery key or a passphrase is needed");
  if (!checkKey(privateKey, description)) {
    privateKey.fill(0);
    throw new SecretStorageError("bad_mac", "the recovery key or passphrase does not match the secret storage key");
  }
  return privateKey;
}

/** Decrypt the secret `name` (account data content `{ encrypted: { <keyId>: … } }`) stored under `keyId`; `bad_format` when not stored under that key. */
export function decryptStoredSecret(content: unknown, keyId: string, privateKey: Uint8Array, name: string): string {
  const enc = typeof content === "object" && content !== null ? (content as { encrypted?: Record<string, unknown> }).encrypted?.[keyId] : undefined;
  if (typeof enc !== "object" || enc === null) throw new SecretStorageError("bad_format", `secret ${name} is not stored under key ${keyId}`, { name });
  return decryptSecret(enc as AesHmacSha2EncryptedData, privateKey, name);
}
