/**
 * Row ↔ record mapping of the SQLite crypto store: the shape of each table's rows (at the schema
 * version `SCHEMA_VERSION` of migrate.ts), how a row becomes a record, and the statement
 * parameters a record is written with.
 *
 * JSON columns hold arrays and objects (`forwarding_chain`, `shared_with`, `algorithms`,
 * `encryption`, `sender_data`); booleans are stored as 0/1; an optional field that is absent is
 * NULL, and a NULL column gives a record without that field (never an `undefined` value).
 *
 * @internal
 * @packageDocumentation
 */

import type {
  AccountRecord,
  DeviceRecord,
  InboundGroupSessionRecord,
  InboundSessionSource,
  OlmSessionRecord,
  OutboundGroupSessionRecord,
  PendingEventRecord,
  ReplayRecord,
  RoomMemberRecord,
  RoomRecord,
  SenderData,
  SharedWithEntry,
} from "../../../src/protocol/store.js";

/** Most replay records packed into one `replay_chunks` row (migration 003 groups by the same 64). */
export const REPLAY_CHUNK = 64;

export interface AccountRow {
  account_id: number;
  user_id: string;
  device_id: string;
  pickle: string;
  device_keys_uploaded: number;
  created_ts: number;
}
export interface OlmRow {
  sender_key: string;
  session_id: string;
  pickle: string;
  created_ts: number;
  last_used_ts: number;
}
export interface InboundRow {
  room_id: string;
  sender_key: string;
  session_id: string;
  pickle: string;
  claimed_ed25519: string;
  forwarding_chain: string;
  first_known_index: number;
  source: string;
  /** `JSON.stringify(senderData)`; NULL when the record has none (migration 004). */
  sender_data: string | null;
  created_ts: number;
  /** Backup version the session was confirmed in; NULL when none (migration 005). */
  backed_up_version: string | null;
}
export interface OutboundRow {
  room_id: string;
  session_id: string;
  pickle: string;
  created_ts: number;
  message_count: number;
  rotation_period_ms: number;
  rotation_period_msgs: number;
  shared_with: string;
  in_use_by: string | null;
}
export interface DeviceRow {
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
export interface RoomRow {
  room_id: string;
  encryption: string | null;
  history_visibility: string | null;
}
export interface MemberRow {
  room_id: string;
  user_id: string;
  membership: string;
}
export interface ReplayRow {
  /** `[message_index, event_id, origin_server_ts]` as JSON. */
  rec: string;
}
export interface PendingRow {
  room_id: string;
  session_id: string;
  event_id: string;
  event_json: string;
  received_ts: number;
}

// Statement parameters, in the column order of the upserts in statements.ts (account row ID first).
export type AccountParams = [userId: string, deviceId: string, pickle: string, deviceKeysUploaded: number, createdTs: number];
export type OlmParams = [accountId: number, senderKey: string, sessionId: string, pickle: string, createdTs: number, lastUsedTs: number];
export type InboundParams = [
  accountId: number,
  roomId: string,
  senderKey: string,
  sessionId: string,
  pickle: string,
  claimedEd25519: string,
  forwardingChain: string,
  firstKnownIndex: number,
  source: string,
  senderData: string | null,
  createdTs: number,
  backedUpVersion: string | null,
];
export type OutboundParams = [
  accountId: number,
  roomId: string,
  sessionId: string,
  pickle: string,
  createdTs: number,
  messageCount: number,
  rotationPeriodMs: number,
  rotationPeriodMsgs: number,
  sharedWith: string,
  inUseBy: string | null,
];
export type DeviceParams = [
  accountId: number,
  userId: string,
  deviceId: string,
  ed25519: string,
  curve25519: string,
  algorithms: string,
  displayName: string | null,
  verified: number,
  blacklisted: number,
  ignored: number,
  deleted: number,
  keysJson: string,
  firstSeenTs: number,
];
export type RoomParams = [accountId: number, roomId: string, encryption: string | null, historyVisibility: string | null];
export type MemberParams = [accountId: number, roomId: string, userId: string, membership: string];
export type PendingParams = [accountId: number, roomId: string, eventId: string, sessionId: string, eventJson: string, receivedTs: number];

/** A packed `replay_chunks` row of one Megolm session. */
export interface ReplayChunk {
  senderKey: string;
  sessionId: string;
  min: number;
  max: number;
  json: string;
}

const b = (v: boolean): number => (v ? 1 : 0);

// --- row → record ------------------------------------------------------------------------------

export const toAccount = (r: AccountRow): AccountRecord => ({
  userId: r.user_id,
  deviceId: r.device_id,
  pickle: r.pickle,
  deviceKeysUploaded: r.device_keys_uploaded !== 0,
  createdTs: r.created_ts,
});
export const toOlm = (r: OlmRow): OlmSessionRecord => ({
  senderKey: r.sender_key,
  sessionId: r.session_id,
  pickle: r.pickle,
  createdTs: r.created_ts,
  lastUsedTs: r.last_used_ts,
});
export const toInbound = (r: InboundRow): InboundGroupSessionRecord => ({
  roomId: r.room_id,
  senderKey: r.sender_key,
  sessionId: r.session_id,
  pickle: r.pickle,
  claimedEd25519: r.claimed_ed25519,
  forwardingChain: JSON.parse(r.forwarding_chain) as string[],
  firstKnownIndex: r.first_known_index,
  source: r.source as InboundSessionSource,
  ...(r.sender_data !== null ? { senderData: JSON.parse(r.sender_data) as SenderData } : {}),
  createdTs: r.created_ts,
  ...(r.backed_up_version !== null ? { backedUpVersion: r.backed_up_version } : {}),
});
export const toOutbound = (r: OutboundRow): OutboundGroupSessionRecord => ({
  roomId: r.room_id,
  sessionId: r.session_id,
  pickle: r.pickle,
  createdTs: r.created_ts,
  messageCount: r.message_count,
  rotationPeriodMs: r.rotation_period_ms,
  rotationPeriodMsgs: r.rotation_period_msgs,
  sharedWith: JSON.parse(r.shared_with) as SharedWithEntry[],
  ...(r.in_use_by !== null ? { inUseBy: r.in_use_by } : {}),
});
export const toDevice = (r: DeviceRow): DeviceRecord => ({
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
export const toRoom = (r: RoomRow): RoomRecord => ({
  roomId: r.room_id,
  encryption: r.encryption === null ? null : (JSON.parse(r.encryption) as Record<string, unknown>),
  historyVisibility: r.history_visibility,
});
export const toMember = (r: MemberRow): RoomMemberRecord => ({ roomId: r.room_id, userId: r.user_id, membership: r.membership });
export const toPending = (r: PendingRow): PendingEventRecord => ({
  roomId: r.room_id,
  sessionId: r.session_id,
  eventId: r.event_id,
  eventJson: r.event_json,
  receivedTs: r.received_ts,
});
/** The replay record at `messageIndex` from its packed JSON, or null when the JSON is not such a record (corruption). */
export function toReplay(r: ReplayRow, senderKey: string, sessionId: string, messageIndex: number): ReplayRecord | null {
  const v = JSON.parse(r.rec) as unknown;
  if (!Array.isArray(v) || v[0] !== messageIndex || typeof v[1] !== "string" || typeof v[2] !== "number") return null;
  return { senderKey, sessionId, messageIndex, eventId: v[1], originServerTs: v[2] };
}

// --- record → statement parameters -------------------------------------------------------------

export const accountParams = (r: AccountRecord): AccountParams => [r.userId, r.deviceId, r.pickle, b(r.deviceKeysUploaded), r.createdTs];
export const olmParams = (a: number, r: OlmSessionRecord): OlmParams => [a, r.senderKey, r.sessionId, r.pickle, r.createdTs, r.lastUsedTs];
export const inboundParams = (a: number, r: InboundGroupSessionRecord): InboundParams => [
  a,
  r.roomId,
  r.senderKey,
  r.sessionId,
  r.pickle,
  r.claimedEd25519,
  JSON.stringify(r.forwardingChain),
  r.firstKnownIndex,
  r.source,
  r.senderData === undefined ? null : JSON.stringify(r.senderData),
  r.createdTs,
  r.backedUpVersion ?? null,
];
export const outboundParams = (a: number, r: OutboundGroupSessionRecord): OutboundParams => [
  a,
  r.roomId,
  r.sessionId,
  r.pickle,
  r.createdTs,
  r.messageCount,
  r.rotationPeriodMs,
  r.rotationPeriodMsgs,
  JSON.stringify(r.sharedWith),
  r.inUseBy ?? null,
];
export const deviceParams = (a: number, r: DeviceRecord): DeviceParams => [
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
];
export const roomParams = (a: number, r: RoomRecord): RoomParams => [a, r.roomId, r.encryption === null ? null : JSON.stringify(r.encryption), r.historyVisibility];
export const memberParams = (a: number, r: RoomMemberRecord): MemberParams => [a, r.roomId, r.userId, r.membership];
export const pendingParams = (a: number, r: PendingEventRecord): PendingParams => [a, r.roomId, r.eventId, r.sessionId, r.eventJson, r.receivedTs];

/** Group replay records by session, first sighting of an index kept, in rows of at most {@link REPLAY_CHUNK}. */
export function packReplay(records: readonly ReplayRecord[]): ReplayChunk[] {
  const bySession = new Map<string, Map<number, ReplayRecord>>();
  for (const r of records) {
    const k = `${r.senderKey}\u0000${r.sessionId}`;
    let m = bySession.get(k);
    if (!m) bySession.set(k, (m = new Map()));
    if (!m.has(r.messageIndex)) m.set(r.messageIndex, r);
  }
  const out: ReplayChunk[] = [];
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
