/**
 * Typed errors shared by both threads.
 *
 * Every error has a stable `code` string and a `Symbol.for` brand, so `isSdkError()` and the
 * per-class `instanceof` checks keep working across two copies of the package and across the
 * worker boundary (see {@link serializeError} / {@link deserializeError}).
 *
 * @packageDocumentation
 */

import type { DeviceInfo, TrustableDevice } from "./api.js";

const BRAND = Symbol.for("matrix-e2ee-worker-sdk.error");

/** Stable error codes. Programs should switch on these, not on messages. */
export const ErrorCode = {
  /** A homeserver answered with an error status (see {@link MatrixHttpError}). */
  Http: "M_SDK_HTTP",
  /** The network failed (connection reset, DNS, timeout) before an HTTP answer arrived. */
  Network: "M_SDK_NETWORK",
  /** The crypto worker died while a call was pending; the call may be retried after restart. */
  WorkerCrashed: "M_SDK_WORKER_CRASHED",
  /** The crypto worker and the main thread disagree on the protocol version. */
  WorkerProtocol: "M_SDK_WORKER_PROTOCOL",
  /** The crypto store is opened by another process or connection. */
  StoreLocked: "M_SDK_STORE_LOCKED",
  /** The crypto store failed (I/O, corruption, migration). */
  Store: "M_SDK_STORE",
  /** Encryption is disabled for this client, or the operation needs a logged-in account. */
  EncryptionDisabled: "M_SDK_ENCRYPTION_DISABLED",
  /** Sending was refused because some devices in the room are neither verified, ignored nor blacklisted. */
  UnknownDevices: "M_SDK_UNKNOWN_DEVICES",
  /** A device's keys are unknown, so its trust flags cannot be set. */
  UnknownDeviceKeys: "M_SDK_UNKNOWN_DEVICE_KEYS",
  /** The caller passed an invalid argument or configuration. */
  InvalidArgument: "M_SDK_INVALID_ARGUMENT",
  /** The room uses an encryption algorithm this SDK does not support; nothing was sent. */
  UnsupportedAlgorithm: "M_SDK_UNSUPPORTED_ALGORITHM",
  /** The client was closed. */
  Closed: "M_SDK_CLOSED",
  /**
   * A sync token commit named a batch the crypto worker does not have (it restarted since the
   * sync's crypto state was staged); the client processes that sync again (see {@link SyncBatchUnknownError}).
   */
  SyncBatchUnknown: "M_SDK_SYNC_BATCH_UNKNOWN",
  /** An invariant of the engine was broken (a bug). */
  Internal: "M_SDK_INTERNAL",
  /** A Megolm key export file could not be read or written (see {@link KeyExportError}). */
  KeyExport: "M_SDK_KEY_EXPORT",
  /** An encrypted attachment could not be decrypted or its metadata is invalid (see {@link AttachmentError}). */
  Attachment: "M_SDK_ATTACHMENT",
  /** An interactive verification was cancelled by either side or timed out (see {@link VerificationCancelledError}). */
  VerificationCancelled: "M_SDK_VERIFICATION_CANCELLED",
  /** A user we verified changed their cross-signing identity; nothing is sent to their room until it is acknowledged or re-verified (see {@link VerifiedUserChangedIdentityError}). */
  VerifiedUserChangedIdentity: "M_SDK_VERIFIED_USER_CHANGED_IDENTITY",
} as const;

/** One of the {@link ErrorCode} values. */
export type ErrorCodeValue = (typeof ErrorCode)[keyof typeof ErrorCode];

/** Base class of every error this SDK throws. */
export class MatrixSdkError extends Error {
  /** Stable machine-readable code. */
  readonly code: ErrorCodeValue;
  /** Extra structured, JSON-serialisable data (never secrets). */
  readonly details: Record<string, unknown>;

  constructor(code: ErrorCodeValue, message: string, details: Record<string, unknown> = {}, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
    this.details = details;
    Object.defineProperty(this, BRAND, { value: true });
  }

  /** True for any error of this SDK, even one created by another copy of the package. */
  static isSdkError(err: unknown): err is MatrixSdkError {
    return typeof err === "object" && err !== null && (err as Record<symbol, unknown>)[BRAND] === true;
  }
}

