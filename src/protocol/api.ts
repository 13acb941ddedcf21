/**
 * The contract between the main thread and the crypto worker.
 *
 * The engine in the worker does no network I/O. The main thread pushes sync data in
 * ({@link CryptoWorkerApi.receiveSyncChanges}), pulls requests out
 * ({@link CryptoWorkerApi.outgoingRequests}), sends them and reports each response back
 * ({@link CryptoWorkerApi.markRequestAsSent}). Bodies cross the boundary as JSON strings.
 *
 * @packageDocumentation
 */
import type { VerificationAction, VerificationActionResult, VerificationFlowView, VerificationTransport } from "./verification.js";
import type { StoreConfig } from "./store.js";
import type { LogLevel } from "../pure/logger.js";

/** Bumped on any incompatible change of {@link CryptoWorkerApi}. */
export const PROTOCOL_VERSION = 4;

/** Olm algorithm name. */
export const OLM_ALGORITHM = "m.olm.v1.curve25519-aes-sha2";
/** Megolm algorithm name. */
export const MEGOLM_ALGORITHM = "m.megolm.v1.aes-sha2";

/** How to read one sync (see `receiveSyncChanges`). */
export interface SyncChangesOptions {
  /**
   * The sync was requested before our last `/keys/upload` was answered, so its one-time key count
   * and unused fallback key types may predate that upload: the engine keeps the upload answer's
   * count instead (acting on the old one would publish a second batch of keys, and libolm silently
   * drops the oldest private keys beyond the 100 it keeps).
   */
  keyCountsStale?: boolean;
  /** The client has a decrypt pool: return the sessions this sync stored, pickled, in `poolSessions`. */
  exportSessions?: boolean;
}

/** Options the worker is started with (structured-cloneable). */
export interface WorkerOptions {
  store: StoreConfig;
  /** Key that encrypts libolm pickles at rest. */
  pickleKey: string;
  /**
   * Lowest level of the log records the worker posts to the host (which hands them to the
   * application's logger); "silent" posts none. The worker never prints itself.
   */
  logLevel: LogLevel | "silent";
  /** Capacity of the live inbound Megolm session cache (default 10,000). */
  sessionCacheSize?: number;
}

/** A request the engine wants sent. `body` is the JSON request body. */
export type OutgoingRequest =
  | { id: string; kind: "keys_upload"; body: string }
  | { id: string; kind: "keys_query"; body: string }
  | { id: string; kind: "keys_claim"; body: string }
  | { id: string; kind: "to_device"; eventType: string; txnId: string; body: string };

/** This device's identity. */
export interface AccountInfo {
  userId: string;
  deviceId: string;
  ed25519: string;
  curve25519: string;
}

/** The crypto-relevant part of one `/sync` response, as the main thread extracts it. */
export interface SyncChangesInput {
  nextBatch: string;
  toDevice: unknown[];
  deviceLists?: { changed?: unknown; left?: unknown };
  oneTimeKeyCounts?: Record<string, unknown>;
  /** `device_unused_fallback_key_types`, or undefined when the server did not send it. */
  unusedFallbackKeyTypes?: unknown;
  /** Per room: our membership and the state events seen in this sync (state + timeline). */
  rooms: { roomId: string; membership: "join" | "invite" | "leave"; stateEvents: unknown[] }[];
}

/** A JSON primitive, or absent. */
export type Primitive = string | number | boolean | null | undefined;

/**
 * An `m.room.encrypted` timeline event reduced to the fields decryption reads. Values the server
 * sent as anything but primitives arrive as `null` (and fail the worker's checks as malformed).
 */
export interface EncryptedEventInput {
  type: Primitive;
  event_id: Primitive;
  sender: Primitive;
  origin_server_ts: Primitive;
  /** Null when the event's content is not an object. */
  content: { algorithm: Primitive; ciphertext: Primitive; session_id: Primitive; sender_key: Primitive; device_id: Primitive } | null;
  /** Deciphered by the decrypt pool (see `protocol/pool.ts`): the message index and decrypted type. */
  pre?: { messageIndex: number; type: string };
}

/** A pickled inbound session handed to the decrypt pool (`protocol/pool.ts`); the pickle is encrypted with the pickle key. @internal */
export interface PoolSession {
  roomId: string;
  senderKey: string;
  sessionId: string;
  pickle: string;
  firstKnownIndex: number;
}

