/**
 * A crypto store that keeps everything in memory (tests, short-lived bots). Nothing survives the
 * process; keys are lost when it ends.
 *
 * @packageDocumentation
 */

import { StoreError } from "../../../src/protocol/errors.js";
import type {
  AccountRecord,
  CryptoStore,
  DeviceRecord,
  InboundGroupSessionRecord,
  OlmSessionRecord,
  OutboundGroupSessionRecord,
  PendingEventRecord,
  ReplayRecord,
  RoomMemberRecord,
  RoomRecord,
  StoreChanges,
  TrackedUserRecord,
} from "../../../src/protocol/store.js";
import { DIGEST_TTL_MS, DigestPruneSchedule } from "../digestPruning.js";
import { parseInboundGroupSessionCursor } from "../inboundCursor.js";
import { invalidBatch, validateBatchForAccount } from "../validateChanges.js";

const clone = <T>(v: T): T => structuredClone(v);

/** Tuple key of composite identifiers (NUL cannot appear in Matrix identifiers or base64). */
const k2 = (a: string, b: string): string => `${a}\u0000${b}`;
const k3 = (a: string, b: string, c: string): string => `${a}\u0000${b}\u0000${c}`;

/**
 * Compare strings in code point order, which is the UTF-8 byte order SQLite's BINARY collation
 * uses, so both built-in stores page inbound sessions identically.
 */
function cmpCodePoints(a: string, b: string): number {
  if (a === b) return 0;
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    let x = a.charCodeAt(i);
    let y = b.charCodeAt(i);
    if (x === y) continue;
    if (x >= 0xd800) x += x < 0xe000 ? 0x2000 : -0x800;
    if (y >= 0xd800) y += y < 0xe000 ? 0x2000 : -0x800;
    return x - y;
  }
  return a.length - b.length;
}
function cmpInbound(a: { roomId: string; senderKey: string; sessionId: string }, b: { roomId: string; senderKey: string; sessionId: string }): number {
  return cmpCodePoints(a.roomId, b.roomId) || cmpCodePoints(a.senderKey, b.senderKey) || cmpCodePoints(a.sessionId, b.sessionId);
}

// ---------------------------------------------------------------------------------------------
// State
// ---------------------------------------------------------------------------------------------

/** Everything that belongs to one account. */
class AccountData {
  /** Insertion sequence (tie-break of `getStoredDeviceId`). */
  seq: number;
  account: AccountRecord;
  /** senderKey → sessionId → record. */
  readonly olm = new Map<string, Map<string, OlmSessionRecord>>();
  /** k3(roomId, senderKey, sessionId) → record. */
  readonly inbound = new Map<string, InboundGroupSessionRecord>();
  /** Inbound records in cursor order; rebuilt lazily after a write. */
  inboundSorted: InboundGroupSessionRecord[] | null = null;
  readonly outbound = new Map<string, OutboundGroupSessionRecord>();
  /** userId → deviceId → record. */
  readonly devices = new Map<string, Map<string, DeviceRecord>>();
  readonly tracked = new Map<string, TrackedUserRecord>();
  readonly rooms = new Map<string, RoomRecord>();
  /** roomId → userId → record. */
  readonly members = new Map<string, Map<string, RoomMemberRecord>>();
  /** k3(senderKey, sessionId, messageIndex) → record. */
  readonly replay = new Map<string, ReplayRecord>();
  /** k2(roomId, eventId) → record. */
  readonly pending = new Map<string, PendingEventRecord>();
  /** digest → time it was stored. */
  readonly digests = new Map<string, number>();
  readonly values = new Map<string, string>();
  syncToken: string | null = null;

  constructor(account: AccountRecord, seq: number) {
    this.account = account;
    this.seq = seq;
  }
}

function sub<K, V>(m: Map<K, Map<string, V>>, k: K): Map<string, V> {
  let s = m.get(k);
  if (!s) {
    s = new Map();
    m.set(k, s);
  }
  return s;
}