/** The homeserver answered with a non-2xx status. */
export class MatrixHttpError extends MatrixSdkError {
  /** HTTP status code. */
  readonly status: number;
  /** Matrix `errcode` (for example `M_LIMIT_EXCEEDED`), when the body had one. */
  readonly errcode: string | undefined;
  /** Server-suggested delay before retrying, from `retry_after_ms` or `Retry-After`. */
  readonly retryAfterMs: number | undefined;

  constructor(status: number, errcode: string | undefined, message: string, retryAfterMs?: number, details: Record<string, unknown> = {}) {
    super(ErrorCode.Http, message, { ...details, status, errcode, retryAfterMs });
    this.status = status;
    this.errcode = errcode;
    this.retryAfterMs = retryAfterMs;
  }

  /** True for 429 / `M_LIMIT_EXCEEDED`. */
  isRateLimitError(): boolean {
    return this.status === 429 || this.errcode === "M_LIMIT_EXCEEDED";
  }
}

/** The network failed before an HTTP answer arrived. */
export class NetworkError extends MatrixSdkError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCode.Network, message, {}, options);
  }
}

/** The crypto worker died while this call was pending. State committed before the crash is intact. */
export class CryptoWorkerCrashedError extends MatrixSdkError {
  constructor(message: string, details: Record<string, unknown> = {}) {
    super(ErrorCode.WorkerCrashed, message, details);
  }
}

/** The crypto store is in use by another process. Use one database per process. */
export class StoreLockedError extends MatrixSdkError {
  /** Path of the locked database file. */
  readonly path: string;
  constructor(path: string) {
    super(
      ErrorCode.StoreLocked,
      `The crypto store ${path} is in use by another process. Use one database per process (set encryptionConf.storeConf.dbPath or dbName).`,
      { path },
    );
    this.path = path;
  }
}

/** The crypto store failed. */
export class StoreError extends MatrixSdkError {
  constructor(message: string, details: Record<string, unknown> = {}) {
    super(ErrorCode.Store, message, details);
  }
}

/**
 * Encryption is off, or no account is loaded yet. Also what a send or file upload to an encrypted
 * room rejects with when the client's encryption is off: nothing is sent in plaintext (the room's
 * state is checked with the server first when the client has not synced it recently).
 */
export class EncryptionDisabledError extends MatrixSdkError {
  constructor(message = "Encryption is not enabled for this client.") {
    super(ErrorCode.EncryptionDisabled, message);
  }
}

/** An argument or option was invalid. */
export class InvalidArgumentError extends MatrixSdkError {
  constructor(message: string, details: Record<string, unknown> = {}) {
    super(ErrorCode.InvalidArgument, message, details);
  }
}

/** The room's encryption algorithm is not supported; the message was not sent (never in plaintext). */
export class UnsupportedAlgorithmError extends MatrixSdkError {
  constructor(roomId: string, algorithm: unknown) {
    super(ErrorCode.UnsupportedAlgorithm, `Room ${roomId} uses unsupported encryption algorithm ${String(algorithm)}; refusing to send.`, {
      roomId,
      algorithm: String(algorithm),
    });
  }
}

/** Summary of a device as carried by {@link UnknownDevicesError} across the worker boundary. */
export interface UnknownDeviceInfo {
  userId: string;
  deviceId: string;
}

/**
 * Sending to an encrypted room with device verification on was refused because some recipient
 * devices are neither verified, ignored nor blacklisted. Nothing was sent or shared.
 */
export class UnknownDevicesError extends MatrixSdkError {
  /** user ID → the offending devices, as `Device` objects: mark each verified, ignored or blacklisted. */
  userDevices: Record<string, TrustableDevice[]>;
  /**
   * @param userDevices - user ID → devices. The worker passes plain {@link DeviceInfo}s; the client
   *   replaces them with `Device` objects before the error reaches the application.
   */
  constructor(userDevices: Record<string, TrustableDevice[]> | Record<string, DeviceInfo[]>, message?: string) {
    super(
      ErrorCode.UnknownDevices,
      message ?? "The room contains devices that are neither verified, ignored nor blacklisted; inspect error.userDevices and mark them.",
      {},
    );
    this.userDevices = userDevices as Record<string, TrustableDevice[]>;
  }
}

