/**
 * The default crypto store: one SQLite file (better-sqlite3), opened exclusively by one
 * connection of one process.
 *
 * - The file is created with mode 0600 (its folder with 0700 when missing) before SQLite opens it.
 * - `PRAGMA locking_mode=EXCLUSIVE` plus an immediate `BEGIN EXCLUSIVE; COMMIT` takes the file
 *   lock in {@link SqliteCryptoStore.open} and holds it until {@link SqliteCryptoStore.close}; a
 *   second opener (another process, or another connection of this process) gets
 *   `StoreLockedError` and changes nothing.
 * - WAL journal, `synchronous=FULL` (a committed batch is durable), foreign keys on (deleting an
 *   account cascades), `secure_delete=ON` (deleted pickles are overwritten).
 * - The schema is migrated with numbered, append-only migrations keyed on `PRAGMA user_version`.
 *
 * @packageDocumentation
 */

import Database from "better-sqlite3";
import { chmodSync, closeSync, existsSync, mkdirSync, openSync } from "node:fs";
import { dirname } from "node:path";
import { StoreError, StoreLockedError } from "../../src/protocol/errors.js";
import type {
  AccountRecord,
  CryptoStore,
  DeviceRecord,
  InboundGroupSessionRecord,
  InboundSessionSource,
  OlmSessionRecord,
  OutboundGroupSessionRecord,
  PendingEventRecord,
  ReplayRecord,
  RoomMemberRecord,
  RoomRecord,
  SharedWithEntry,
  StoreChanges,
  TrackedUserRecord,
} from "../../src/protocol/store.js";
import { noopLogger, type Logger } from "../../src/util/logger.js";

/**
 * Schema migrations, applied in order. Entry `i` moves the schema from `user_version = i` to
 * `i + 1`. **Append only**: never edit a released entry, add a new one.
 */
export const SQLITE_MIGRATIONS: readonly string[] = [
  // 1: initial schema.
  `
  CREATE TABLE accounts (
    account_id INTEGER PRIMARY KEY,
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    pickle TEXT NOT NULL,
    device_keys_uploaded INTEGER NOT NULL DEFAULT 0,
    created_ts INTEGER NOT NULL,
    UNIQUE (user_id, device_id)
  );
  CREATE INDEX accounts_by_user ON accounts (user_id, created_ts);

  CREATE TABLE olm_sessions (
    account_id INTEGER NOT NULL REFERENCES accounts (account_id) ON DELETE CASCADE,
    sender_key TEXT NOT NULL,
    session_id TEXT NOT NULL,
    pickle TEXT NOT NULL,
    created_ts INTEGER NOT NULL,
    last_used_ts INTEGER NOT NULL,
    PRIMARY KEY (account_id, sender_key, session_id)
  );

  CREATE TABLE inbound_group_sessions (
    account_id INTEGER NOT NULL REFERENCES accounts (account_id) ON DELETE CASCADE,
    room_id TEXT NOT NULL,
    sender_key TEXT NOT NULL,
    session_id TEXT NOT NULL,
    pickle TEXT NOT NULL,
    claimed_ed25519 TEXT NOT NULL,
    forwarding_chain TEXT NOT NULL, -- JSON array of curve25519 keys, oldest first
    first_known_index INTEGER NOT NULL,
    source TEXT NOT NULL,
    created_ts INTEGER NOT NULL,
    PRIMARY KEY (account_id, room_id, sender_key, session_id)
  );

  CREATE TABLE outbound_group_sessions (
    account_id INTEGER NOT NULL REFERENCES accounts (account_id) ON DELETE CASCADE,
    room_id TEXT NOT NULL,
    session_id TEXT NOT NULL,
    pickle TEXT NOT NULL,
    created_ts INTEGER NOT NULL,
    message_count INTEGER NOT NULL,
    rotation_period_ms INTEGER NOT NULL,
    rotation_period_msgs INTEGER NOT NULL,
    shared_with TEXT NOT NULL, -- JSON array of SharedWithEntry
    PRIMARY KEY (account_id, room_id)
  );

  CREATE TABLE devices (
    account_id INTEGER NOT NULL REFERENCES accounts (account_id) ON DELETE CASCADE,
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    ed25519 TEXT NOT NULL,
    curve25519 TEXT NOT NULL,
    algorithms TEXT NOT NULL, -- JSON array of strings
    display_name TEXT,
    verified INTEGER NOT NULL,
    blacklisted INTEGER NOT NULL,
    ignored INTEGER NOT NULL,
    deleted INTEGER NOT NULL,
    keys_json TEXT NOT NULL,
    first_seen_ts INTEGER NOT NULL,
    PRIMARY KEY (account_id, user_id, device_id)
  );
  CREATE INDEX devices_by_curve25519 ON devices (account_id, curve25519);

  CREATE TABLE tracked_users (
    account_id INTEGER NOT NULL REFERENCES accounts (account_id) ON DELETE CASCADE,
    user_id TEXT NOT NULL,
    dirty INTEGER NOT NULL,
    PRIMARY KEY (account_id, user_id)
  );

  CREATE TABLE rooms (
    account_id INTEGER NOT NULL REFERENCES accounts (account_id) ON DELETE CASCADE,
    room_id TEXT NOT NULL,
    encryption TEXT, -- JSON object, or NULL when the room is not encrypted
    history_visibility TEXT,
    PRIMARY KEY (account_id, room_id)
  );

  CREATE TABLE room_members (
    account_id INTEGER NOT NULL REFERENCES accounts (account_id) ON DELETE CASCADE,
    room_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    membership TEXT NOT NULL,
    PRIMARY KEY (account_id, room_id, user_id)
  );

  CREATE TABLE replay_records (
    account_id INTEGER NOT NULL REFERENCES accounts (account_id) ON DELETE CASCADE,
    sender_key TEXT NOT NULL,
    session_id TEXT NOT NULL,
    message_index INTEGER NOT NULL,
    event_id TEXT NOT NULL,
    origin_server_ts INTEGER NOT NULL,
    PRIMARY KEY (account_id, sender_key, session_id, message_index)
  );

  CREATE TABLE pending_events (
    account_id INTEGER NOT NULL REFERENCES accounts (account_id) ON DELETE CASCADE,
    room_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    session_id TEXT NOT NULL,
    event_json TEXT NOT NULL,
    received_ts INTEGER NOT NULL,
    PRIMARY KEY (account_id, room_id, event_id)
  );
  CREATE INDEX pending_events_by_session ON pending_events (account_id, room_id, session_id);

  CREATE TABLE to_device_digests (
    account_id INTEGER NOT NULL REFERENCES accounts (account_id) ON DELETE CASCADE,
    digest TEXT NOT NULL,
    ts INTEGER NOT NULL,
    PRIMARY KEY (account_id, digest)
  );
  CREATE INDEX to_device_digests_by_ts ON to_device_digests (ts);

  CREATE TABLE kv (
    account_id INTEGER NOT NULL REFERENCES accounts (account_id) ON DELETE CASCADE,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (account_id, key)
  );

  CREATE TABLE sync_state (
    account_id INTEGER PRIMARY KEY REFERENCES accounts (account_id) ON DELETE CASCADE,
    sync_token TEXT NOT NULL
  );
  `,
  // 2: index for expiring old undecryptable events by age.
  `
  CREATE INDEX pending_events_by_age ON pending_events (account_id, received_ts);
  `,
  // 3: replay records packed: one row per session per saved batch (up to REPLAY_CHUNK records, a
  // JSON array of [message_index, event_id, origin_server_ts]) instead of one row per message, and
  // keyed by a session number given in order of first use (so a sync's inserts land in the few
  // index pages of recent sessions, not in one page per session as long random keys would).
  `
  CREATE TABLE replay_sessions (
    sess_no INTEGER PRIMARY KEY,
    account_id INTEGER NOT NULL REFERENCES accounts (account_id) ON DELETE CASCADE,
    sender_key TEXT NOT NULL,
    session_id TEXT NOT NULL,
    UNIQUE (account_id, sender_key, session_id)
  );
  CREATE TABLE replay_chunks (
    sess_no INTEGER NOT NULL REFERENCES replay_sessions (sess_no) ON DELETE CASCADE,
    min_index INTEGER NOT NULL,
    max_index INTEGER NOT NULL,
    records TEXT NOT NULL
  );
  CREATE INDEX replay_chunks_by_session ON replay_chunks (sess_no, min_index);
  INSERT INTO replay_sessions (account_id, sender_key, session_id)
    SELECT DISTINCT account_id, sender_key, session_id FROM replay_records;
  INSERT INTO replay_chunks (sess_no, min_index, max_index, records)
    SELECT s.sess_no, MIN(r.message_index), MAX(r.message_index),
           json_group_array(json_array(r.message_index, r.event_id, r.origin_server_ts))
    FROM replay_records AS r
    JOIN replay_sessions AS s ON s.account_id = r.account_id AND s.sender_key = r.sender_key AND s.session_id = r.session_id
    GROUP BY s.sess_no, r.message_index / 64;
  DROP TABLE replay_records;
  `,
];

