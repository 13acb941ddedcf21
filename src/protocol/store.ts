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
 * - `forwarded`: an `m.forwarded_room_key` from one of our verified devices (`userId`/`deviceId`/
 *   `curve25519` of the forwarder), answering our request. The key's creator is only claimed, so it
 *   is never authenticated; `claimedSender` is the user the request was for (the `sender` of the
 *   event that needed the key): events of any other sender are refused (`sender_mismatch`).
 *   Absent on sessions forwarded before it was recorded.
 * - `imported`: read from a key export file (or an import through the API).
 * - `backup`: restored from server-side key backup (`version`).
 */
export type SenderData =
  | { kind: "own" }
  | { kind: "olm"; userId: string; deviceId: string | null; curve25519: string; ed25519: string }
  | { kind: "forwarded"; userId: string; deviceId: string | null; curve25519: string; claimedSender?: string }
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
  /**
   * The server-side key backup version this session was uploaded to, set only once the server
   * confirmed the upload. Absent: not in any backup (every session stored before schema 5, and
   * every session written again because a better copy arrived).
   */
  backedUpVersion?: string;
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
  /**
   * Set while an engine holds the session's ratchet in memory ahead of `pickle` (an opaque mark
   * of that engine's lifetime, written before its first encryption with the session); absent once
   * that engine closed cleanly and wrote the current `pickle`. An engine that reads a record marked
   * by another lifetime (one that crashed) discards the session instead of reusing message
   * indices. A store must keep it like any other field (absent when left out); an engine whose
   * store drops it writes the ratchet at every encryption instead.
   */
  inUseBy?: string;
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
 *
 * What every read must guarantee (the conformance suite, `matrix-e2ee-worker-sdk/testing`,
 * checks it):
 * - **Reads see every batch `saveChanges` applied**, from the moment it returned (or resolved),
 *   also after close and reopen for a persistent store. The engine keeps no copy of store state
 *   across calls beyond what these docs name, so a stale read is a wrong decision (a replayed
 *   message accepted, a session forgotten). A batch that failed is invisible to every read. (One
 *   such copy: the ratchet of an outbound session marked with
 *   {@link OutboundGroupSessionRecord.inUseBy} is ahead of its stored `pickle` until a clean close.)
 *   For the same reason a store changes nothing by itself (no expiry of rows behind the engine's
 *   back, to-device digests aside): the copies the engine keeps are exact because every change
 *   arrives through `saveChanges`. (The engine keeps such copies, read once per process and
 *   updated from each batch it commits, of rooms, memberships, devices, tracked users, outbound
 *   session records, the per-user cross-signing settings and the count of waiting events.)
 * - **Account-scoped reads** (every read below {@link CryptoStore.deleteAccount}) apply to the
 *   account selected by the last {@link CryptoStore.useAccount}; before any `useAccount` they
 *   throw `StoreError`; while the selected account does not exist yet they return empty results
 *   (`null`, `[]`, `0`, `false`).
 * - **Records are copies**: mutating a record read out, or one passed to `saveChanges` after the
 *   call, never changes what the store holds. Optional fields (`displayName`, `withheldCode`,
 *   `senderData`, `backedUpVersion`) left out when saved come back absent, not as `undefined`.
 * - A read fails only on a store fault, with `StoreError`; "not found" is `null` or `[]`.
 */
