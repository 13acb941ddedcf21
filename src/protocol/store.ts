/**
 * The crypto store contract: what the engine persists, and the interface a store implements.
 *
 * The store runs inside the crypto worker. The engine reads synchronously (reads may be served
 * from a cache the store filled in {@link CryptoStore.open}) and writes **one batch per engine
 * call** through {@link CryptoStore.saveChanges}, which must apply the whole batch atomically
 * (all or nothing). The sync token travels in the same batch as the state its sync carried.
 *
 * All records belong to one account (user ID + device ID) selected with
 * {@link CryptoStore.useAccount}; one file may hold several accounts.
 *
 * Records hold libolm pickles that are encrypted with the pickle key; the store never sees a
 * plaintext private key.
 *
 * @packageDocumentation
 */

/** The Olm account of one device. */
export interface AccountRecord {
  userId: string;
  deviceId: string;
  /** libolm account pickle (encrypted with the pickle key). */
  pickle: string;
  /** Whether the signed device keys were accepted by the homeserver. */
  deviceKeysUploaded: boolean;
  /** Creation time, ms since the epoch. */
  createdTs: number;
}

/** One Olm session with a peer device, identified by the peer's curve25519 key. */
export interface OlmSessionRecord {
  /** Peer device's curve25519 identity key. */
  senderKey: string;
  sessionId: string;
  pickle: string;
  createdTs: number;
  /** Last time a message was encrypted or decrypted with it (picks the session to use). */
  lastUsedTs: number;
}

/** Where an inbound Megolm session came from. */
export type InboundSessionSource = "own" | "room_key" | "forwarded" | "imported";

/**
 * How an inbound Megolm session reached us, bound when it was received and never recomputed
 * from what a later message claims (matrix-rust-sdk's `SenderData`, DESIGN §8). The verification
 * label of every event decrypted with the session is derived from this record and the current
 * device trust by one function (`workers/engine/trust/senderTrust.ts`).
 *
 * - `own`: we created the session ourselves (our outbound session's inbound twin).
 * - `olm`: an `m.room_key` received over an Olm channel. `userId` is the authenticated Olm sender
 *   (the to-device event's `sender`, checked against the Olm plaintext), `curve25519` the Olm
 *   channel's key, `ed25519` the key the plaintext claimed, `deviceId` the device that owned
 *   `curve25519` for that user when the key arrived (`null` when the device was not yet known).
 * - `forwarded`: an `m.forwarded_room_key` from one of our devices (`userId`/`deviceId`/`curve25519`
 *   of the forwarder). The key's creator is only claimed, so it is never authenticated.
 * - `imported`: read from a key export file (or an import through the API).
 * - `backup`: restored from server-side key backup (`version`).
 */
export type SenderData =
  | { kind: "own" }
  | { kind: "olm"; userId: string; deviceId: string | null; curve25519: string; ed25519: string }
  | { kind: "forwarded"; userId: string; deviceId: string | null; curve25519: string }
  | { kind: "imported" }
  | { kind: "backup"; version: string };

/** An inbound Megolm session (decrypts a room's messages from one sender device). */
export interface InboundGroupSessionRecord {
  roomId: string;
  /** Curve25519 key of the device that created the session. */
  senderKey: string;
  sessionId: string;
  pickle: string;
  /** Ed25519 key the creator claimed (from the Olm-authenticated `m.room_key`, or as forwarded). */
  claimedEd25519: string;
  /** Curve25519 keys of the devices that forwarded the session, oldest first. */
  forwardingChain: string[];
  firstKnownIndex: number;
  /** How the session arrived; only `own` and `room_key` are authenticated. */
  source: InboundSessionSource;
  /**
   * Provenance bound at receipt (see {@link SenderData}). Absent on sessions stored by SDK
   * versions before schema 4: the engine then derives it from `source` (an `own` session stays
   * own; a `room_key` session counts as received over Olm from an unknown user).
   */
  senderData?: SenderData;
  /** Creation time, ms since the epoch. */
  createdTs: number;
}

/** State of a room key delivery to one device. */
export type ShareState = "pending" | "shared" | "withheld";

/** One device an outbound session was (or is being) shared with. */
export interface SharedWithEntry {
  userId: string;
  deviceId: string;
  /** The device's curve25519 key when the key was shared. */
  curve25519: string;
  state: ShareState;
  /** Withheld code when `state` is `withheld`. */
  withheldCode?: string;
}

/** The outbound Megolm session of a room (one per room). */
export interface OutboundGroupSessionRecord {
  roomId: string;
  sessionId: string;
  pickle: string;
  createdTs: number;
  /** Messages encrypted so far (persisted, so count-based rotation survives restarts). */
  messageCount: number;
  rotationPeriodMs: number;
  rotationPeriodMsgs: number;
  sharedWith: SharedWithEntry[];
}

/** A device of some user, as learnt from `/keys/query`, with the local trust flags. */
export interface DeviceRecord {
  userId: string;
  deviceId: string;
  ed25519: string;
  curve25519: string;
  algorithms: string[];
  displayName?: string;
  verified: boolean;
  blacklisted: boolean;
  ignored: boolean;
  /** The device disappeared from the server's list; kept for history, never a recipient. */
  deleted: boolean;
  /** The signed device-keys object as received (canonical JSON source of the signature). */
  keysJson: string;
  firstSeenTs: number;
}

/** A user whose device list we follow, and whether it needs a fresh `/keys/query`. */
export interface TrackedUserRecord {
  userId: string;
  dirty: boolean;
}