/** Most replay records packed into one `replay_chunks` row. */
const REPLAY_CHUNK = 64;
/** Most cached replay session numbers (the cache is emptied when full). */
const REPLAY_SESSION_CACHE = 20_000;
const replaySessionKey = (accountId: number, senderKey: string, sessionId: string): string => `${accountId}\u0000${senderKey}\u0000${sessionId}`;

/** To-device digests older than this are pruned (a crash-replay window, not history). */
const DIGEST_TTL_MS = 7 * 24 * 60 * 60 * 1000;
/** Prune digests at most once per this many batches… */
const PRUNE_EVERY_BATCHES = 256;
/** …or once per this interval, whichever comes first. */
const PRUNE_EVERY_MS = 60 * 60 * 1000;

// ---------------------------------------------------------------------------------------------
// Rows
// ---------------------------------------------------------------------------------------------

interface AccountRow {
  account_id: number;
  user_id: string;
  device_id: string;
  pickle: string;
  device_keys_uploaded: number;
  created_ts: number;
}
interface OlmRow {
  sender_key: string;
  session_id: string;
  pickle: string;
  created_ts: number;
  last_used_ts: number;
}
interface InboundRow {
  room_id: string;
  sender_key: string;
  session_id: string;
  pickle: string;
  claimed_ed25519: string;
  forwarding_chain: string;
  first_known_index: number;
  source: string;
  created_ts: number;
}
interface OutboundRow {
  room_id: string;
  session_id: string;
  pickle: string;
  created_ts: number;
  message_count: number;
  rotation_period_ms: number;
  rotation_period_msgs: number;
  shared_with: string;
}
interface DeviceRow {
  user_id: string;
  device_id: string;
  ed25519: string;
  curve25519: string;
  algorithms: string;
  display_name: string | null;
  verified: number;
  blacklisted: number;
  ignored: number;
  deleted: number;
  keys_json: string;
  first_seen_ts: number;
}
interface RoomRow {
  room_id: string;
  encryption: string | null;
  history_visibility: string | null;
}
interface MemberRow {
  room_id: string;
  user_id: string;
  membership: string;
}
interface ReplayRow {
  /** `[message_index, event_id, origin_server_ts]` as JSON. */
  rec: string;
}
interface PendingRow {
  room_id: string;
  session_id: string;
  event_id: string;
  event_json: string;
  received_ts: number;
}

const toAccount = (r: AccountRow): AccountRecord => ({
  userId: r.user_id,
  deviceId: r.device_id,
  pickle: r.pickle,
  deviceKeysUploaded: r.device_keys_uploaded !== 0,
  createdTs: r.created_ts,
});
const toOlm = (r: OlmRow): OlmSessionRecord => ({
  senderKey: r.sender_key,
  sessionId: r.session_id,
  pickle: r.pickle,
  createdTs: r.created_ts,
  lastUsedTs: r.last_used_ts,
});
const toInbound = (r: InboundRow): InboundGroupSessionRecord => ({
  roomId: r.room_id,
  senderKey: r.sender_key,
  sessionId: r.session_id,
  pickle: r.pickle,
  claimedEd25519: r.claimed_ed25519,
  forwardingChain: JSON.parse(r.forwarding_chain) as string[],
  firstKnownIndex: r.first_known_index,
  source: r.source as InboundSessionSource,
  createdTs: r.created_ts,
});
const toOutbound = (r: OutboundRow): OutboundGroupSessionRecord => ({
  roomId: r.room_id,
  sessionId: r.session_id,
  pickle: r.pickle,
  createdTs: r.created_ts,
  messageCount: r.message_count,
  rotationPeriodMs: r.rotation_period_ms,
  rotationPeriodMsgs: r.rotation_period_msgs,
  sharedWith: JSON.parse(r.shared_with) as SharedWithEntry[],
});
const toDevice = (r: DeviceRow): DeviceRecord => ({
  userId: r.user_id,
  deviceId: r.device_id,
  ed25519: r.ed25519,
  curve25519: r.curve25519,
  algorithms: JSON.parse(r.algorithms) as string[],
  ...(r.display_name !== null ? { displayName: r.display_name } : {}),
  verified: r.verified !== 0,
  blacklisted: r.blacklisted !== 0,
  ignored: r.ignored !== 0,
  deleted: r.deleted !== 0,
  keysJson: r.keys_json,
  firstSeenTs: r.first_seen_ts,
});
const toRoom = (r: RoomRow): RoomRecord => ({
  roomId: r.room_id,
  encryption: r.encryption === null ? null : (JSON.parse(r.encryption) as Record<string, unknown>),
  historyVisibility: r.history_visibility,
});
const toMember = (r: MemberRow): RoomMemberRecord => ({ roomId: r.room_id, userId: r.user_id, membership: r.membership });
/** Group replay records by session, first sighting of an index kept, in rows of at most {@link REPLAY_CHUNK}. */
function packReplay(records: readonly ReplayRecord[]): { senderKey: string; sessionId: string; min: number; max: number; json: string }[] {
  const bySession = new Map<string, Map<number, ReplayRecord>>();
  for (const r of records) {
    const k = `${r.senderKey}\u0000${r.sessionId}`;
    let m = bySession.get(k);
    if (!m) bySession.set(k, (m = new Map()));
    if (!m.has(r.messageIndex)) m.set(r.messageIndex, r);
  }
  const out: { senderKey: string; sessionId: string; min: number; max: number; json: string }[] = [];
  for (const m of bySession.values()) {
    const all = [...m.values()];
    for (let i = 0; i < all.length; i += REPLAY_CHUNK) {
      const part = all.slice(i, i + REPLAY_CHUNK);
      let min = Infinity;
      let max = -Infinity;
      for (const r of part) {
        if (r.messageIndex < min) min = r.messageIndex;
        if (r.messageIndex > max) max = r.messageIndex;
      }
      out.push({ senderKey: part[0]!.senderKey, sessionId: part[0]!.sessionId, min, max, json: JSON.stringify(part.map((r) => [r.messageIndex, r.eventId, r.originServerTs])) });
    }
  }
  return out;
}
const toPending = (r: PendingRow): PendingEventRecord => ({
  roomId: r.room_id,
  sessionId: r.session_id,
  eventId: r.event_id,
  eventJson: r.event_json,
  receivedTs: r.received_ts,
});
const b = (v: boolean): number => (v ? 1 : 0);