/** Why a room event could not be decrypted. */
export const DecryptionFailureCode = {
  /** We do not have the Megolm session (yet): the key may still arrive. */
  MissingSession: "missing_session",
  /** We have the session, but only from a later index. */
  UnknownIndex: "unknown_index",
  /** The sender said it will not send the key (see `withheldCode`). */
  Withheld: "withheld",
  /** Same session and index seen earlier with another event ID or timestamp. */
  Replay: "replay",
  /** The decrypted `room_id` differs from the room the event came in. */
  RoomMismatch: "room_mismatch",
  /** The sending device's keys do not match the keys the session or event claims (possible forgery). */
  SenderMismatch: "sender_mismatch",
  /** Unknown or unsupported `algorithm`. */
  UnknownAlgorithm: "unknown_algorithm",
  /** Missing fields, bad base64, bad MAC, bad JSON. */
  Malformed: "malformed",
} as const;

/** One of the {@link DecryptionFailureCode} values. */
export type DecryptionFailureCodeValue = (typeof DecryptionFailureCode)[keyof typeof DecryptionFailureCode];

/** How much the sender of a decrypted event can be trusted. */
export const VerificationStatus = {
  /** Sent by one of our own device's sessions. */
  Own: "own",
  /** The sending device is known and marked verified, and its keys match. */
  Verified: "verified",
  /** The sending device is known, its keys match, but it is not verified. */
  Unverified: "unverified",
  /** The sending device is not (yet) known. */
  UnknownDevice: "unknown_device",
  /** The key came from a forwarded or imported session; authenticity cannot be guaranteed. */
  Unauthenticated: "unauthenticated",
} as const;

/** One of the {@link VerificationStatus} values. */
export type VerificationStatusValue = (typeof VerificationStatus)[keyof typeof VerificationStatus];

/** Result of decrypting one room event. */
export type RoomDecryptResult =
  | {
      ok: true;
      eventId: string;
      sender: string;
      originServerTs: number;
      /** Decrypted event type, and the decrypted payload as received (`{type, content, room_id}` JSON). */
      type: string;
      plaintextJson: string;
      senderCurve25519: string;
      claimedEd25519: string;
      senderDeviceId: string | null;
      sessionId: string;
      messageIndex: number;
      verification: VerificationStatusValue;
      /** The sending device is cross-signed by its owner. */
      crossSigned: boolean;
      forwardingChain: string[];
    }
  | {
      ok: false;
      eventId: string;
      code: DecryptionFailureCodeValue;
      message: string;
      sessionId: string | null;
      withheldCode?: string;
    };

/** A decrypted to-device event handed to the application. */
export interface DecryptedToDevice {
  type: string;
  sender: string;
  contentJson: string;
  senderCurve25519: string | null;
  encrypted: boolean;
}

/** What a sync changed, as the main thread needs to know it. */
export interface SyncChangesResult {
  /**
   * The batch this sync's timeline side effects are staged in (random, per worker instance): name
   * it in {@link CryptoWorkerApi.commitSyncToken}. Empty outside sync processing (key import).
   */
  batchId: string;
  /** To-device events for listeners (decrypted where they were encrypted). */
  toDevice: DecryptedToDevice[];
  /**
   * To-device messages that failed, with reason codes (already logged); a refused
   * `m.forwarded_room_key` has `type` `m.forwarded_room_key` and code `forward_unrequested`,
   * `forward_unverified_device`, `forward_not_own_device` or `malformed`.
   */
  toDeviceFailures: { sender: string; type: string; code: string; message: string }[];
  /** New inbound sessions. */
  roomKeys: { roomId: string; sessionId: string; senderKey: string }[];
  /** With `SyncChangesOptions.exportSessions`: the sessions of `roomKeys`, for the decrypt pool. */
  poolSessions?: PoolSession[];
  /** Events that were waiting for these sessions and are now decrypted, per room. */
  redecrypted: { roomId: string; results: RoomDecryptResult[] }[];
  /** Rooms whose encryption state changed. */
  encryptedRooms: { roomId: string; encryption: Record<string, unknown> }[];
  /** Room keys our own other devices asked for in this sync (cancelled ones removed). */
  keyRequests: IncomingKeyRequest[];
  /** Request IDs our own devices cancelled in this sync: `${deviceId}|${requestId}`. */
  keyRequestCancellations: string[];
  /** Sessions received as answers to our key requests. */
  forwardedKeys: { roomId: string; sessionId: string }[];
  /** `m.secret.request`s from our own other devices, to answer with {@link CryptoWorkerApi.answerSecretRequests} (which checks the device is verified). */
  secretRequests: IncomingSecretRequest[];
  /** Secrets our verified devices sent us in answer to our requests, now held (names). */
  secretsReceived: string[];
}

