/**
 * Encrypted attachments (client-server API, "Sending encrypted attachments"), version `v2`.
 *
 * A file is encrypted with AES-256-CTR under a fresh random 256-bit key. The 16-byte counter block
 * starts as 8 random bytes followed by 8 zero bytes, so the low 64 bits act as a block counter that
 * can never wrap into the random half. The SHA-256 of the ciphertext is published next to the key,
 * and the receiver checks it before decrypting.
 *
 * The metadata travels in the event as an `EncryptedFile` object (`file` / `thumbnail_file` of an
 * `m.room.message`); {@link encryptAttachment} returns everything but the `url`, which the caller
 * adds after uploading the ciphertext.
 *
 * Everything here is synchronous and pure (plus randomness). For large files, call it from the
 * crypto worker rather than the main thread.
 *
 * @packageDocumentation
 */

import { createCipheriv, createDecipheriv, createHash, randomBytes, timingSafeEqual } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { Transform, type Readable, type Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { AttachmentError } from "../protocol/errors.js";

/** The only attachment encryption version written and accepted. */
export const ATTACHMENT_VERSION = "v2";

/** The JSON Web Key of an encrypted attachment (spec `JWK`). */
export interface EncryptedFileKey {
  /** Key type; always `"oct"`. */
  kty: string;
  /** Algorithm; always `"A256CTR"`. */
  alg: string;
  /** Extractable flag of WebCrypto; always `true`. */
  ext: boolean;
  /** The 256-bit key, unpadded base64url. */
  k: string;
  /** Operations the key may be used for; must include `"decrypt"`. Written as `["encrypt", "decrypt"]`. */
  key_ops: string[];
}

/** The decryption metadata of an encrypted attachment (spec `EncryptedFile`, with `url` optional). */
export interface EncryptedFileInfo {
  /** Version of the scheme; `"v2"`. */
  v: string;
  /** The AES-256-CTR key. */
  key: EncryptedFileKey;
  /** The 16-byte initial counter block, unpadded standard base64. */
  iv: string;
  /** Hashes of the ciphertext by algorithm; `sha256` (unpadded standard base64) is required. */
  hashes: { sha256: string; [algorithm: string]: string };
  /** `mxc://` URI of the uploaded ciphertext; added by the caller after uploading. */
  url?: string;
}

/** What {@link encryptAttachment} returns. */
export interface EncryptedAttachmentResult {
  /** The ciphertext, as long as the plaintext; upload this. */
  data: Uint8Array;
  /** The metadata to put (with the upload's `url`) into the event's `file` field. */
  info: EncryptedFileInfo;
}

/**
 * Encrypt an attachment.
 *
 * @param data - The plaintext bytes (may be empty).
 * @returns The ciphertext and its `v2` metadata: a random key (`k`, unpadded base64url), the IV
 *   (8 random bytes then 8 zero bytes, unpadded standard base64) and the SHA-256 of the ciphertext
 *   (unpadded standard base64). The caller adds `url`.
 */
export function encryptAttachment(data: Uint8Array): EncryptedAttachmentResult {
  const key = randomBytes(32);
  const iv = Buffer.alloc(16);
  randomBytes(8).copy(iv, 0);
  try {
    const cipher = createCipheriv("aes-256-ctr", key, iv);
    const ciphertext = Buffer.concat([cipher.update(data), cipher.final()]);
    const sha256 = createHash("sha256").update(ciphertext).digest();
    return {
      data: owned(ciphertext),
      info: makeInfo(key, iv, sha256),
    };
  } finally {
    key.fill(0);
  }
}

/**
 * Decrypt an attachment after checking its metadata and hash.
 *
 * Checks, in order: `v` is `"v2"` (`v1` and a missing `v` are refused, as the Rust SDK does);
 * `key.alg` is `A256CTR`; `key.kty` is `oct`, `key.key_ops` includes `"decrypt"` and `key.k` is
 * 32 bytes; `iv` is 16 bytes; `hashes.sha256` is 32 bytes and equals (compared in constant time) the
 * SHA-256 of `data`. The full 16-byte IV is the initial counter block. `k`, `iv` and the hash may be
 * standard or URL-safe base64, padded or not.
 *
 * @param data - The downloaded ciphertext.
 * @param info - The event's `EncryptedFile` object (`url` is ignored). Validated at run time, so an
 *   object straight from an event is fine.
 * @returns The plaintext.
 * @throws AttachmentError with reason `unsupported_version`, `unsupported_algorithm`, `bad_key`,
 *   `bad_format` or `hash_mismatch`.
 */
export function decryptAttachment(data: Uint8Array, info: EncryptedFileInfo): Uint8Array {
  const { key, iv, sha256: expected } = parseEncryptedFileInfo(info);
  try {
    const actual = createHash("sha256").update(data).digest();
    if (!timingSafeEqual(actual, expected)) {
      throw new AttachmentError("hash_mismatch", "The attachment's SHA-256 does not match hashes.sha256; the file was altered or truncated.");
    }
    const decipher = createDecipheriv("aes-256-ctr", key, iv);
    const plaintext = Buffer.concat([decipher.update(data), decipher.final()]);
    return owned(plaintext);
  } finally {
    key.fill(0);
  }
}

/**
 * Validate an `EncryptedFile` object (from an untrusted event) and decode its key, IV and hash.
 * @throws AttachmentError with reason `unsupported_version`, `unsupported_algorithm`, `bad_key` or `bad_format`.
 */
export function parseEncryptedFileInfo(info: unknown): { key: Buffer; iv: Buffer; sha256: Buffer } {
  const i = info;
  if (!isObject(i)) throw new AttachmentError("bad_format", "Attachment info must be an object.");
  if (i.v !== ATTACHMENT_VERSION) {
    throw new AttachmentError("unsupported_version", `Unsupported attachment encryption version ${JSON.stringify(i.v)}; only "v2" is accepted.`, {
      version: typeof i.v === "string" ? i.v : null,
    });
  }
  const jwk = i.key;
  if (!isObject(jwk)) throw new AttachmentError("bad_key", "Attachment info has no key.");
  if (jwk.alg !== "A256CTR") {
    throw new AttachmentError("unsupported_algorithm", `Unsupported attachment key algorithm ${JSON.stringify(jwk.alg)}; expected "A256CTR".`, {
      algorithm: typeof jwk.alg === "string" ? jwk.alg : null,
    });
  }
  if (jwk.kty !== "oct") throw new AttachmentError("bad_key", `Attachment key type must be "oct".`);
  if (!Array.isArray(jwk.key_ops) || !jwk.key_ops.includes("decrypt")) {
    throw new AttachmentError("bad_key", `Attachment key_ops does not allow "decrypt".`);
  }
  const key = decodeBase64Any(jwk.k);
  if (key === undefined || key.length !== 32) throw new AttachmentError("bad_key", "Attachment key must be 32 bytes of base64.");
  const iv = decodeBase64Any(i.iv);
  if (iv === undefined || iv.length !== 16) throw new AttachmentError("bad_format", "Attachment iv must be 16 bytes of base64.");
  const hashes = i.hashes;
  const sha256 = isObject(hashes) ? decodeBase64Any(hashes.sha256) : undefined;
  if (sha256 === undefined || sha256.length !== 32) {
    throw new AttachmentError("bad_format", "Attachment hashes.sha256 must be 32 bytes of base64.");
  }
  return { key, iv, sha256 };
}

/**
 * Encrypt a stream of any size into `outPath` (mode 0600) with constant memory.
 * @returns The `v2` metadata (without `url`) and the ciphertext size.
 */
export async function encryptAttachmentToFile(input: Readable | AsyncIterable<Uint8Array>, outPath: string): Promise<{ info: EncryptedFileInfo; size: number }> {
  const key = randomBytes(32);
  const iv = Buffer.alloc(16);
  randomBytes(8).copy(iv, 0);
  const hash = createHash("sha256");
  let size = 0;
  const tap = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      hash.update(chunk);
      size += chunk.length;
      cb(null, chunk);
    },
  });
  try {
    await pipeline(input, createCipheriv("aes-256-ctr", key, iv), tap, createWriteStream(outPath, { mode: 0o600 }));
    return { info: makeInfo(key, iv, hash.digest()), size };
  } finally {
    key.fill(0);
  }
}