// ---------------------------------------------------------------------------------------------
// Cursor
// ---------------------------------------------------------------------------------------------

/**
 * The pagination key of an inbound group session, as used by
 * {@link SqliteCryptoStore.listInboundGroupSessions}: `${roomId}|${senderKey}|${sessionId}`.
 * Pass the key of the last record of a page as `after` to get the next page.
 */
export function inboundGroupSessionCursor(r: { roomId: string; senderKey: string; sessionId: string }): string {
  return `${r.roomId}|${r.senderKey}|${r.sessionId}`;
}

/** Split a cursor from the right (sender keys and session IDs are unpadded base64, never `|`). */
function parseCursor(after: string): [string, string, string] {
  const j = after.lastIndexOf("|");
  const i = j > 0 ? after.lastIndexOf("|", j - 1) : -1;
  if (i < 0) throw new StoreError("Invalid inbound group session cursor.", { reason: "invalid_cursor" });
  return [after.slice(0, i), after.slice(i + 1, j), after.slice(j + 1)];
}

// ---------------------------------------------------------------------------------------------
// Batch validation (before anything is written; never echoes values, which may be secret)
// ---------------------------------------------------------------------------------------------

function fail(path: string, expected: string): never {
  throw new StoreError(`Invalid store batch: ${path} must be ${expected}.`, { field: path });
}
function vStr(v: unknown, p: string): void {
  if (typeof v !== "string") fail(p, "a string");
}
function vStrOrNull(v: unknown, p: string): void {
  if (v !== null && typeof v !== "string") fail(p, "a string or null");
}
function vNum(v: unknown, p: string): void {
  if (typeof v !== "number" || !Number.isFinite(v)) fail(p, "a finite number");
}
function vInt(v: unknown, p: string): void {
  if (typeof v !== "number" || !Number.isSafeInteger(v)) fail(p, "an integer");
}
function vBool(v: unknown, p: string): void {
  if (typeof v !== "boolean") fail(p, "a boolean");
}
function vStrArr(v: unknown, p: string): void {
  if (!Array.isArray(v)) fail(p, "an array of strings");
  (v as unknown[]).forEach((x, i) => vStr(x, `${p}[${i}]`));
}
function vArr(v: unknown, p: string): unknown[] {
  if (v === undefined) return [];
  if (!Array.isArray(v)) fail(p, "an array");
  return v as unknown[];
}
function vRec(v: unknown, p: string): Record<string, unknown> {
  if (typeof v !== "object" || v === null || Array.isArray(v)) fail(p, "an object");
  return v as Record<string, unknown>;
}
const SOURCES: readonly string[] = ["own", "room_key", "forwarded", "imported"];
const SHARE_STATES: readonly string[] = ["pending", "shared", "withheld"];

