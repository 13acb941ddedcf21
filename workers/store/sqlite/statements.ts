/**
 * The SQL statements of the SQLite crypto store, prepared once per connection, written against
 * the schema at `SCHEMA_VERSION` (migrate.ts). Parameters and rows are typed by rows.ts.
 *
 * @internal
 * @packageDocumentation
 */

import type Database from "better-sqlite3";
import type {
  AccountParams,
  AccountRow,
  DeviceParams,
  DeviceRow,
  InboundParams,
  InboundRow,
  MemberParams,
  MemberRow,
  OlmParams,
  OlmRow,
  OutboundParams,
  OutboundRow,
  PendingParams,
  PendingRow,
  ReplayRow,
  RoomParams,
  RoomRow,
} from "./rows.js";

/** An open better-sqlite3 connection. */
export type Db = Database.Database;

/** A prepared statement bound with parameters `P`, giving rows `R`. */
export type Stmt<P extends unknown[], R = unknown> = Database.Statement<P, R>;

/** Every statement the store runs, by name. */
export interface Statements {
  listAccounts: Stmt<[], AccountRow>;
  getAccount: Stmt<[string, string], AccountRow>;
  latestDeviceOfUser: Stmt<[string], { device_id: string }>;
  upsertAccount: Stmt<AccountParams>;
  deleteAccount: Stmt<[string, string]>;
  getOlmSessions: Stmt<[number, string], OlmRow>;
  upsertOlmSession: Stmt<OlmParams>;
  getInbound: Stmt<[number, string, string, string], InboundRow>;
  countInbound: Stmt<[number], number>;
  listInboundFirst: Stmt<[number, number], InboundRow>;
  listInboundAfter: Stmt<[number, string, string, string, number], InboundRow>;
  upsertInbound: Stmt<InboundParams>;
  countInboundToBackUp: Stmt<[number, string], number>;
  listInboundToBackUp: Stmt<[number, string, number], InboundRow>;
  getOutbound: Stmt<[number, string], OutboundRow>;
  deleteOutbound: Stmt<[number, string]>;
  upsertOutbound: Stmt<OutboundParams>;
  getUserDevices: Stmt<[number, string], DeviceRow>;
  getDevice: Stmt<[number, string, string], DeviceRow>;
  getDeviceByCurve: Stmt<[number, string], DeviceRow>;
  upsertDevice: Stmt<DeviceParams>;
  getTrackedUsers: Stmt<[number], { user_id: string; dirty: number }>;
  upsertTrackedUser: Stmt<[number, string, number]>;
  deleteTrackedUser: Stmt<[number, string]>;
  getRoom: Stmt<[number, string], RoomRow>;
  upsertRoom: Stmt<RoomParams>;
  getRoomMembers: Stmt<[number, string], MemberRow>;
  upsertRoomMember: Stmt<MemberParams>;
  getReplaySession: Stmt<[number, string, string], number>;
  insertReplaySession: Stmt<[number, string, string]>;
  getReplay: Stmt<[number, number, number, number], ReplayRow>;
  insertReplay: Stmt<[number, number, number, string]>;
  getPending: Stmt<[number, string, string], PendingRow>;
  countPending: Stmt<[number], number>;
  upsertPending: Stmt<PendingParams>;
  deletePending: Stmt<[number, string, string]>;
  hasDigest: Stmt<[number, string], number>;
  insertDigest: Stmt<[number, string, number]>;
  pruneDigests: Stmt<[number]>;
  getValue: Stmt<[number, string], string>;
  setValue: Stmt<[number, string, string]>;
  deleteValue: Stmt<[number, string]>;
  getSyncToken: Stmt<[number], string>;
  setSyncToken: Stmt<[number, string]>;
}

/** A statement whose rows are the first column's value. */
function plucked<P extends unknown[], R>(db: Db, sql: string): Stmt<P, R> {
  return db.prepare<P, R>(sql).pluck();
}

