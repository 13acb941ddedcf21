/**
 * The server-side key backup algorithm `m.megolm_backup.v1.curve25519-aes-sha2` (client-server
 * spec, "Server-side key backups"): a Curve25519 key pair, session data encrypted to its public
 * key (ephemeral ECDH, HKDF-SHA-256, AES-256-CBC, the spec's truncated HMAC — libolm's `PkEncryption`
 * / `PkDecryption` implement exactly this), and the `auth_data` (public key, signatures) with
 * its signature checks.
 *
 * Pure functions over libolm: no network, no store.
 * @internal
 */
import { randomBytes } from "node:crypto";
import { InvalidArgumentError } from "../../../src/protocol/errors.js";
import { canonicalJson, signablePart } from "../canonicalJson.js";
import { isObj, isStr, type Json, type OlmModule } from "../EngineContext.js";
import { verifyJsonSignature } from "../identities/crossSigning.js";

/** The only backup algorithm the spec defines. */
export const BACKUP_ALGORITHM_V1 = "m.megolm_backup.v1.curve25519-aes-sha2";
/** The secret name of the backup private key in secret storage (and in `m.secret.send`). */
export const BACKUP_SECRET_NAME = "m.megolm_backup.v1";

/**
 * Why backup input was refused:
 * - `bad_key`: the private key is not 32 bytes (or not base64), or does not match the version's public key;
 * - `bad_mac`: session data whose MAC does not match (wrong key, or altered data);
 * - `bad_format`: malformed `auth_data`, session data or decrypted plaintext;
 * - `unsupported_algorithm`: a backup version with another algorithm;
 * - `untrusted`: a version neither signed by our master key or one of our verified devices, nor matching the key we hold.
 */
export type BackupErrorReason = "bad_key" | "bad_mac" | "bad_format" | "unsupported_algorithm" | "untrusted";

/** Backup input was refused. Its code is `InvalidArgument`; `details.reason` keeps the sub-reason across the worker boundary. */
export class KeyBackupError extends InvalidArgumentError {
  /** The sub-reason, also in `details.reason`. */
  readonly reason: BackupErrorReason;
  constructor(reason: BackupErrorReason, message: string, details: Record<string, unknown> = {}) {
    super(message, { ...details, reason });
    this.reason = reason;
  }
}

/** Encrypted session data (`session_data` of a `KeyBackupData`). */
export interface EncryptedSessionData {
  ephemeral: string;
  ciphertext: string;
  mac: string;
}

/** A new random backup private key (32 bytes). */
export function generateBackupKey(): Uint8Array {
  return new Uint8Array(randomBytes(32));
}

/** The Curve25519 public key (unpadded base64) of a 32-byte backup private key; `bad_key` when malformed. */
export function backupPublicKey(olm: OlmModule, privateKey: Uint8Array): string {
  if (!(privateKey instanceof Uint8Array) || privateKey.length !== 32) throw new KeyBackupError("bad_key", "a backup private key is 32 bytes");
  const pk = new olm.PkDecryption();
  try {
    return pk.init_with_private_key(privateKey);
  } finally {
    pk.free();
  }
}

/** Decode a base64 (padded or not) backup private key, as `m.megolm_backup.v1` secrets carry it; `bad_key` when malformed. */
export function backupKeyFromBase64(text: unknown): Uint8Array {
  if (!isStr(text) || !/^[A-Za-z0-9+/]{43}=?$/.test(text)) throw new KeyBackupError("bad_key", "the backup key is not 32 bytes of base64");
  return new Uint8Array(Buffer.from(text, "base64"));
}

/** Unpadded base64 of a backup private key (the `m.megolm_backup.v1` secret). */
export function backupKeyToBase64(privateKey: Uint8Array): string {
  return Buffer.from(privateKey).toString("base64").replace(/=+$/, "");
}

/** Encrypt `plaintext` (a JSON object: the spec's `BackedUpSessionData`) to the backup public key. */
export function encryptSessionData(olm: OlmModule, publicKey: string, plaintext: Json): EncryptedSessionData {
  const pk = new olm.PkEncryption();
  try {
    pk.set_recipient_key(publicKey);
    const { ephemeral, ciphertext, mac } = pk.encrypt(JSON.stringify(plaintext));
    return { ephemeral, ciphertext, mac };
  } finally {
    pk.free();
  }
}

/**
 * Decrypt `session_data` with the backup private key. A MAC mismatch is `bad_mac`; malformed data
 * or a plaintext that is not a JSON object is `bad_format`.
 */
export function decryptSessionData(olm: OlmModule, privateKey: Uint8Array, data: unknown): Json {
  if (!isObj(data) || !isStr(data.ephemeral) || !isStr(data.ciphertext) || !isStr(data.mac)) {
    throw new KeyBackupError("bad_format", "session_data needs ephemeral, ciphertext and mac");
  }
  const pk = new olm.PkDecryption();
  let text: string;
  try {
    pk.init_with_private_key(privateKey);
    try {
      text = pk.decrypt(data.ephemeral, data.mac, data.ciphertext);
    } catch (e) {
      const bad = String(e).includes("BAD_MESSAGE_MAC");
      throw new KeyBackupError(bad ? "bad_mac" : "bad_format", `cannot decrypt session data (${bad ? "bad MAC: wrong key or altered data" : "malformed"})`);
    }
  } finally {
    pk.free();
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new KeyBackupError("bad_format", "decrypted session data is not JSON");
  }
  if (!isObj(parsed)) throw new KeyBackupError("bad_format", "decrypted session data is not a JSON object");
  return parsed;
}

/** The `public_key` of a version's `auth_data`, checking the algorithm; throws `unsupported_algorithm` / `bad_format`. */
export function versionPublicKey(info: unknown): string {
  if (!isObj(info)) throw new KeyBackupError("bad_format", "a backup version is a JSON object");
  if (info.algorithm !== BACKUP_ALGORITHM_V1) throw new KeyBackupError("unsupported_algorithm", `unsupported backup algorithm ${String(info.algorithm)}`, { algorithm: String(info.algorithm) });
  const auth = info.auth_data;
  if (!isObj(auth) || !isStr(auth.public_key) || !/^[A-Za-z0-9+/]{43}=?$/.test(auth.public_key)) throw new KeyBackupError("bad_format", "auth_data has no valid public_key");
  return auth.public_key;
}

/** The signable bytes of `auth_data` (without `signatures` and `unsigned`): what the signatures cover. */
export function authDataSignable(authData: Json): string {
  return canonicalJson(signablePart(authData));
}

/** Whether `authData` carries a valid signature `signatures[userId]["ed25519:" + keyId]` by `publicKey`. */
export function authDataSignedBy(olm: OlmModule, authData: unknown, userId: string, keyId: string, publicKey: string): boolean {
  return verifyJsonSignature(olm, authData, userId, keyId, publicKey);
}