/** Throws `StoreError` when `c` does not match the {@link StoreChanges} shape. */
function validateChanges(c: StoreChanges): void {
  vRec(c, "changes");
  if (c.account !== undefined) {
    const a = vRec(c.account, "account");
    vStr(a.userId, "account.userId");
    vStr(a.deviceId, "account.deviceId");
    vStr(a.pickle, "account.pickle");
    vBool(a.deviceKeysUploaded, "account.deviceKeysUploaded");
    vNum(a.createdTs, "account.createdTs");
  }
  vArr(c.olmSessions, "olmSessions").forEach((x, i) => {
    const p = `olmSessions[${i}]`;
    const r = vRec(x, p);
    vStr(r.senderKey, `${p}.senderKey`);
    vStr(r.sessionId, `${p}.sessionId`);
    vStr(r.pickle, `${p}.pickle`);
    vNum(r.createdTs, `${p}.createdTs`);
    vNum(r.lastUsedTs, `${p}.lastUsedTs`);
  });
  vArr(c.inboundGroupSessions, "inboundGroupSessions").forEach((x, i) => {
    const p = `inboundGroupSessions[${i}]`;
    const r = vRec(x, p);
    vStr(r.roomId, `${p}.roomId`);
    vStr(r.senderKey, `${p}.senderKey`);
    vStr(r.sessionId, `${p}.sessionId`);
    vStr(r.pickle, `${p}.pickle`);
    vStr(r.claimedEd25519, `${p}.claimedEd25519`);
    vStrArr(r.forwardingChain, `${p}.forwardingChain`);
    vInt(r.firstKnownIndex, `${p}.firstKnownIndex`);
    if (typeof r.source !== "string" || !SOURCES.includes(r.source)) fail(`${p}.source`, SOURCES.join(" | "));
    vNum(r.createdTs, `${p}.createdTs`);
  });
  vArr(c.outboundGroupSessions, "outboundGroupSessions").forEach((x, i) => {
    const p = `outboundGroupSessions[${i}]`;
    const r = vRec(x, p);
    vStr(r.roomId, `${p}.roomId`);
    vStr(r.sessionId, `${p}.sessionId`);
    vStr(r.pickle, `${p}.pickle`);
    vNum(r.createdTs, `${p}.createdTs`);
    vInt(r.messageCount, `${p}.messageCount`);
    vNum(r.rotationPeriodMs, `${p}.rotationPeriodMs`);
    vNum(r.rotationPeriodMsgs, `${p}.rotationPeriodMsgs`);
    vArr(r.sharedWith ?? null, `${p}.sharedWith`).forEach((y, k) => {
      const q = `${p}.sharedWith[${k}]`;
      const e = vRec(y, q);
      vStr(e.userId, `${q}.userId`);
      vStr(e.deviceId, `${q}.deviceId`);
      vStr(e.curve25519, `${q}.curve25519`);
      if (typeof e.state !== "string" || !SHARE_STATES.includes(e.state)) fail(`${q}.state`, SHARE_STATES.join(" | "));
      if (e.withheldCode !== undefined) vStr(e.withheldCode, `${q}.withheldCode`);
    });
  });
  vArr(c.deletedOutboundGroupSessions, "deletedOutboundGroupSessions").forEach((x, i) => vStr(x, `deletedOutboundGroupSessions[${i}]`));
  vArr(c.devices, "devices").forEach((x, i) => {
    const p = `devices[${i}]`;
    const r = vRec(x, p);
    vStr(r.userId, `${p}.userId`);
    vStr(r.deviceId, `${p}.deviceId`);
    vStr(r.ed25519, `${p}.ed25519`);
    vStr(r.curve25519, `${p}.curve25519`);
    vStrArr(r.algorithms, `${p}.algorithms`);
    if (r.displayName !== undefined) vStr(r.displayName, `${p}.displayName`);
    vBool(r.verified, `${p}.verified`);
    vBool(r.blacklisted, `${p}.blacklisted`);
    vBool(r.ignored, `${p}.ignored`);
    vBool(r.deleted, `${p}.deleted`);
    vStr(r.keysJson, `${p}.keysJson`);
    vNum(r.firstSeenTs, `${p}.firstSeenTs`);
  });
  vArr(c.trackedUsers, "trackedUsers").forEach((x, i) => {
    const p = `trackedUsers[${i}]`;
    const r = vRec(x, p);
    vStr(r.userId, `${p}.userId`);
    vBool(r.dirty, `${p}.dirty`);
  });
  vArr(c.untrackedUsers, "untrackedUsers").forEach((x, i) => vStr(x, `untrackedUsers[${i}]`));
  vArr(c.rooms, "rooms").forEach((x, i) => {
    const p = `rooms[${i}]`;
    const r = vRec(x, p);
    vStr(r.roomId, `${p}.roomId`);
    if (r.encryption !== null) vRec(r.encryption, `${p}.encryption`);
    vStrOrNull(r.historyVisibility, `${p}.historyVisibility`);
  });
  vArr(c.roomMembers, "roomMembers").forEach((x, i) => {
    const p = `roomMembers[${i}]`;
    const r = vRec(x, p);
    vStr(r.roomId, `${p}.roomId`);
    vStr(r.userId, `${p}.userId`);
    vStr(r.membership, `${p}.membership`);
  });
  vArr(c.replayRecords, "replayRecords").forEach((x, i) => {
    const p = `replayRecords[${i}]`;
    const r = vRec(x, p);
    vStr(r.senderKey, `${p}.senderKey`);
    vStr(r.sessionId, `${p}.sessionId`);
    vInt(r.messageIndex, `${p}.messageIndex`);
    vStr(r.eventId, `${p}.eventId`);
    vNum(r.originServerTs, `${p}.originServerTs`);
  });
  vArr(c.pendingEvents, "pendingEvents").forEach((x, i) => {
    const p = `pendingEvents[${i}]`;
    const r = vRec(x, p);
    vStr(r.roomId, `${p}.roomId`);
    vStr(r.sessionId, `${p}.sessionId`);
    vStr(r.eventId, `${p}.eventId`);
    vStr(r.eventJson, `${p}.eventJson`);
    vNum(r.receivedTs, `${p}.receivedTs`);
  });
  vArr(c.deletedPendingEvents, "deletedPendingEvents").forEach((x, i) => {
    const p = `deletedPendingEvents[${i}]`;
    const r = vRec(x, p);
    vStr(r.roomId, `${p}.roomId`);
    vStr(r.eventId, `${p}.eventId`);
  });
  vArr(c.toDeviceDigests, "toDeviceDigests").forEach((x, i) => vStr(x, `toDeviceDigests[${i}]`));
  if (c.values !== undefined) {
    for (const [k, v] of Object.entries(vRec(c.values, "values"))) vStrOrNull(v, `values[${JSON.stringify(k)}]`);
  }
  if (c.syncToken !== undefined) vStr(c.syncToken, "syncToken");
}

/** True when the batch writes nothing besides (possibly) the account. */
function isEmptyBatch(c: StoreChanges): boolean {
  return (
    !c.olmSessions?.length &&
    !c.inboundGroupSessions?.length &&
    !c.outboundGroupSessions?.length &&
    !c.deletedOutboundGroupSessions?.length &&
    !c.devices?.length &&
    !c.trackedUsers?.length &&
    !c.untrackedUsers?.length &&
    !c.rooms?.length &&
    !c.roomMembers?.length &&
    !c.replayRecords?.length &&
    !c.pendingEvents?.length &&
    !c.deletedPendingEvents?.length &&
    !c.toDeviceDigests?.length &&
    (c.values === undefined || Object.keys(c.values).length === 0) &&
    c.syncToken === undefined
  );
}

// ---------------------------------------------------------------------------------------------
// Statements
// ---------------------------------------------------------------------------------------------

type Db = Database.Database;