export interface CryptoStore {
  /** Human-readable location (file path, URL) for logs. Must not contain secrets. */
  readonly location: string;
  /** Open and migrate. Throws `StoreLockedError` when another process holds the store. */
  open(): Promise<void>;
  /** Flush and release the store. Idempotent. */
  close(): Promise<void>;
  /**
   * Every account in the store (user ID, device ID, creation time), in any order (the built-in
   * stores: oldest first). Store-wide: needs no {@link CryptoStore.useAccount}. Called by the
   * worker's `listAccounts` (the `matrix-e2ee-keys` CLI lists the accounts of a store with it),
   * possibly before any account is loaded.
   */
  listAccounts(): { userId: string; deviceId: string; createdTs: number }[];
  /**
   * Device ID of the account of `userId` with the highest `createdTs` (ties: the one created
   * last), or null when the store has none for that user. Store-wide. Called at login without a
   * device ID, so that a restarted bot reuses its device (and its keys) instead of making a new one.
   */
  getStoredDeviceId(userId: string): string | null;
  /**
   * Select the account that later reads and writes apply to. Returns its record, or null when
   * the store has none yet (the engine then creates one through `saveChanges({account})`).
   * Called once when the engine loads an account, before any other account-scoped call; the
   * engine then reads the tracked users and its stored settings (`getValue`) of that account.
   */
  useAccount(userId: string, deviceId: string): Promise<AccountRecord | null>;
  /** Delete an account and everything that belongs to it. Atomic. */
  deleteAccount(userId: string, deviceId: string): Promise<void>;