/**
 * Check the SHA-256 of the encrypted file at `encryptedPath` against `info` first, then decrypt it
 * into `output`: no plaintext is produced before the whole ciphertext is authenticated. Constant memory.
 * @throws AttachmentError (`hash_mismatch` and the metadata reasons of {@link parseEncryptedFileInfo}).
 */
export async function decryptAttachmentFile(encryptedPath: string, info: unknown, output: Writable): Promise<void> {
  const { key, iv, sha256 } = parseEncryptedFileInfo(info);
  try {
    const hash = createHash("sha256");
    for await (const chunk of createReadStream(encryptedPath)) hash.update(chunk as Buffer);
    if (!timingSafeEqual(hash.digest(), sha256)) {
      throw new AttachmentError("hash_mismatch", "The attachment's SHA-256 does not match hashes.sha256; the file was altered or truncated.");
    }
    await pipeline(createReadStream(encryptedPath), createDecipheriv("aes-256-ctr", key, iv), output);
  } finally {
    key.fill(0);
  }
}

function makeInfo(key: Buffer, iv: Buffer, sha256: Buffer): EncryptedFileInfo {
  return {
    v: ATTACHMENT_VERSION,
    key: { kty: "oct", alg: "A256CTR", ext: true, k: key.toString("base64url"), key_ops: ["encrypt", "decrypt"] },
    iv: unpadded(iv.toString("base64")),
    hashes: { sha256: unpadded(sha256.toString("base64")) },
  };
}

// -------------------------------------------------------------------------------------------------

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/**
 * A plain `Uint8Array` that owns its whole `ArrayBuffer` (so it can be transferred to another thread
 * and exposes no unrelated bytes): small Buffers are slices of Node's shared pool and get copied.
 */
function owned(buf: Buffer): Uint8Array {
  if (buf.byteOffset === 0 && buf.byteLength === buf.buffer.byteLength) return new Uint8Array(buf.buffer, 0, buf.byteLength);
  return new Uint8Array(buf);
}

function unpadded(b64: string): string {
  return b64.replace(/=+$/, "");
}

const BASE64_ANY = /^[A-Za-z0-9+/\-_]*$/;

/** Decode standard or URL-safe base64, padded or not; `undefined` when not base64. */
function decodeBase64Any(v: unknown): Buffer | undefined {
  if (typeof v !== "string") return undefined;
  const body = v.replace(/={1,2}$/, "");
  if (body.length !== v.length && v.length % 4 !== 0) return undefined;
  if (!BASE64_ANY.test(body) || body.length % 4 === 1) return undefined;
  return Buffer.from(body.replace(/-/g, "+").replace(/_/g, "/"), "base64");
}