/** Every statement the store runs, prepared once per connection. */
function prepareStatements(db: Db) {
  return {
    listAccounts: db.prepare<[], AccountRow>("SELECT * FROM accounts ORDER BY created_ts, account_id"),
    getAccount: db.prepare<[string, string], AccountRow>("SELECT * FROM accounts WHERE user_id = ? AND device_id = ?"),
    latestDeviceOfUser: db.prepare<[string], { device_id: string }>(
      "SELECT device_id FROM accounts WHERE user_id = ? ORDER BY created_ts DESC, account_id DESC LIMIT 1",
    ),
    upsertAccount: db.prepare<[string, string, string, number, number], unknown>(
      `INSERT INTO accounts (user_id, device_id, pickle, device_keys_uploaded, created_ts) VALUES (?, ?, ?, ?, ?)
       ON CONFLICT (user_id, device_id) DO UPDATE SET pickle = excluded.pickle,
         device_keys_uploaded = excluded.device_keys_uploaded, created_ts = excluded.created_ts`,
    ),
    deleteAccount: db.prepare<[string, string], unknown>("DELETE FROM accounts WHERE user_id = ? AND device_id = ?"),

    getOlmSessions: db.prepare<[number, string], OlmRow>(
      "SELECT * FROM olm_sessions WHERE account_id = ? AND sender_key = ? ORDER BY last_used_ts DESC, session_id",
    ),
    upsertOlmSession: db.prepare<[number, string, string, string, number, number], unknown>(
      `INSERT INTO olm_sessions (account_id, sender_key, session_id, pickle, created_ts, last_used_ts) VALUES (?, ?, ?, ?, ?, ?)
       ON CONFLICT (account_id, sender_key, session_id) DO UPDATE SET pickle = excluded.pickle,
         created_ts = excluded.created_ts, last_used_ts = excluded.last_used_ts`,
    ),

    getInbound: db.prepare<[number, string, string, string], InboundRow>(
      "SELECT * FROM inbound_group_sessions WHERE account_id = ? AND room_id = ? AND sender_key = ? AND session_id = ?",
    ),
    countInbound: db.prepare<[number], number>("SELECT count(*) FROM inbound_group_sessions WHERE account_id = ?").pluck(),
    listInboundFirst: db.prepare<[number, number], InboundRow>(
      "SELECT * FROM inbound_group_sessions WHERE account_id = ? ORDER BY room_id, sender_key, session_id LIMIT ?",
    ),
    listInboundAfter: db.prepare<[number, string, string, string, number], InboundRow>(
      `SELECT * FROM inbound_group_sessions WHERE account_id = ? AND (room_id, sender_key, session_id) > (?, ?, ?)
       ORDER BY room_id, sender_key, session_id LIMIT ?`,
    ),
    upsertInbound: db.prepare<[number, string, string, string, string, string, string, number, string, number], unknown>(
      `INSERT INTO inbound_group_sessions (account_id, room_id, sender_key, session_id, pickle, claimed_ed25519,
         forwarding_chain, first_known_index, source, created_ts) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (account_id, room_id, sender_key, session_id) DO UPDATE SET pickle = excluded.pickle,
         claimed_ed25519 = excluded.claimed_ed25519, forwarding_chain = excluded.forwarding_chain,
         first_known_index = excluded.first_known_index, source = excluded.source, created_ts = excluded.created_ts`,
    ),

    getOutbound: db.prepare<[number, string], OutboundRow>("SELECT * FROM outbound_group_sessions WHERE account_id = ? AND room_id = ?"),
    deleteOutbound: db.prepare<[number, string], unknown>("DELETE FROM outbound_group_sessions WHERE account_id = ? AND room_id = ?"),
    upsertOutbound: db.prepare<[number, string, string, string, number, number, number, number, string], unknown>(
      `INSERT INTO outbound_group_sessions (account_id, room_id, session_id, pickle, created_ts, message_count,
         rotation_period_ms, rotation_period_msgs, shared_with) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (account_id, room_id) DO UPDATE SET session_id = excluded.session_id, pickle = excluded.pickle,
         created_ts = excluded.created_ts, message_count = excluded.message_count,
         rotation_period_ms = excluded.rotation_period_ms, rotation_period_msgs = excluded.rotation_period_msgs,
         shared_with = excluded.shared_with`,
    ),

    getUserDevices: db.prepare<[number, string], DeviceRow>("SELECT * FROM devices WHERE account_id = ? AND user_id = ? ORDER BY device_id"),
    getDevice: db.prepare<[number, string, string], DeviceRow>("SELECT * FROM devices WHERE account_id = ? AND user_id = ? AND device_id = ?"),
    getDeviceByCurve: db.prepare<[number, string], DeviceRow>(
      `SELECT * FROM devices WHERE account_id = ? AND curve25519 = ?
       ORDER BY deleted, first_seen_ts, user_id, device_id LIMIT 1`,
    ),
    upsertDevice: db.prepare<
      [number, string, string, string, string, string, string | null, number, number, number, number, string, number],
      unknown
    >(
      `INSERT INTO devices (account_id, user_id, device_id, ed25519, curve25519, algorithms, display_name, verified,
         blacklisted, ignored, deleted, keys_json, first_seen_ts) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (account_id, user_id, device_id) DO UPDATE SET ed25519 = excluded.ed25519,
         curve25519 = excluded.curve25519, algorithms = excluded.algorithms, display_name = excluded.display_name,
         verified = excluded.verified, blacklisted = excluded.blacklisted, ignored = excluded.ignored,
         deleted = excluded.deleted, keys_json = excluded.keys_json, first_seen_ts = excluded.first_seen_ts`,
    ),

    getTrackedUsers: db.prepare<[number], { user_id: string; dirty: number }>(
      "SELECT user_id, dirty FROM tracked_users WHERE account_id = ? ORDER BY user_id",
    ),
    upsertTrackedUser: db.prepare<[number, string, number], unknown>(
      `INSERT INTO tracked_users (account_id, user_id, dirty) VALUES (?, ?, ?)
       ON CONFLICT (account_id, user_id) DO UPDATE SET dirty = excluded.dirty`,
    ),
    deleteTrackedUser: db.prepare<[number, string], unknown>("DELETE FROM tracked_users WHERE account_id = ? AND user_id = ?"),

    getRoom: db.prepare<[number, string], RoomRow>("SELECT room_id, encryption, history_visibility FROM rooms WHERE account_id = ? AND room_id = ?"),
    upsertRoom: db.prepare<[number, string, string | null, string | null], unknown>(
      `INSERT INTO rooms (account_id, room_id, encryption, history_visibility) VALUES (?, ?, ?, ?)
       ON CONFLICT (account_id, room_id) DO UPDATE SET encryption = excluded.encryption,
         history_visibility = excluded.history_visibility`,
    ),
    getRoomMembers: db.prepare<[number, string], MemberRow>(
      "SELECT room_id, user_id, membership FROM room_members WHERE account_id = ? AND room_id = ? ORDER BY user_id",
    ),
    upsertRoomMember: db.prepare<[number, string, string, string], unknown>(
      `INSERT INTO room_members (account_id, room_id, user_id, membership) VALUES (?, ?, ?, ?)
       ON CONFLICT (account_id, room_id, user_id) DO UPDATE SET membership = excluded.membership`,
    ),

    getReplaySession: db.prepare<[number, string, string], number>("SELECT sess_no FROM replay_sessions WHERE account_id = ? AND sender_key = ? AND session_id = ?").pluck(),
    insertReplaySession: db.prepare<[number, string, string], unknown>("INSERT INTO replay_sessions (account_id, sender_key, session_id) VALUES (?, ?, ?)"),
    // The earliest row (rowid order) holding the index is its first sighting.
    getReplay: db.prepare<[number, number, number, number], ReplayRow>(
      `SELECT j.value AS rec FROM replay_chunks AS c, json_each(c.records) AS j
       WHERE c.sess_no = ? AND c.min_index <= ? AND c.max_index >= ? AND json_extract(j.value, '$[0]') = ?
       ORDER BY c.rowid, j.key LIMIT 1`,
    ),
    insertReplay: db.prepare<[number, number, number, string], unknown>("INSERT INTO replay_chunks (sess_no, min_index, max_index, records) VALUES (?, ?, ?, ?)"),

    getPending: db.prepare<[number, string, string], PendingRow>(
      `SELECT room_id, session_id, event_id, event_json, received_ts FROM pending_events
       WHERE account_id = ? AND room_id = ? AND session_id = ? ORDER BY received_ts, event_id`,
    ),
    countPending: db.prepare<[number], number>("SELECT count(*) FROM pending_events WHERE account_id = ?").pluck(),
    upsertPending: db.prepare<[number, string, string, string, string, number], unknown>(
      `INSERT INTO pending_events (account_id, room_id, event_id, session_id, event_json, received_ts) VALUES (?, ?, ?, ?, ?, ?)
       ON CONFLICT (account_id, room_id, event_id) DO UPDATE SET session_id = excluded.session_id,
         event_json = excluded.event_json, received_ts = excluded.received_ts`,
    ),
    deletePending: db.prepare<[number, string, string], unknown>("DELETE FROM pending_events WHERE account_id = ? AND room_id = ? AND event_id = ?"),

    hasDigest: db.prepare<[number, string], number>("SELECT 1 FROM to_device_digests WHERE account_id = ? AND digest = ?").pluck(),
    insertDigest: db.prepare<[number, string, number], unknown>(
      "INSERT INTO to_device_digests (account_id, digest, ts) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
    ),
    pruneDigests: db.prepare<[number], unknown>("DELETE FROM to_device_digests WHERE ts < ?"),

    getValue: db.prepare<[number, string], string>("SELECT value FROM kv WHERE account_id = ? AND key = ?").pluck(),
    setValue: db.prepare<[number, string, string], unknown>(
      "INSERT INTO kv (account_id, key, value) VALUES (?, ?, ?) ON CONFLICT (account_id, key) DO UPDATE SET value = excluded.value",
    ),
    deleteValue: db.prepare<[number, string], unknown>("DELETE FROM kv WHERE account_id = ? AND key = ?"),

    getSyncToken: db.prepare<[number], string>("SELECT sync_token FROM sync_state WHERE account_id = ?").pluck(),
    setSyncToken: db.prepare<[number, string], unknown>(
      "INSERT INTO sync_state (account_id, sync_token) VALUES (?, ?) ON CONFLICT (account_id) DO UPDATE SET sync_token = excluded.sync_token",
    ),
  };
}