/** Setting a trust flag on a device whose keys are unknown. */
export class UnknownDeviceKeysError extends MatrixSdkError {
  constructor(userId: string, deviceId: string) {
    super(ErrorCode.UnknownDeviceKeys, `Keys of device ${deviceId} of ${userId} are unknown; its trust flags cannot be set.`, { userId, deviceId });
  }
}

/** The worker speaks another protocol version. */
export class WorkerProtocolError extends MatrixSdkError {
  constructor(message: string) {
    super(ErrorCode.WorkerProtocol, message);
  }
}

/** The client was closed while the operation was pending. */
export class ClientClosedError extends MatrixSdkError {
  constructor(message = "The client is closed.") {
    super(ErrorCode.Closed, message);
  }
}

/**
 * The crypto worker no longer has the staged state of the sync being committed (replay records,
 * events kept for their keys): it restarted after the sync's crypto changes were taken. Nothing
 * of that sync was committed with its token; the client processes the same sync again. Handled
 * inside the client; applications see it only if they drive the worker API themselves.
 */
export class SyncBatchUnknownError extends MatrixSdkError {
  constructor(message = "the sync batch is unknown to this crypto worker (it restarted); process the sync again", details: Record<string, unknown> = {}) {
    super(ErrorCode.SyncBatchUnknown, message, details);
  }
}

/** An internal invariant was broken. */
export class InternalError extends MatrixSdkError {
  constructor(message: string, details: Record<string, unknown> = {}) {
    super(ErrorCode.Internal, message, details);
  }
}

/** Wire form of an error crossing the worker boundary. */
export interface SerializedError {
  name: string;
  code: string;
  message: string;
  details: Record<string, unknown>;
  stack?: string;
}

/** Turn any thrown value into its wire form. */
export function serializeError(err: unknown): SerializedError {
  if (MatrixSdkError.isSdkError(err)) {
    const details: Record<string, unknown> = { ...err.details };
    if (err instanceof UnknownDevicesError) details.userDevices = err.userDevices;
    return { name: err.name, code: err.code, message: err.message, details, ...(err.stack ? { stack: err.stack } : {}) };
  }
  if (err instanceof Error) {
    return { name: err.name, code: ErrorCode.Internal, message: err.message, details: {}, ...(err.stack ? { stack: err.stack } : {}) };
  }
  return { name: "Error", code: ErrorCode.Internal, message: String(err), details: {} };
}

/** Rebuild the typed error from its wire form. */
export function deserializeError(s: SerializedError): MatrixSdkError {
  const d = s.details ?? {};
  let err: MatrixSdkError;
  switch (s.code) {
    case ErrorCode.StoreLocked:
      err = new StoreLockedError(String(d.path ?? ""));
      break;
    case ErrorCode.Store:
      err = new StoreError(s.message, d);
      break;
    case ErrorCode.UnknownDevices:
      err = new UnknownDevicesError((d.userDevices as Record<string, DeviceInfo[]> | undefined) ?? {}, s.message);
      break;
    case ErrorCode.UnknownDeviceKeys:
      err = new UnknownDeviceKeysError(String(d.userId ?? ""), String(d.deviceId ?? ""));
      break;
    case ErrorCode.EncryptionDisabled:
      err = new EncryptionDisabledError(s.message);
      break;
    case ErrorCode.InvalidArgument:
      err = new InvalidArgumentError(s.message, d);
      break;
    case ErrorCode.UnsupportedAlgorithm:
      err = new UnsupportedAlgorithmError(String(d.roomId ?? ""), d.algorithm);
      break;
    case ErrorCode.WorkerCrashed:
      err = new CryptoWorkerCrashedError(s.message, d);
      break;
    case ErrorCode.WorkerProtocol:
      err = new WorkerProtocolError(s.message);
      break;
    case ErrorCode.Closed:
      err = new ClientClosedError(s.message);
      break;
    case ErrorCode.SyncBatchUnknown:
      err = new SyncBatchUnknownError(s.message, d);
      break;
    case ErrorCode.KeyExport:
      err = new KeyExportError(String(d.reason ?? "bad_format") as KeyExportErrorReason, s.message, d);
      break;
    case ErrorCode.Attachment:
      err = new AttachmentError(String(d.reason ?? "bad_format") as AttachmentErrorReason, s.message, d);
      break;
    case ErrorCode.VerifiedUserChangedIdentity:
      err = new VerifiedUserChangedIdentityError(Array.isArray(d.userIds) ? d.userIds.map(String) : []);
      break;
    default:
      err = new InternalError(`${s.name}: ${s.message}`, d);
  }
  if (s.stack) err.stack = `${err.name}: ${err.message}\n    [worker] ${s.stack}`;
  return err;
}