/** What the engine knows of a room: encryption settings, history visibility, members. */
export interface RoomRecord {
  roomId: string;
  /** Content of the room's `m.room.encryption` state event, or null when the room is not encrypted. */
  encryption: Record<string, unknown> | null;
  historyVisibility: string | null;
}

/** Membership of one user in one room. */
export interface RoomMemberRecord {
  roomId: string;
  userId: string;
  membership: string;
}

/** First sighting of a Megolm message index (replay detection). */
export interface ReplayRecord {
  senderKey: string;
  sessionId: string;
  messageIndex: number;
  eventId: string;
  originServerTs: number;
}

/** An encrypted room event that could not be decrypted yet, waiting for its session. */
export interface PendingEventRecord {
  roomId: string;
  sessionId: string;
  eventId: string;
  eventJson: string;
  receivedTs: number;
}

/** One batch of writes: everything a single engine call changed. Applied atomically. */
export interface StoreChanges {
  /** Create or update the current account. */
  account?: AccountRecord;
  olmSessions?: OlmSessionRecord[];
  inboundGroupSessions?: InboundGroupSessionRecord[];
  outboundGroupSessions?: OutboundGroupSessionRecord[];
  /** Room IDs whose outbound session is discarded. Applied before `outboundGroupSessions`. */
  deletedOutboundGroupSessions?: string[];
  devices?: DeviceRecord[];
  trackedUsers?: TrackedUserRecord[];
  /** User IDs no longer tracked. */
  untrackedUsers?: string[];
  rooms?: RoomRecord[];
  /** Upserted memberships. */
  roomMembers?: RoomMemberRecord[];
  replayRecords?: ReplayRecord[];
  pendingEvents?: PendingEventRecord[];
  /** Pending events removed (decrypted or expired), by room and event ID. */
  deletedPendingEvents?: { roomId: string; eventId: string }[];
  /** Digests of processed to-device messages (idempotent re-processing after a crash). */
  toDeviceDigests?: string[];
  /** Key/value settings of the account (small JSON strings). */
  values?: Record<string, string | null>;
  /** The sync token whose data this batch completes. */
  syncToken?: string;
}

/**
 * A crypto store. Implementations: `SqliteCryptoStore` (default), `MemoryCryptoStore`, or your
 * own, named by module specifier and export in `encryptionConf.store`.
 *
 * Reads are synchronous so that one engine call can run without yielding (and so cannot
 * interleave with another call on the same session). A store backed by an asynchronous database
 * loads what it needs in {@link CryptoStore.open} / {@link CryptoStore.useAccount} and serves reads
 * from memory; {@link CryptoStore.saveChanges} may be asynchronous and must resolve only once the
 * batch is durable.
 */
export interface CryptoStore {
  /** Human-readable location (file path, URL) for logs. Must not contain secrets. */
  readonly location: string;
  /** Open and migrate. Throws `StoreLockedError` when another process holds the store. */
  open(): Promise<void>;
  /** Flush and release the store. Idempotent. */
  close(): Promise<void>;
  /** All accounts in the store. */
  listAccounts(): { userId: string; deviceId: string; createdTs: number }[];
  /** Device ID of the most recently created account of `userId`, or null. */
  getStoredDeviceId(userId: string): string | null;
  /**
   * Select the account that later reads and writes apply to. Returns its record, or null when
   * the store has none yet (the engine then creates one through `saveChanges({account})`).
   */
  useAccount(userId: string, deviceId: string): Promise<AccountRecord | null>;
  /** Delete an account and everything that belongs to it. Atomic. */
  deleteAccount(userId: string, deviceId: string): Promise<void>;

  /** Olm sessions with the device whose curve25519 key is `senderKey`. */
  getOlmSessions(senderKey: string): OlmSessionRecord[];
  getInboundGroupSession(roomId: string, senderKey: string, sessionId: string): InboundGroupSessionRecord | null;
  /** Number of inbound group sessions (all rooms). */
  countInboundGroupSessions(): number;
  /** Iterate inbound group sessions in pages (export); `afterKey` is the last key of the previous page. */
  listInboundGroupSessions(limit: number, after?: string): InboundGroupSessionRecord[];
  getOutboundGroupSession(roomId: string): OutboundGroupSessionRecord | null;
  getUserDevices(userId: string): DeviceRecord[];
  getDevice(userId: string, deviceId: string): DeviceRecord | null;
  /** The device owning a curve25519 identity key, if known. */
  getDeviceByCurve25519(curve25519: string): DeviceRecord | null;
  getTrackedUsers(): TrackedUserRecord[];
  getRoom(roomId: string): RoomRecord | null;
  getRoomMembers(roomId: string): RoomMemberRecord[];
  getReplayRecord(senderKey: string, sessionId: string, messageIndex: number): ReplayRecord | null;
  getPendingEvents(roomId: string, sessionId: string): PendingEventRecord[];
  countPendingEvents(): number;
  hasToDeviceDigest(digest: string): boolean;
  getSyncToken(): string | null;
  getValue(key: string): string | null;

  /** Apply one batch atomically. The batch must be durable when this returns/resolves. */
  saveChanges(changes: StoreChanges): void | Promise<void>;
}

/** How the worker builds the store, chosen on the main thread (must be structured-cloneable). */
export type StoreConfig =
  | { kind: "sqlite"; path: string }
  | { kind: "memory" }
  | { kind: "module"; module: string; export: string; options?: unknown };