/** Prepare every statement on `db` (once per connection). */
export function prepareStatements(db: Db): Statements {
  return {
    listAccounts: db.prepare("SELECT * FROM accounts ORDER BY created_ts, account_id"),
    getAccount: db.prepare("SELECT * FROM accounts WHERE user_id = ? AND device_id = ?"),
    latestDeviceOfUser: db.prepare(
      "SELECT device_id FROM accounts WHERE user_id = ? ORDER BY created_ts DESC, account_id DESC LIMIT 1",
    ),
    upsertAccount: db.prepare(
      `INSERT INTO accounts (user_id, device_id, pickle, device_keys_uploaded, created_ts) VALUES (?, ?, ?, ?, ?)
       ON CONFLICT (user_id, device_id) DO UPDATE SET pickle = excluded.pickle,
         device_keys_uploaded = excluded.device_keys_uploaded, created_ts = excluded.created_ts`,
    ),
    deleteAccount: db.prepare("DELETE FROM accounts WHERE user_id = ? AND device_id = ?"),

    getOlmSessions: db.prepare(
      "SELECT * FROM olm_sessions WHERE account_id = ? AND sender_key = ? ORDER BY last_used_ts DESC, session_id",
    ),
    upsertOlmSession: db.prepare(
      `INSERT INTO olm_sessions (account_id, sender_key, session_id, pickle, created_ts, last_used_ts) VALUES (?, ?, ?, ?, ?, ?)
       ON CONFLICT (account_id, sender_key, session_id) DO UPDATE SET pickle = excluded.pickle,
         created_ts = excluded.created_ts, last_used_ts = excluded.last_used_ts`,
    ),

    getInbound: db.prepare(
      "SELECT * FROM inbound_group_sessions WHERE account_id = ? AND room_id = ? AND sender_key = ? AND session_id = ?",
    ),
    countInbound: plucked(db, "SELECT count(*) FROM inbound_group_sessions WHERE account_id = ?"),
    listInboundFirst: db.prepare(
      "SELECT * FROM inbound_group_sessions WHERE account_id = ? ORDER BY room_id, sender_key, session_id LIMIT ?",
    ),
    listInboundAfter: db.prepare(
      `SELECT * FROM inbound_group_sessions WHERE account_id = ? AND (room_id, sender_key, session_id) > (?, ?, ?)
       ORDER BY room_id, sender_key, session_id LIMIT ?`,
    ),
    upsertInbound: db.prepare(
      `INSERT INTO inbound_group_sessions (account_id, room_id, sender_key, session_id, pickle, claimed_ed25519,
         forwarding_chain, first_known_index, source, sender_data, created_ts, backed_up_version) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (account_id, room_id, sender_key, session_id) DO UPDATE SET pickle = excluded.pickle,
         claimed_ed25519 = excluded.claimed_ed25519, forwarding_chain = excluded.forwarding_chain,
         first_known_index = excluded.first_known_index, source = excluded.source, sender_data = excluded.sender_data,
         created_ts = excluded.created_ts, backed_up_version = excluded.backed_up_version`,
    ),
    countInboundToBackUp: plucked(db, "SELECT count(*) FROM inbound_group_sessions WHERE account_id = ? AND backed_up_version IS NOT ?"),
    listInboundToBackUp: db.prepare(
      "SELECT * FROM inbound_group_sessions WHERE account_id = ? AND backed_up_version IS NOT ? ORDER BY room_id, sender_key, session_id LIMIT ?",
    ),

    getOutbound: db.prepare("SELECT * FROM outbound_group_sessions WHERE account_id = ? AND room_id = ?"),
    deleteOutbound: db.prepare("DELETE FROM outbound_group_sessions WHERE account_id = ? AND room_id = ?"),
    upsertOutbound: db.prepare(
      `INSERT INTO outbound_group_sessions (account_id, room_id, session_id, pickle, created_ts, message_count,
         rotation_period_ms, rotation_period_msgs, shared_with, in_use_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (account_id, room_id) DO UPDATE SET session_id = excluded.session_id, pickle = excluded.pickle,
         created_ts = excluded.created_ts, message_count = excluded.message_count,
         rotation_period_ms = excluded.rotation_period_ms, rotation_period_msgs = excluded.rotation_period_msgs,
         shared_with = excluded.shared_with, in_use_by = excluded.in_use_by`,
    ),

    getUserDevices: db.prepare("SELECT * FROM devices WHERE account_id = ? AND user_id = ? ORDER BY device_id"),
    getDevice: db.prepare("SELECT * FROM devices WHERE account_id = ? AND user_id = ? AND device_id = ?"),
    getDeviceByCurve: db.prepare(
      `SELECT * FROM devices WHERE account_id = ? AND curve25519 = ?
       ORDER BY deleted, first_seen_ts, user_id, device_id LIMIT 1`,
    ),
    upsertDevice: db.prepare(
      `INSERT INTO devices (account_id, user_id, device_id, ed25519, curve25519, algorithms, display_name, verified,
         blacklisted, ignored, deleted, keys_json, first_seen_ts) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (account_id, user_id, device_id) DO UPDATE SET ed25519 = excluded.ed25519,
         curve25519 = excluded.curve25519, algorithms = excluded.algorithms, display_name = excluded.display_name,
         verified = excluded.verified, blacklisted = excluded.blacklisted, ignored = excluded.ignored,
         deleted = excluded.deleted, keys_json = excluded.keys_json, first_seen_ts = excluded.first_seen_ts`,
    ),

    getTrackedUsers: db.prepare(
      "SELECT user_id, dirty FROM tracked_users WHERE account_id = ? ORDER BY user_id",
    ),
    upsertTrackedUser: db.prepare(
      `INSERT INTO tracked_users (account_id, user_id, dirty) VALUES (?, ?, ?)
       ON CONFLICT (account_id, user_id) DO UPDATE SET dirty = excluded.dirty`,
    ),
    deleteTrackedUser: db.prepare("DELETE FROM tracked_users WHERE account_id = ? AND user_id = ?"),

    getRoom: db.prepare("SELECT room_id, encryption, history_visibility FROM rooms WHERE account_id = ? AND room_id = ?"),
    upsertRoom: db.prepare(
      `INSERT INTO rooms (account_id, room_id, encryption, history_visibility) VALUES (?, ?, ?, ?)
       ON CONFLICT (account_id, room_id) DO UPDATE SET encryption = excluded.encryption,
         history_visibility = excluded.history_visibility`,
    ),
    getRoomMembers: db.prepare(
      "SELECT room_id, user_id, membership FROM room_members WHERE account_id = ? AND room_id = ? ORDER BY user_id",
    ),
    upsertRoomMember: db.prepare(
      `INSERT INTO room_members (account_id, room_id, user_id, membership) VALUES (?, ?, ?, ?)
       ON CONFLICT (account_id, room_id, user_id) DO UPDATE SET membership = excluded.membership`,
    ),

    getReplaySession: plucked(db, "SELECT sess_no FROM replay_sessions WHERE account_id = ? AND sender_key = ? AND session_id = ?"),
    insertReplaySession: db.prepare("INSERT INTO replay_sessions (account_id, sender_key, session_id) VALUES (?, ?, ?)"),
    // The earliest row (rowid order) holding the index is its first sighting.
    getReplay: db.prepare(
      `SELECT j.value AS rec FROM replay_chunks AS c, json_each(c.records) AS j
       WHERE c.sess_no = ? AND c.min_index <= ? AND c.max_index >= ? AND json_extract(j.value, '$[0]') = ?
       ORDER BY c.rowid, j.key LIMIT 1`,
    ),
    insertReplay: db.prepare("INSERT INTO replay_chunks (sess_no, min_index, max_index, records) VALUES (?, ?, ?, ?)"),

    getPending: db.prepare(
      `SELECT room_id, session_id, event_id, event_json, received_ts FROM pending_events
       WHERE account_id = ? AND room_id = ? AND session_id = ? ORDER BY received_ts, rowid`,
    ),
    countPending: plucked(db, "SELECT count(*) FROM pending_events WHERE account_id = ?"),
    upsertPending: db.prepare(
      `INSERT INTO pending_events (account_id, room_id, event_id, session_id, event_json, received_ts) VALUES (?, ?, ?, ?, ?, ?)
       ON CONFLICT (account_id, room_id, event_id) DO UPDATE SET session_id = excluded.session_id,
         event_json = excluded.event_json, received_ts = excluded.received_ts`,
    ),
    deletePending: db.prepare("DELETE FROM pending_events WHERE account_id = ? AND room_id = ? AND event_id = ?"),

    hasDigest: plucked(db, "SELECT 1 FROM to_device_digests WHERE account_id = ? AND digest = ?"),
    insertDigest: db.prepare(
      "INSERT INTO to_device_digests (account_id, digest, ts) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
    ),
    pruneDigests: db.prepare("DELETE FROM to_device_digests WHERE ts < ?"),

    getValue: plucked(db, "SELECT value FROM kv WHERE account_id = ? AND key = ?"),
    setValue: db.prepare(
      "INSERT INTO kv (account_id, key, value) VALUES (?, ?, ?) ON CONFLICT (account_id, key) DO UPDATE SET value = excluded.value",
    ),
    deleteValue: db.prepare("DELETE FROM kv WHERE account_id = ? AND key = ?"),

    getSyncToken: plucked(db, "SELECT sync_token FROM sync_state WHERE account_id = ?"),
    setSyncToken: db.prepare(
      "INSERT INTO sync_state (account_id, sync_token) VALUES (?, ?) ON CONFLICT (account_id) DO UPDATE SET sync_token = excluded.sync_token",
    ),
  };
}