  /**
   * Every Olm session with the device whose curve25519 identity key is `senderKey`, in any
   * order (the engine orders them by `lastUsedTs`; the built-in stores return the most recently
   * used first); `[]` when there is none. Called for each Olm-encrypted to-device message (every
   * session is tried before a pre-key message may create a new one), when encrypting to a device
   * (to pick its session), and to decide which devices need a one-time key claimed.
   */
  getOlmSessions(senderKey: string): OlmSessionRecord[];
  /**
   * The inbound Megolm session with exactly this room, creator curve25519 key and session ID, or
   * null. Called to decrypt each room event, when a room key arrives (to keep the copy with the
   * lower first known index) and to answer key requests. The room ID is part of the key: the
   * same session ID in another room is another (unknown) session.
   */
  getInboundGroupSession(roomId: string, senderKey: string, sessionId: string): InboundGroupSessionRecord | null;
  /**
   * Number of inbound group sessions of the account (all rooms): the `total` of a key export,
   * read once per exported page. Must agree with what {@link CryptoStore.listInboundGroupSessions}
   * pages through.
   */
  countInboundGroupSessions(): number;
  /**
   * A page of at most `limit` inbound group sessions in a stable total order (the built-in
   * stores: by room ID, sender key, session ID, compared bytewise), starting after the record
   * whose cursor is `after` (from the first record when absent); `[]` when none is left or
   * `limit` is not positive. Called by key export, one page per call. The engine passes as
   * `after` the cursor `${roomId}|${senderKey}|${sessionId}` of the last record of the previous
   * page; sessions added or removed between pages must never make an unchanged record appear
   * twice or be skipped. Throws `StoreError` for a cursor it cannot parse.
   */
  listInboundGroupSessions(limit: number, after?: string): InboundGroupSessionRecord[];
  /**
   * Number of inbound group sessions whose `backedUpVersion` is not `version` (absent counts as
   * not), all rooms. Called to report how much of a backup upload is left.
   */
  countInboundGroupSessionsToBackUp(version: string): number;
  /**
   * At most `limit` inbound group sessions whose `backedUpVersion` is not `version`, in the order
   * of {@link CryptoStore.listInboundGroupSessions}; `[]` when none is left or `limit` is not
   * positive. Called by the key backup for each batch it uploads; a session marked in `version`
   * (through `inboundGroupSessions`) never comes back, one written again without the mark does.
   */
  listInboundGroupSessionsToBackUp(version: string, limit: number): InboundGroupSessionRecord[];
  /**
   * The room's current outbound Megolm session, or null (none yet, or discarded by rotation
   * through `deletedOutboundGroupSessions`). Called before each room message is encrypted and
   * when room keys are shared, to decide whether to rotate and whom the key still has to reach.
   */
  getOutboundGroupSession(roomId: string): OutboundGroupSessionRecord | null;
  /**
   * Every stored device of `userId`, deleted ones included (`deleted: true`), in any order (the
   * built-in stores: by device ID); `[]` for an unknown user. Called when a `/keys/query` answer
   * is merged, when room keys are shared (the recipients), for the client's device list, and to
   * find the device of a to-device message's sender that owns the Olm key it came with (the
   * engine caches that answer until the next batch that writes devices).
   */
  getUserDevices(userId: string): DeviceRecord[];
  /** The device `deviceId` of `userId` (deleted or not), or null. Called for trust decisions and key forwarding to our own devices. */
  getDevice(userId: string, deviceId: string): DeviceRecord | null;
  /**
   * The device owning the curve25519 identity key `curve25519`, or null. Should several stored
   * devices claim it, a non-deleted one wins, then the one seen first (`firstSeenTs`). Across
   * users, so the engine no longer uses it to bind a message's sender (it looks the key up among
   * the devices of the authenticated sender, through {@link CryptoStore.getUserDevices}); kept
   * in the contract for tools and stores written against it.
   */
  getDeviceByCurve25519(curve25519: string): DeviceRecord | null;
  /**
   * Every tracked user with its dirty flag, in any order (the built-in stores: by user ID).
   * Called once when an account is loaded; the engine then keeps its own copy, updated from the
   * batches it commits.
   */
  getTrackedUsers(): TrackedUserRecord[];
  /**
   * The room's record (encryption settings, history visibility), or null for a room never seen.
   * Called at most once per room while an account is loaded: the engine then keeps its own copy,
   * updated from the batches it commits (so the rooms of a sync cost no read per sync).
   */
  getRoom(roomId: string): RoomRecord | null;
  /** The stored memberships of the room (any membership), in any order (the built-in stores: by user ID); `[]` when none. Called to pick the recipients of a room key. */
  getRoomMembers(roomId: string): RoomMemberRecord[];
  /**
   * The first sighting of Megolm message `messageIndex` of this session, or null when it was
   * never seen. Called for each decrypted room event: another event ID at the same index is a
   * replay. The store must keep the first record it was given for an index (a later one for the
   * same index is not stored), or a replay could overwrite the evidence.
   */
  getReplayRecord(senderKey: string, sessionId: string, messageIndex: number): ReplayRecord | null;
  /**
   * The events of `roomId` waiting for session `sessionId`, oldest first (`receivedTs`), events
   * with the same `receivedTs` in the order they were first saved (a batch's `pendingEvents` in
   * array order; an event saved again keeps its first position); `[]` when none. Called when that
   * session's key arrives, to decrypt them; the engine emits them in timeline order
   * (`origin_server_ts`, then this order).
   */
  getPendingEvents(roomId: string, sessionId: string): PendingEventRecord[];
  /**
   * Number of pending events of the account (all rooms), to cap the queue. Called once while an
   * account is loaded, the first time an event has to wait: the engine then keeps the count,
   * updated from the batches it commits (and from the rows it reads with {@link CryptoStore.getPendingEvents}).
   */
  countPendingEvents(): number;
  /**
   * Whether this digest of a to-device message was saved by an earlier batch (and not yet
   * pruned; the built-in stores keep digests for 7 days). Called for each to-device message of
   * a sync, so that a sync processed again after a crash does not apply a message twice.
   */
  hasToDeviceDigest(digest: string): boolean;
  /**
   * The sync token of the last batch that carried one, or null. Called when the client starts
   * syncing; everything that batch's sync delivered must already be readable (the token and its
   * state commit together).
   */
  getSyncToken(): string | null;
  /** The account setting `key` (a small JSON string set through `values`), or null when unset or deleted. Called for the engine's own bookkeeping (key requests, cross-signing state, upload counters). */
  getValue(key: string): string | null;

  /** Apply one batch atomically. The batch must be durable when this returns/resolves. */
  saveChanges(changes: StoreChanges): void | Promise<void>;
}

/** How the worker builds the store, chosen on the main thread (must be structured-cloneable). */
export type StoreConfig =
  | { kind: "sqlite"; path: string; nativeBinding?: string }
  | { kind: "memory" }
  | { kind: "module"; module: string; export: string; options?: unknown };