/**
 * {@link CryptoStore} held in Maps. Same semantics as `SqliteCryptoStore`: batches are validated
 * first and then applied in full (atomic), records are deep-copied in and out (callers cannot
 * mutate stored state), account-scoped reads throw `StoreError` before
 * {@link MemoryCryptoStore.useAccount}.
 *
 * {@link MemoryCryptoStore.close} keeps the data: calling {@link MemoryCryptoStore.open} again
 * on the same instance finds it (only that instance; nothing is shared or persisted).
 */
export class MemoryCryptoStore implements CryptoStore {
  /** Always `"memory"`. */
  get location(): string {
    return "memory";
  }
  /** k2(userId, deviceId) → data. */
  private readonly accounts = new Map<string, AccountData>();
  private scope: { userId: string; deviceId: string } | null = null;
  private closed = false;
  private seq = 0;
  private readonly pruning = new DigestPruneSchedule();

  /** @param _options - Ignored; accepted so the store can be named in `StoreConfig` `module` form. */
  constructor(_options?: unknown) {}

  /** Make the store usable (again, after {@link MemoryCryptoStore.close}). */
  async open(): Promise<void> {
    this.closed = false;
  }

  /** Mark the store closed; later calls throw until {@link MemoryCryptoStore.open}. Idempotent. */
  async close(): Promise<void> {
    this.closed = true;
    this.scope = null;
  }

  private check(): void {
    if (this.closed) throw new StoreError("The crypto store is closed.");
  }

  /** Data of the selected account, or null when it does not exist yet. */
  private cur(): AccountData | null {
    this.check();
    if (!this.scope) throw new StoreError("No account selected; call useAccount() first.");
    return this.accounts.get(k2(this.scope.userId, this.scope.deviceId)) ?? null;
  }

  /** All accounts, oldest first. */
  listAccounts(): { userId: string; deviceId: string; createdTs: number }[] {
    this.check();
    return [...this.accounts.values()]
      .sort((x, y) => x.account.createdTs - y.account.createdTs || x.seq - y.seq)
      .map(({ account: a }) => ({ userId: a.userId, deviceId: a.deviceId, createdTs: a.createdTs }));
  }

  /** Device ID of the account of `userId` with the highest `createdTs` (ties: last inserted). */
  getStoredDeviceId(userId: string): string | null {
    this.check();
    let best: AccountData | null = null;
    for (const d of this.accounts.values()) {
      if (d.account.userId !== userId) continue;
      if (!best || d.account.createdTs > best.account.createdTs || (d.account.createdTs === best.account.createdTs && d.seq > best.seq)) best = d;
    }
    return best ? best.account.deviceId : null;
  }

  /** Select the account; returns (a copy of) its record, or null when it does not exist yet. */
  async useAccount(userId: string, deviceId: string): Promise<AccountRecord | null> {
    this.check();
    this.scope = { userId, deviceId };
    const d = this.accounts.get(k2(userId, deviceId));
    return d ? clone(d.account) : null;
  }

  /** Delete the account and all its records. */
  async deleteAccount(userId: string, deviceId: string): Promise<void> {
    this.check();
    this.accounts.delete(k2(userId, deviceId));
  }

  /** Sessions with `senderKey`, most recently used first. */
  getOlmSessions(senderKey: string): OlmSessionRecord[] {
    const d = this.cur();
    const m = d?.olm.get(senderKey);
    if (!m) return [];
    return [...m.values()]
      .sort((x, y) => y.lastUsedTs - x.lastUsedTs || cmpCodePoints(x.sessionId, y.sessionId))
      .map(clone);
  }

  getInboundGroupSession(roomId: string, senderKey: string, sessionId: string): InboundGroupSessionRecord | null {
    const r = this.cur()?.inbound.get(k3(roomId, senderKey, sessionId));
    return r ? clone(r) : null;
  }

  countInboundGroupSessions(): number {
    return this.cur()?.inbound.size ?? 0;
  }

  countInboundGroupSessionsToBackUp(version: string): number {
    let n = 0;
    for (const r of this.cur()?.inbound.values() ?? []) if (r.backedUpVersion !== version) n++;
    return n;
  }