type Statements = ReturnType<typeof prepareStatements>;

/** The selected account: its IDs, and its row ID once the row exists. */
interface Scope {
  userId: string;
  deviceId: string;
  accountId: number | null;
}

function isLockError(e: unknown): boolean {
  const code = (e as { code?: unknown } | null)?.code;
  return typeof code === "string" && (code.startsWith("SQLITE_BUSY") || code.startsWith("SQLITE_LOCKED"));
}
function errMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/**
 * {@link CryptoStore} on one SQLite file, held exclusively from {@link SqliteCryptoStore.open}
 * to {@link SqliteCryptoStore.close}.
 *
 * Reads are synchronous queries on prepared statements; {@link SqliteCryptoStore.saveChanges}
 * runs the whole batch in one transaction and returns once it is committed with
 * `synchronous=FULL` (durable).
 *
 * Before {@link SqliteCryptoStore.useAccount} every account-scoped read throws `StoreError`.
 * After `useAccount` returned null (no such account yet), reads return empty results and the
 * first {@link SqliteCryptoStore.saveChanges} must carry `account`, which creates the row.
 */
export class SqliteCryptoStore implements CryptoStore {
  /** The database file path. */
  readonly location: string;
  private readonly path: string;
  private readonly logger: Logger;
  private db: Db | null = null;
  private st: Statements | null = null;
  private scope: Scope | null = null;
  private batchesSincePrune = 0;
  /** (account, sender key, session ID) → replay session number; see migration 3. */
  private readonly replaySessions = new Map<string, number>();
  private lastPruneTs = 0;

  /**
   * @param path - Database file; its folder is created (mode 0700) when missing.
   * @param logger - Receives open/migration/lock diagnostics (never record contents).
   */
  constructor(path: string, logger: Logger = noopLogger) {
    this.path = path;
    this.location = path;
    this.logger = logger;
  }

  /**
   * Create the file (mode 0600), open it, take the exclusive lock and migrate. Idempotent while
   * open. Throws `StoreLockedError` when another connection or process holds the file, and
   * `StoreError` on any other failure (including a schema newer than this code).
   */
  async open(): Promise<void> {
    if (this.db) return;
    const path = this.path;
    const inMemory = path === ":memory:";
    if (!inMemory) this.prepareFile();
    let db: Db;
    try {
      db = new Database(path, inMemory ? {} : { fileMustExist: true });
    } catch (e) {
      throw this.openError(e);
    }
    try {
      db.pragma("busy_timeout = 0");
      // Before the first access, so that WAL keeps its index in heap memory (no -shm file) and
      // the lock, once taken, is held until close.
      db.pragma("locking_mode = EXCLUSIVE");
      const mode = String(db.pragma("journal_mode = WAL", { simple: true })).toLowerCase();
      if (mode !== "wal" && !inMemory) throw new StoreError(`Cannot switch ${path} to WAL mode (got ${mode}).`, { path });
      db.pragma("synchronous = FULL");
      db.pragma("foreign_keys = ON");
      db.pragma("secure_delete = ON");
      // The first write in exclusive locking mode takes the EXCLUSIVE lock and keeps it.
      db.exec("BEGIN EXCLUSIVE; COMMIT;");
      this.migrate(db);
      if (!inMemory) {
        for (const suffix of ["-wal", "-shm", "-journal"]) {
          const p = path + suffix;
          if (existsSync(p)) chmodSync(p, 0o600);
        }
      }
      this.st = prepareStatements(db);
      this.db = db;
      this.logger.debug(`crypto store opened: ${path}`);
    } catch (e) {
      try {
        db.close();
      } catch {
        // already failing
      }
      this.st = null;
      throw this.openError(e);
    }
  }

  private prepareFile(): void {
    const path = this.path;
    try {
      const dir = dirname(path);
      if (mkdirSync(dir, { recursive: true, mode: 0o700 }) !== undefined) chmodSync(dir, 0o700);
      closeSync(openSync(path, "a", 0o600));
      chmodSync(path, 0o600);
    } catch (e) {
      throw new StoreError(`Cannot create the crypto store ${path}: ${errMessage(e)}`, { path });
    }
  }

  private openError(e: unknown): Error {
    if (e instanceof StoreLockedError || e instanceof StoreError) return e;
    if (isLockError(e)) {
      this.logger.warn(`crypto store ${this.path} is locked by another connection or process`);
      return new StoreLockedError(this.path);
    }
    const code = (e as { code?: unknown } | null)?.code;
    return new StoreError(`Cannot open the crypto store ${this.path}: ${errMessage(e)}`, {
      path: this.path,
      ...(typeof code === "string" ? { sqliteCode: code } : {}),
    });
  }

  private migrate(db: Db): void {
    const current = Number(db.pragma("user_version", { simple: true }));
    if (current > SQLITE_MIGRATIONS.length) {
      throw new StoreError(`The crypto store ${this.path} has schema version ${current}, newer than this SDK supports (${SQLITE_MIGRATIONS.length}).`, {
        path: this.path,
        schemaVersion: current,
      });
    }
    for (let v = current; v < SQLITE_MIGRATIONS.length; v++) {
      const sql = SQLITE_MIGRATIONS[v]!;
      db.transaction(() => {
        db.exec(sql);
        db.pragma(`user_version = ${v + 1}`);
      })();
      this.logger.info(`crypto store ${this.path} migrated to schema version ${v + 1}`);
    }
  }