/** Result of a key import. */
export interface KeyImportResult {
  total: number;
  imported: number;
  skipped: number;
  redecrypted: { roomId: string; results: RoomDecryptResult[] }[];
}

/** A key request from one of our own other devices. */
export interface IncomingKeyRequest {
  requestId: string;
  deviceId: string;
  roomId: string;
  senderKey: string;
  sessionId: string;
}

/** An `m.secret.request` from one of our own other devices. */
export interface IncomingSecretRequest {
  deviceId: string;
  requestId: string;
  /** The secret asked for (`m.cross_signing.master`, `…self_signing`, `…user_signing`, `m.megolm_backup.v1`). */
  name: string;
}

/** A device as the main thread sees it. */
export interface DeviceInfo {
  userId: string;
  deviceId: string;
  displayName: string | null;
  ed25519: string;
  curve25519: string;
  verified: boolean;
  blacklisted: boolean;
  ignored: boolean;
  deleted: boolean;
  /** Signed by its owner's self-signing key, which their master key signed. */
  crossSigned: boolean;
  /** Cross-signed by its owner, and we trust the owner's identity (our own, or one we verified). */
  crossSigningVerified: boolean;
}

/**
 * A device as the client hands it out (the `Device` class): its keys and trust flags, and the
 * setters that persist the flags in the worker. What {@link UnknownDevicesError.userDevices} lists.
 */
export interface TrustableDevice extends Readonly<DeviceInfo> {
  /** Mark verified or not; resolves once persisted. */
  setVerified(value: boolean): Promise<void>;
  /** Blacklist or not; resolves once persisted. */
  setBlacklisted(value: boolean): Promise<void>;
  /** Ignore or not; resolves once persisted. */
  setIgnored(value: boolean): Promise<void>;
  /** Plain data. */
  toJSON(): DeviceInfo;
}

/** A user's cross-signing identity as this device knows it. */
export interface UserIdentityInfo {
  userId: string;
  masterKey: string | null;
  /** The master key pinned on first sight (trust on first use). */
  pinnedMasterKey: string | null;
  /** The published master key differs from the pinned one and was not acknowledged. */
  changed: boolean;
  /** Our own identity (we hold its keys) or one we signed with our user-signing key. */
  verified: boolean;
}

/** What preparing a cross-signing bootstrap produced, for the main thread to upload. */
export interface CrossSigningBootstrap {
  /** The new master public key: names this bootstrap in {@link CryptoWorkerApi.commitCrossSigning}. */
  masterKey: string;
  deviceSigningUpload: Record<string, unknown>;
  signatureUpload: Record<string, unknown>;
  recoveryKey: string;
  secretStorage: { keyId: string; keyDescription: Record<string, unknown>; secrets: Record<string, Record<string, unknown>> };
}

/**
 * How far a server-side key backup version is trusted (see `MatrixClient.enableKeyBackup`): only
 * a version whose key is the one we hold, or signed by our trusted master key or one of our
 * verified devices, is uploaded to.
 */
export interface KeyBackupTrust {
  /** The version (null when the answer had none). */
  version: string | null;
  /** `auth_data.public_key`. */
  publicKey: string;
  /** The public key is the one of the backup private key this device holds. */
  matchesKey: boolean;
  /** `auth_data` carries a valid signature of our trusted master key. */
  signedByMaster: boolean;
  /** Our verified devices (this one included) whose valid signature `auth_data` carries. */
  signedByDevices: string[];
  /** Any of the three. */
  trusted: boolean;
}