  /** Inbound sessions not confirmed in backup `version`, in the order of {@link listInboundGroupSessions}. */
  listInboundGroupSessionsToBackUp(version: string, limit: number): InboundGroupSessionRecord[] {
    const d = this.cur();
    if (!d || !(limit > 0)) return [];
    const sorted = (d.inboundSorted ??= [...d.inbound.values()].sort(cmpInbound));
    const out: InboundGroupSessionRecord[] = [];
    for (const r of sorted) {
      if (out.length >= limit) break;
      if (r.backedUpVersion !== version) out.push(clone(r));
    }
    return out;
  }

  /**
   * A page of inbound group sessions ordered by (roomId, senderKey, sessionId) in code point
   * order. `after` is the cursor of the last record of the previous page,
   * `${roomId}|${senderKey}|${sessionId}`, split from the right.
   */
  listInboundGroupSessions(limit: number, after?: string): InboundGroupSessionRecord[] {
    const d = this.cur();
    if (!d || !(limit > 0)) return [];
    const sorted = (d.inboundSorted ??= [...d.inbound.values()].sort(cmpInbound));
    let start = 0;
    if (after !== undefined) {
      const c = parseInboundGroupSessionCursor(after);
      // First index whose record is strictly greater than the cursor.
      let lo = 0;
      let hi = sorted.length;
      while (lo < hi) {
        const mid = (lo + hi) >>> 1;
        if (cmpInbound(sorted[mid]!, c) <= 0) lo = mid + 1;
        else hi = mid;
      }
      start = lo;
    }
    return sorted.slice(start, start + Math.floor(limit)).map(clone);
  }

  getOutboundGroupSession(roomId: string): OutboundGroupSessionRecord | null {
    const r = this.cur()?.outbound.get(roomId);
    return r ? clone(r) : null;
  }

  /** Devices of `userId` (deleted ones included), ordered by device ID. */
  getUserDevices(userId: string): DeviceRecord[] {
    const m = this.cur()?.devices.get(userId);
    if (!m) return [];
    return [...m.values()].sort((x, y) => cmpCodePoints(x.deviceId, y.deviceId)).map(clone);
  }

  getDevice(userId: string, deviceId: string): DeviceRecord | null {
    const r = this.cur()?.devices.get(userId)?.get(deviceId);
    return r ? clone(r) : null;
  }

  /**
   * The device with this curve25519 key. Should several devices claim it, a non-deleted one is
   * preferred, then the one seen first.
   */
  getDeviceByCurve25519(curve25519: string): DeviceRecord | null {
    const d = this.cur();
    if (!d) return null;
    let best: DeviceRecord | null = null;
    for (const m of d.devices.values()) {
      for (const r of m.values()) {
        if (r.curve25519 !== curve25519) continue;
        const order = best
          ? Number(r.deleted) - Number(best.deleted) ||
            r.firstSeenTs - best.firstSeenTs ||
            cmpCodePoints(r.userId, best.userId) ||
            cmpCodePoints(r.deviceId, best.deviceId)
          : -1;
        if (order < 0) best = r;
      }
    }
    return best ? clone(best) : null;
  }

  /** Tracked users ordered by user ID. */
  getTrackedUsers(): TrackedUserRecord[] {
    const d = this.cur();
    if (!d) return [];
    return [...d.tracked.values()].sort((x, y) => cmpCodePoints(x.userId, y.userId)).map(clone);
  }

  getRoom(roomId: string): RoomRecord | null {
    const r = this.cur()?.rooms.get(roomId);
    return r ? clone(r) : null;
  }

  /** Members of the room ordered by user ID (any membership). */
  getRoomMembers(roomId: string): RoomMemberRecord[] {
    const m = this.cur()?.members.get(roomId);
    if (!m) return [];
    return [...m.values()].sort((x, y) => cmpCodePoints(x.userId, y.userId)).map(clone);
  }

  getReplayRecord(senderKey: string, sessionId: string, messageIndex: number): ReplayRecord | null {
    const r = this.cur()?.replay.get(k3(senderKey, sessionId, String(messageIndex)));
    return r ? clone(r) : null;
  }