  /** Close the connection (releasing the lock). Idempotent. */
  async close(): Promise<void> {
    const db = this.db;
    this.db = null;
    this.st = null;
    this.scope = null;
    this.replaySessions.clear();
    if (db?.open) {
      db.close();
      this.logger.debug(`crypto store closed: ${this.path}`);
    }
  }

  private s(): Statements {
    if (!this.st) throw new StoreError(`The crypto store ${this.path} is not open.`, { path: this.path });
    return this.st;
  }

  /** Account row ID of the scope; null when the account does not exist yet. */
  private acct(): number | null {
    this.s();
    if (!this.scope) throw new StoreError("No account selected; call useAccount() first.");
    return this.scope.accountId;
  }

  /** All accounts, oldest first. */
  listAccounts(): { userId: string; deviceId: string; createdTs: number }[] {
    return this.s()
      .listAccounts.all()
      .map((r) => ({ userId: r.user_id, deviceId: r.device_id, createdTs: r.created_ts }));
  }

  /** Device ID of the account of `userId` with the highest `createdTs` (ties: last inserted). */
  getStoredDeviceId(userId: string): string | null {
    return this.s().latestDeviceOfUser.get(userId)?.device_id ?? null;
  }

  /** Select the account; returns its record or null when it does not exist yet. */
  async useAccount(userId: string, deviceId: string): Promise<AccountRecord | null> {
    const row = this.s().getAccount.get(userId, deviceId);
    this.scope = { userId, deviceId, accountId: row?.account_id ?? null };
    return row ? toAccount(row) : null;
  }

  /** Delete the account row; every record of the account goes with it (foreign-key cascade). */
  async deleteAccount(userId: string, deviceId: string): Promise<void> {
    const info = this.s().deleteAccount.run(userId, deviceId);
    this.replaySessions.clear(); // the account's replay sessions went with it
    if (this.scope && this.scope.userId === userId && this.scope.deviceId === deviceId) this.scope.accountId = null;
    if (info.changes > 0) this.logger.info(`crypto store: deleted account ${userId} / ${deviceId}`);
  }

  /** Sessions with `senderKey`, most recently used first. */
  getOlmSessions(senderKey: string): OlmSessionRecord[] {
    const a = this.acct();
    return a === null ? [] : this.s().getOlmSessions.all(a, senderKey).map(toOlm);
  }

  getInboundGroupSession(roomId: string, senderKey: string, sessionId: string): InboundGroupSessionRecord | null {
    const a = this.acct();
    if (a === null) return null;
    const r = this.s().getInbound.get(a, roomId, senderKey, sessionId);
    return r ? toInbound(r) : null;
  }

  countInboundGroupSessions(): number {
    const a = this.acct();
    return a === null ? 0 : (this.s().countInbound.get(a) ?? 0);
  }

  /**
   * A page of inbound group sessions ordered by (roomId, senderKey, sessionId), compared
   * bytewise in UTF-8 (SQLite BINARY collation).
   *
   * `after` is the cursor of the last record of the previous page:
   * `${roomId}|${senderKey}|${sessionId}` (see {@link inboundGroupSessionCursor}); it is split
   * from the right, so room IDs may contain `|`. Records added or removed between pages never
   * cause duplicates or skips of unchanged records.
   */
  listInboundGroupSessions(limit: number, after?: string): InboundGroupSessionRecord[] {
    const a = this.acct();
    if (a === null || !(limit > 0)) return [];
    const n = Math.floor(limit);
    if (after === undefined) return this.s().listInboundFirst.all(a, n).map(toInbound);
    const [roomId, senderKey, sessionId] = parseCursor(after);
    return this.s().listInboundAfter.all(a, roomId, senderKey, sessionId, n).map(toInbound);
  }

  getOutboundGroupSession(roomId: string): OutboundGroupSessionRecord | null {
    const a = this.acct();
    if (a === null) return null;
    const r = this.s().getOutbound.get(a, roomId);
    return r ? toOutbound(r) : null;
  }

  /** Devices of `userId` (deleted ones included), ordered by device ID. */
  getUserDevices(userId: string): DeviceRecord[] {
    const a = this.acct();
    return a === null ? [] : this.s().getUserDevices.all(a, userId).map(toDevice);
  }

  getDevice(userId: string, deviceId: string): DeviceRecord | null {
    const a = this.acct();
    if (a === null) return null;
    const r = this.s().getDevice.get(a, userId, deviceId);
    return r ? toDevice(r) : null;
  }

  /**
   * The device with this curve25519 key. Should several devices claim it, a non-deleted one is
   * preferred, then the one seen first.
   */
  getDeviceByCurve25519(curve25519: string): DeviceRecord | null {
    const a = this.acct();
    if (a === null) return null;
    const r = this.s().getDeviceByCurve.get(a, curve25519);
    return r ? toDevice(r) : null;
  }

  /** Tracked users ordered by user ID. */
  getTrackedUsers(): TrackedUserRecord[] {
    const a = this.acct();
    return a === null ? [] : this.s().getTrackedUsers.all(a).map((r) => ({ userId: r.user_id, dirty: r.dirty !== 0 }));
  }

  getRoom(roomId: string): RoomRecord | null {
    const a = this.acct();
    if (a === null) return null;
    const r = this.s().getRoom.get(a, roomId);
    return r ? toRoom(r) : null;
  }

  /** Members of the room ordered by user ID (any membership). */
  getRoomMembers(roomId: string): RoomMemberRecord[] {
    const a = this.acct();
    return a === null ? [] : this.s().getRoomMembers.all(a, roomId).map(toMember);
  }

  getReplayRecord(senderKey: string, sessionId: string, messageIndex: number): ReplayRecord | null {
    const a = this.acct();
    if (a === null) return null;
    const sess = this.replaySessionNo(a, senderKey, sessionId);
    if (sess === null) return null;
    const r = this.s().getReplay.get(sess, messageIndex, messageIndex, messageIndex);
    if (!r) return null;
    const v = JSON.parse(r.rec) as unknown;
    if (!Array.isArray(v) || v[0] !== messageIndex || typeof v[1] !== "string" || typeof v[2] !== "number") {
      throw new StoreError(`A replay record of session ${sessionId} in the crypto store is corrupted.`, { path: this.path });
    }
    return { senderKey, sessionId, messageIndex, eventId: v[1], originServerTs: v[2] };
  }

  /** Pending events of one session in a room, oldest first. */
  getPendingEvents(roomId: string, sessionId: string): PendingEventRecord[] {
    const a = this.acct();
    return a === null ? [] : this.s().getPending.all(a, roomId, sessionId).map(toPending);
  }

  countPendingEvents(): number {
    const a = this.acct();
    return a === null ? 0 : (this.s().countPending.get(a) ?? 0);
  }