/** What the engine made for a new backup version: `POST /room_keys/version` body parts, and the key's secret-storage copy. */
export interface KeyBackupCreation {
  algorithm: string;
  authData: Record<string, unknown>;
  /** `m.megolm_backup.v1` account data content (the key encrypted for secret storage), or null without secret storage input. */
  secret: Record<string, unknown> | null;
}

/**
 * Where the backup private key comes from: secret storage (`m.megolm_backup.v1` account data,
 * opened with the recovery key or passphrase of the secret storage key `keyId`), or the backup
 * key itself (recovery-key text form or unpadded base64).
 */
export type KeyBackupKeySource =
  | { secretStorage: { keyDescription: Record<string, unknown>; keyId: string; secret: unknown; recoveryKey?: string; passphrase?: string } }
  | { backupKey: string };

/** One upload batch of the key backup: `PUT /room_keys/keys?version=<version>` with `body`. */
export interface KeyBackupBatch {
  id: string;
  version: string;
  body: Record<string, unknown>;
  /** Sessions not yet confirmed in the version, this batch included. */
  remaining: number;
}

/** Next step of preparing a room for sending, see {@link CryptoWorkerApi.prepareRoomKeyShare}. */
export type PrepareShareStep = { ready: true } | { ready: false; request: OutgoingRequest };

/**
 * The worker facade. Every method commits its changes in one store transaction before it returns.
 */
export interface CryptoWorkerApi {
  /** Protocol version of the worker; must equal {@link PROTOCOL_VERSION}. */
  protocolVersion(): number;
  /** The device ID stored for `userId` (device ID reuse), or null. */
  getStoredDeviceId(userId: string): string | null;
  /** Accounts (user + device) in the store. */
  listAccounts(): { userId: string; deviceId: string; createdTs: number }[];
  /** Load the account of this device, creating and persisting it when missing. */
  loadAccount(userId: string, deviceId: string): AccountInfo;
  /** The loaded account's identity. */
  identity(): AccountInfo;
  /** Delete a stored account (another device's data in the same file). */
  deleteStoredDevice(userId: string, deviceId: string): void;
  /** Path/URL of the store, for logs. */
  storeLocation(): string;
  /** The sync token committed last, or null. */
  getSyncToken(): string | null;

  /** Requests to send now: key upload, key queries. Locking rule: one caller at a time. */
  outgoingRequests(): OutgoingRequest[];
  /** Report a response. `responseJson` is the response body. */
  markRequestAsSent(id: string, kind: OutgoingRequest["kind"], responseJson: string): { identityChanges: string[] };
  /** Report a definitive failure (after HTTP retries), with the error's errcode and message. */
  markRequestAsFailed(id: string, kind: OutgoingRequest["kind"], errcode: string | null, message: string): void;

  /**
   * Process the crypto parts of one sync. Commits everything except the token, and opens the
   * sync's batch (returned as `batchId`) for the side effects committed with the token.
   */
  receiveSyncChanges(inputJson: string, opts?: SyncChangesOptions): SyncChangesResult;
  /**
   * Commit the sync token, with exactly the batch `batchId` (replay records, events kept for their
   * keys), once everything that sync carried was handled. Throws `SyncBatchUnknownError`, committing
   * nothing, when this worker does not have that batch (it restarted): process the sync again.
   * `syncFirst`: files synced to disk before the commit (the client state store's WAL, written
   * without a sync of its own), so that they are never behind the committed token; a file that
   * cannot be synced throws `StoreError`, committing nothing (one already gone is not an error:
   * SQLite removes the WAL only after checkpointing it into the synced database file).
   */
  commitSyncToken(token: string, batchId: string, syncFirst?: string[]): void;
  /**
   * Decrypt the encrypted timeline events of all rooms of one sync; the side effects are staged in
   * the batch opened by the `receiveSyncChanges` call just before (`SyncBatchUnknownError` when
   * this worker has none: it restarted) and commit with the token. The events come as structured
   * data reduced to the fields decryption reads, all of them primitives (so they clone cheaply and
   * cannot be too deep to clone); the worker checks them all.
   */
  decryptSyncTimelines(rooms: { roomId: string; events: EncryptedEventInput[] }[]): { roomId: string; results: RoomDecryptResult[] }[];
  /**
   * {@link CryptoWorkerApi.decryptSyncTimelines} with the decrypt pool: events with `pre` were
   * deciphered by it (their results have an empty `plaintextJson`: the pool holds the plaintext);
   * `sessions` are those this call deciphered with itself, for the pool to hold from now on.
   */
  decryptSyncTimelinesPooled(rooms: { roomId: string; events: EncryptedEventInput[] }[]): { rooms: { roomId: string; results: RoomDecryptResult[] }[]; sessions: PoolSession[] };
  /** Decrypt a batch of `m.room.encrypted` events of one room (JSON array). */
  decryptRoomEvents(roomId: string, eventsJson: string): RoomDecryptResult[];