/**
 * Why a key export could not be read or written:
 * - `bad_passphrase_or_mac`: the passphrase is wrong or the file was altered (the MAC did not match);
 * - `unsupported_version`: the file's version byte is not 1;
 * - `bad_format`: no armour lines, bad base64, or too short to hold the header and MAC;
 * - `bad_json`: the decrypted plaintext is not UTF-8 JSON of an array of session objects;
 * - `file_error`: the file could not be read or written (missing, a directory, no permission):
 *   `details.path` names it and `details.errno` gives the system code (`ENOENT`, `EACCES`, …).
 */
export type KeyExportErrorReason = "bad_passphrase_or_mac" | "unsupported_version" | "bad_format" | "bad_json" | "file_error";

/** A Megolm key export file (`-----BEGIN MEGOLM SESSION DATA-----`) could not be read or written. */
export class KeyExportError extends MatrixSdkError {
  /** The sub-reason, also in `details.reason`. */
  readonly reason: KeyExportErrorReason;
  constructor(reason: KeyExportErrorReason, message: string, details: Record<string, unknown> = {}, options?: { cause?: unknown }) {
    super(ErrorCode.KeyExport, message, { ...details, reason }, options);
    this.reason = reason;
  }
}

/**
 * Why an encrypted attachment could not be decrypted:
 * - `hash_mismatch`: the SHA-256 of the ciphertext differs from `hashes.sha256` (altered or truncated data);
 * - `unsupported_version`: `v` is not `"v2"`;
 * - `unsupported_algorithm`: the key's `alg` is not `A256CTR`;
 * - `bad_key`: the key is not a 256-bit `oct` JWK allowed to `decrypt`;
 * - `bad_format`: the IV or hash is missing, not base64 or of the wrong length.
 */
export type AttachmentErrorReason = "hash_mismatch" | "unsupported_version" | "unsupported_algorithm" | "bad_key" | "bad_format";

/** An encrypted attachment (spec `EncryptedFile`) could not be decrypted or its metadata is invalid. */
export class AttachmentError extends MatrixSdkError {
  /** The sub-reason, also in `details.reason`. */
  readonly reason: AttachmentErrorReason;
  constructor(reason: AttachmentErrorReason, message: string, details: Record<string, unknown> = {}, options?: { cause?: unknown }) {
    super(ErrorCode.Attachment, message, { ...details, reason }, options);
    this.reason = reason;
  }
}

/** An interactive verification ended without success; `cancelCode` is the spec's code (e.g. `m.mismatched_sas`, `m.timeout`, `m.user`). */
export class VerificationCancelledError extends MatrixSdkError {
  constructor(
    /** The cancellation code (`m.user`, `m.timeout`, `m.key_mismatch`, `m.mismatched_sas`, ...). */
    readonly cancelCode: string,
    reason: string,
    /** Whether we cancelled (else the other side did). */
    readonly byUs: boolean,
  ) {
    super(ErrorCode.VerificationCancelled, `verification cancelled (${cancelCode}) by ${byUs ? "us" : "the other side"}: ${reason}`, { cancelCode, byUs });
  }
}

/**
 * Sending to a room was refused: users we had verified changed their cross-signing identity (as
 * matrix-rust-sdk's "verified user changed identity"). Nothing was sent. Call
 * `client.acknowledgeIdentityChange(userId)` (the new identity becomes pinned, unverified) or verify
 * the user again, then send again.
 */
export class VerifiedUserChangedIdentityError extends MatrixSdkError {
  constructor(
    /** The users whose verified identity changed. */
    readonly userIds: string[],
  ) {
    super(ErrorCode.VerifiedUserChangedIdentity, `verified users changed their identity: ${userIds.join(", ")}; acknowledge the change or verify them again`, { userIds });
  }
}