  hasToDeviceDigest(digest: string): boolean {
    const a = this.acct();
    return a === null ? false : this.s().hasDigest.get(a, digest) !== undefined;
  }

  getSyncToken(): string | null {
    const a = this.acct();
    return a === null ? null : (this.s().getSyncToken.get(a) ?? null);
  }

  getValue(key: string): string | null {
    const a = this.acct();
    return a === null ? null : (this.s().getValue.get(a, key) ?? null);
  }

  /**
   * Apply one batch in one transaction (all or nothing); durable on return. The batch is
   * validated first, and any failure throws `StoreError` with nothing applied.
   *
   * Order inside the batch: `account` (upsert; selects it when no account was selected yet),
   * then upserts, with `deletedOutboundGroupSessions` before `outboundGroupSessions`,
   * `untrackedUsers` after `trackedUsers` and `deletedPendingEvents` after `pendingEvents`
   * (so removals win). Replay records keep the first sighting (an existing record is not
   * overwritten). `values` with a null value delete the key.
   */
  saveChanges(changes: StoreChanges): void {
    const st = this.s();
    const db = this.db!;
    validateChanges(changes);
    const acc = changes.account;
    const scope = this.scope;
    if (!scope && !acc) throw new StoreError("No account selected; call useAccount() first.");
    if (scope && acc && (acc.userId !== scope.userId || acc.deviceId !== scope.deviceId)) {
      throw new StoreError("The batch's account is not the selected account.");
    }
    if (!acc && scope?.accountId === null) {
      if (isEmptyBatch(changes)) return;
      throw new StoreError("The selected account does not exist yet; the first batch must carry `account`.");
    }
    const now = Date.now();
    const prune = ++this.batchesSincePrune >= PRUNE_EVERY_BATCHES || now - this.lastPruneTs >= PRUNE_EVERY_MS;
    let accountId: number;
    // Session numbers handed out in this batch: cached only once the batch is committed.
    const newReplaySessions: [string, number][] = [];
    try {
      accountId = db.transaction((): number => {
        let a: number;
        if (acc) {
          st.upsertAccount.run(acc.userId, acc.deviceId, acc.pickle, b(acc.deviceKeysUploaded), acc.createdTs);
          a = st.getAccount.get(acc.userId, acc.deviceId)!.account_id;
        } else {
          a = scope!.accountId!;
        }
        for (const r of changes.olmSessions ?? []) st.upsertOlmSession.run(a, r.senderKey, r.sessionId, r.pickle, r.createdTs, r.lastUsedTs);
        for (const r of changes.inboundGroupSessions ?? []) {
          st.upsertInbound.run(
            a,
            r.roomId,
            r.senderKey,
            r.sessionId,
            r.pickle,
            r.claimedEd25519,
            JSON.stringify(r.forwardingChain),
            r.firstKnownIndex,
            r.source,
            r.createdTs,
          );
        }
        for (const roomId of changes.deletedOutboundGroupSessions ?? []) st.deleteOutbound.run(a, roomId);
        for (const r of changes.outboundGroupSessions ?? []) {
          st.upsertOutbound.run(
            a,
            r.roomId,
            r.sessionId,
            r.pickle,
            r.createdTs,
            r.messageCount,
            r.rotationPeriodMs,
            r.rotationPeriodMsgs,
            JSON.stringify(r.sharedWith),
          );
        }
        for (const r of changes.devices ?? []) {
          st.upsertDevice.run(
            a,
            r.userId,
            r.deviceId,
            r.ed25519,
            r.curve25519,
            JSON.stringify(r.algorithms),
            r.displayName ?? null,
            b(r.verified),
            b(r.blacklisted),
            b(r.ignored),
            b(r.deleted),
            r.keysJson,
            r.firstSeenTs,
          );
        }
        for (const r of changes.trackedUsers ?? []) st.upsertTrackedUser.run(a, r.userId, b(r.dirty));
        for (const userId of changes.untrackedUsers ?? []) st.deleteTrackedUser.run(a, userId);
        for (const r of changes.rooms ?? []) {
          st.upsertRoom.run(a, r.roomId, r.encryption === null ? null : JSON.stringify(r.encryption), r.historyVisibility);
        }
        for (const r of changes.roomMembers ?? []) st.upsertRoomMember.run(a, r.roomId, r.userId, r.membership);
        if (changes.replayRecords?.length) {
          for (const c of packReplay(changes.replayRecords)) {
            let sess = this.replaySessionNo(a, c.senderKey, c.sessionId);
            if (sess === null) {
              sess = Number(st.insertReplaySession.run(a, c.senderKey, c.sessionId).lastInsertRowid);
              newReplaySessions.push([replaySessionKey(a, c.senderKey, c.sessionId), sess]);
            }
            st.insertReplay.run(sess, c.min, c.max, c.json);
          }
        }
        for (const r of changes.pendingEvents ?? []) st.upsertPending.run(a, r.roomId, r.eventId, r.sessionId, r.eventJson, r.receivedTs);
        for (const r of changes.deletedPendingEvents ?? []) st.deletePending.run(a, r.roomId, r.eventId);
        for (const d of changes.toDeviceDigests ?? []) st.insertDigest.run(a, d, now);
        for (const [k, v] of Object.entries(changes.values ?? {})) {
          if (v === null) st.deleteValue.run(a, k);
          else st.setValue.run(a, k, v);
        }
        if (changes.syncToken !== undefined) st.setSyncToken.run(a, changes.syncToken);
        if (prune) st.pruneDigests.run(now - DIGEST_TTL_MS);
        return a;
      })();
    } catch (e) {
      if (e instanceof StoreError) throw e;
      const code = (e as { code?: unknown } | null)?.code;
      throw new StoreError(`Saving to the crypto store failed: ${errMessage(e)}`, {
        path: this.path,
        ...(typeof code === "string" ? { sqliteCode: code } : {}),
      });
    }
    if (prune) {
      this.batchesSincePrune = 0;
      this.lastPruneTs = now;
    }
    if (newReplaySessions.length) {
      if (this.replaySessions.size + newReplaySessions.length > REPLAY_SESSION_CACHE) this.replaySessions.clear();
      for (const [k, v] of newReplaySessions) this.replaySessions.set(k, v);
    }
    if (acc) this.scope = { userId: acc.userId, deviceId: acc.deviceId, accountId };
  }

  /** The replay session number of a Megolm session, or null when it has no replay records yet. */
  private replaySessionNo(accountId: number, senderKey: string, sessionId: string): number | null {
    const k = replaySessionKey(accountId, senderKey, sessionId);
    const hit = this.replaySessions.get(k);
    if (hit !== undefined) return hit;
    const n = this.s().getReplaySession.get(accountId, senderKey, sessionId);
    if (n === undefined) return null;
    if (this.replaySessions.size >= REPLAY_SESSION_CACHE) this.replaySessions.clear();
    this.replaySessions.set(k, n);
    return n;
  }
}