  /** Record a room's encryption (e.g. right after creating it). */
  setRoomEncryption(roomId: string, encryption: Record<string, unknown>): void;
  /** Replace what the engine knows of a room's members (from `/members`). */
  setRoomMembers(roomId: string, members: { userId: string; membership: string }[]): void;
  /** What the engine knows of a room. */
  getRoomInfo(roomId: string): { encryption: Record<string, unknown> | null; membersKnown: boolean };

  /**
   * Next request needed before a room key can be shared (keys/query, then keys/claim), or ready.
   * Locking rule: caller holds the room's lock; keys/claim must be single flight.
   */
  prepareRoomKeyShare(roomId: string, verifyDevices: boolean, onlyCrossSigned?: boolean): PrepareShareStep;
  /** Share the room's outbound session (creating or rotating it): to-device requests to send. */
  shareRoomKey(roomId: string, verifyDevices: boolean, onlyCrossSigned?: boolean): OutgoingRequest[];
  /**
   * Encrypt one event if the room's session already reached every current recipient (the send's
   * fast path: one call); null when `prepareRoomKeyShare` / `shareRoomKey` must run first.
   * Locking rule: caller holds the room's lock.
   */
  encryptRoomEventIfReady(roomId: string, eventType: string, contentJson: string, verifyDevices: boolean, onlyCrossSigned?: boolean): string | null;
  /** Forget the room's outbound session (sharing failed). */
  discardRoomKey(roomId: string): void;
  /** Encrypt one event with the room's shared session; returns the `m.room.encrypted` content JSON. */
  encryptRoomEvent(roomId: string, eventType: string, contentJson: string): string;

  /** Turn automatic key requests for undecryptable events on or off. */
  setKeyRequestsEnabled(enabled: boolean): void;
  /** keys/claim for own devices we want to answer and have no Olm session with, or null. */
  prepareKeyForwarding(deviceIds: string[]): OutgoingRequest | null;
  /** Answer approved key requests: `m.forwarded_room_key` to-device requests to send. */
  answerKeyRequests(requests: IncomingKeyRequest[]): OutgoingRequest[];

  /**
   * Write every inbound session to `path` in the spec's key-export format (file mode 0600,
   * written to a temporary file then renamed: never half-written). Returns the session count.
   */
  exportKeysToFile(path: string, passphrase: string, rounds: number | undefined, onProgress?: (done: number, total: number) => void): number;
  /**
   * Import a key-export file in batches (one transaction each; other calls interleave).
   * Returns counts and the waiting events that the new sessions decrypt.
   */
  importKeysFromFile(path: string, passphrase: string, onProgress?: (done: number, total: number) => void): KeyImportResult;