  /** Pending events of one session in a room, oldest first, then in the order they were saved (the map's, as the sort is stable). */
  getPendingEvents(roomId: string, sessionId: string): PendingEventRecord[] {
    const d = this.cur();
    if (!d) return [];
    return [...d.pending.values()]
      .filter((r) => r.roomId === roomId && r.sessionId === sessionId)
      .sort((x, y) => x.receivedTs - y.receivedTs)
      .map(clone);
  }

  countPendingEvents(): number {
    return this.cur()?.pending.size ?? 0;
  }

  hasToDeviceDigest(digest: string): boolean {
    return this.cur()?.digests.has(digest) ?? false;
  }

  getSyncToken(): string | null {
    return this.cur()?.syncToken ?? null;
  }

  getValue(key: string): string | null {
    return this.cur()?.values.get(key) ?? null;
  }

  /**
   * Validate the whole batch (throwing `StoreError` with nothing applied), then apply it. Same
   * order and rules as `SqliteCryptoStore.saveChanges`: `account` first (selecting it when no
   * account was selected), `deletedOutboundGroupSessions` before `outboundGroupSessions`,
   * `untrackedUsers` after `trackedUsers`, `deletedPendingEvents` after `pendingEvents`, replay
   * records keep the first sighting, null `values` delete the key.
   */
  saveChanges(changes: StoreChanges): void {
    this.check();
    const scope = this.scope;
    let d = scope ? this.accounts.get(k2(scope.userId, scope.deviceId)) : undefined;
    if (!validateBatchForAccount(changes, scope, d !== undefined)) return;
    let c: StoreChanges;
    try {
      c = clone(changes);
    } catch {
      invalidBatch("changes", "structured-cloneable");
    }
    // Validated and copied: from here on nothing can throw, so the batch applies in full.
    const now = Date.now();
    if (c.account) {
      if (d) d.account = c.account;
      else {
        d = new AccountData(c.account, ++this.seq);
        this.accounts.set(k2(c.account.userId, c.account.deviceId), d);
      }
      this.scope = { userId: c.account.userId, deviceId: c.account.deviceId };
    }
    const a = d!;
    for (const r of c.olmSessions ?? []) sub(a.olm, r.senderKey).set(r.sessionId, r);
    for (const r of c.inboundGroupSessions ?? []) {
      if (r.senderData === undefined) delete r.senderData;
      a.inbound.set(k3(r.roomId, r.senderKey, r.sessionId), r);
      a.inboundSorted = null;
    }
    for (const roomId of c.deletedOutboundGroupSessions ?? []) a.outbound.delete(roomId);
    for (const r of c.outboundGroupSessions ?? []) a.outbound.set(r.roomId, r);
    for (const r of c.devices ?? []) {
      if (r.displayName === undefined) delete r.displayName;
      sub(a.devices, r.userId).set(r.deviceId, r);
    }
    for (const r of c.trackedUsers ?? []) a.tracked.set(r.userId, r);
    for (const userId of c.untrackedUsers ?? []) a.tracked.delete(userId);
    for (const r of c.rooms ?? []) a.rooms.set(r.roomId, r);
    for (const r of c.roomMembers ?? []) sub(a.members, r.roomId).set(r.userId, r);
    for (const r of c.replayRecords ?? []) {
      const k = k3(r.senderKey, r.sessionId, String(r.messageIndex));
      if (!a.replay.has(k)) a.replay.set(k, r);
    }
    for (const r of c.pendingEvents ?? []) a.pending.set(k2(r.roomId, r.eventId), r);
    for (const r of c.deletedPendingEvents ?? []) a.pending.delete(k2(r.roomId, r.eventId));
    for (const dg of c.toDeviceDigests ?? []) if (!a.digests.has(dg)) a.digests.set(dg, now);
    for (const [k, v] of Object.entries(c.values ?? {})) {
      if (v === null) a.values.delete(k);
      else a.values.set(k, v);
    }
    if (c.syncToken !== undefined) a.syncToken = c.syncToken;
    if (this.pruning.due(now)) {
      this.pruning.pruned(now);
      const cutoff = now - DIGEST_TTL_MS;
      for (const data of this.accounts.values()) {
        for (const [dg, ts] of data.digests) if (ts < cutoff) data.digests.delete(dg);
      }
    }
  }
}