  /**
   * Create new cross-signing keys, sign this device with them and encrypt them for secret
   * storage, kept as a pending bootstrap: our identity does not change until
   * {@link commitCrossSigning}.
   */
  prepareCrossSigning(opts: { passphrase?: string }): CrossSigningBootstrap;
  /** The server accepted the prepared keys' upload: they become our identity (keys, pin). Throws if none with `masterKey` is pending. */
  commitCrossSigning(masterKey: string): void;
  /** The prepared keys' upload failed: forget them (our identity is unchanged). */
  discardCrossSigning(): void;
  /** Restore cross-signing keys from secret storage and sign this device. */
  restoreCrossSigning(input: { keyDescription: Record<string, unknown>; keyId: string; secrets: Record<string, unknown>; recoveryKey?: string; passphrase?: string }): { signatureUpload: Record<string, unknown> };
  /** Sign another user's master key with our user-signing key. */
  verifyUser(userId: string): { signatureUpload: Record<string, unknown> };
  /** Mark users' device lists stale (queried at the next outgoing-requests pass). */
  refreshUsers(userIds: string[]): void;
  /** A user's cross-signing identity. */
  getUserIdentity(userId: string): UserIdentityInfo;
  /** Accept a changed identity (the new master key becomes pinned, unverified). */
  acknowledgeIdentityChange(userId: string): void;
  /** Devices of a user. */
  getDevices(userId: string): DeviceInfo[];
  /** Set trust flags; throws UnknownDeviceKeysError when the device's keys are unknown. */
  setDeviceFlags(userId: string, deviceId: string, flags: { verified?: boolean; blacklisted?: boolean; ignored?: boolean }): DeviceInfo;
  /** Request a to-device verification with `deviceIds` of `userId` (null: all their known devices but ours). */
  requestVerification(userId: string, deviceIds: string[] | null): VerificationActionResult;
  /** The content of an in-room verification request to `userId` (an `m.room.message`). */
  roomVerificationRequestContent(userId: string): Record<string, unknown>;
  /** Our in-room request was sent as `eventId`: the flow exists from now on. */
  roomVerificationRequestSent(roomId: string, eventId: string, userId: string): VerificationActionResult;
  /** A user action on a verification flow. */
  verificationAction(flowId: string, action: VerificationAction): VerificationActionResult;
  /** A verification event received to-device or in a room (content as JSON). */
  receiveVerificationEvent(sender: string, type: string, contentJson: string, where: { transport: VerificationTransport; roomId?: string; eventId?: string; originServerTs?: number }): VerificationActionResult;
  /** Cancel flows older than 10 minutes (`m.timeout`). */
  verificationTick(): VerificationActionResult;
  /** The current view of a verification flow, or null. */
  getVerification(flowId: string): VerificationFlowView | null;
  /** Simulated fatal error (tests of the supervisor). */
  /** Trust of a backup version (`GET /room_keys/version` answer; null: none asked), the version we upload to, and how many sessions it lacks. */
  keyBackupStatus(info: Record<string, unknown> | null): { trust: KeyBackupTrust | null; active: string | null; remaining: number };
  /** A new backup key (held, committed before the version is created) and the signed `auth_data`; with secret storage input, the key's `m.megolm_backup.v1` content. */
  createKeyBackup(ss?: { keyDescription: Record<string, unknown>; keyId: string; recoveryKey?: string; passphrase?: string }): KeyBackupCreation;
  /** Hold the private key of backup version `info`; `InvalidArgumentError` (`details.reason` `bad_key`, `bad_mac`, …) when it is not that key. */
  unlockKeyBackup(info: Record<string, unknown>, source: KeyBackupKeySource): void;
  /** Upload to version `info` from now on (refused with reason `untrusted` unless trusted), or stop (`null`). */
  activateKeyBackup(info: Record<string, unknown> | null): KeyBackupTrust | null;
  /** The next upload batch of at most `limit` sessions, or null when none is left (or backup is off). */
  keyBackupBatch(limit: number): KeyBackupBatch | null;
  /** The server confirmed (`ok`) or refused batch `id`. Its sessions are marked backed up only when confirmed. */
  keyBackupBatchDone(id: string, ok: boolean): { marked: number };
  /** Restore backed-up sessions (`GET /room_keys/keys` answer as JSON) of version `info`; events they decrypt are returned. */
  importBackupSessions(info: Record<string, unknown>, keysJson: string): { imported: number; failed: number; redecrypted: { roomId: string; results: RoomDecryptResult[] }[] };
  /** Olm-encrypted `m.secret.send`s for requests from our own *verified* devices (others are refused and logged); claim sessions first with {@link CryptoWorkerApi.prepareKeyForwarding}. */
  answerSecretRequests(requests: IncomingSecretRequest[]): OutgoingRequest[];
  /** `m.secret.request`s to our own verified devices for the secrets this device lacks (empty when none is missing). */
  requestSecrets(): OutgoingRequest[];
  crashForTesting(how: "throw" | "exit"): void;
}

/** The async view of the API as the main thread gets it through Comlink. */
export type RemoteCryptoWorkerApi = {
  [K in keyof CryptoWorkerApi]: CryptoWorkerApi[K] extends (...args: infer A) => infer R ? (...args: A) => Promise<Awaited<R>> : never;
};
