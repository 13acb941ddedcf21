/**
 * The default crypto store: one SQLite file (better-sqlite3), opened exclusively by one
 * connection of one process. This file is the class (reads and the batch write); opening,
 * locking and migrating are in migrate.ts, the SQL in statements.ts, row ↔ record mapping in
 * rows.ts, batch validation in ../validateChanges.ts.
 *
 * - File mode 0600, an exclusive lock held from {@link SqliteCryptoStore.open} to
 *   {@link SqliteCryptoStore.close} (a second opener gets `StoreLockedError`), WAL with
 *   `synchronous=FULL`, foreign keys on, `secure_delete=ON` (see migrate.ts).
 * - The schema is migrated with numbered, append-only `.sql` migrations keyed on
 *   `PRAGMA user_version` (`./migrations/`).
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
import { noopLogger, type Logger } from "../../../src/pure/logger.js";
import { DIGEST_TTL_MS, DigestPruneSchedule } from "../digestPruning.js";
import { inboundGroupSessionCursor, parseInboundGroupSessionCursor } from "../inboundCursor.js";
import { validateBatchForAccount } from "../validateChanges.js";
import { openDatabase, sqliteStoreError } from "./migrate.js";
import {
  accountParams,
  deviceParams,
  inboundParams,
  memberParams,
  olmParams,
  outboundParams,
  packReplay,
  pendingParams,
  roomParams,
  toAccount,
  toDevice,
  toInbound,
  toMember,
  toOlm,
  toOutbound,
  toPending,
  toReplay,
  toRoom,
} from "./rows.js";
import { prepareStatements, type Db, type Statements } from "./statements.js";

/** Re-exported where it always was: the cursor format of {@link SqliteCryptoStore.listInboundGroupSessions}. */
export { inboundGroupSessionCursor };

/** Most cached replay session numbers (the cache is emptied when full). */
const REPLAY_SESSION_CACHE = 20_000;
const replaySessionKey = (accountId: number, senderKey: string, sessionId: string): string => `${accountId}\u0000${senderKey}\u0000${sessionId}`;

/** The selected account: its IDs, and its row ID once the row exists. */
interface Scope {
  userId: string;
  deviceId: string;
  accountId: number | null;
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
  private readonly pruning = new DigestPruneSchedule();
  /** (account, sender key, session ID) → replay session number; see migration 003. */
  private readonly replaySessions = new Map<string, number>();

  /**
   * @param path - Database file; its folder is created (mode 0700) when missing.
   * @param logger - Receives open/migration/lock diagnostics (never record contents).
   */
  /** `options.nativeBinding`: path of better-sqlite3's compiled module (e.g. unpacked from an Electron asar). */
  constructor(path: string, logger: Logger = noopLogger, private readonly options: { nativeBinding?: string } = {}) {
    this.path = path;
    this.location = path;
    this.logger = logger;
  }

  /**
   * Create the file (mode 0600), open it, take the exclusive lock and migrate (see migrate.ts).
   * Idempotent while open. Throws `StoreLockedError` when another connection or process holds
   * the file, and `StoreError` on any other failure (including a schema newer than this code).
   */
  async open(): Promise<void> {
    if (this.db) return;
    const db = openDatabase(this.path, this.logger, this.options);
    try {
      this.st = prepareStatements(db);
    } catch (e) {
      db.close();
      throw sqliteStoreError(`Cannot open the crypto store ${this.path}`, this.path, e);
    }
    this.db = db;
    this.logger.debug(`crypto store opened: ${this.path}`);
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
    const c = parseInboundGroupSessionCursor(after);
    return this.s().listInboundAfter.all(a, c.roomId, c.senderKey, c.sessionId, n).map(toInbound);
  }

  countInboundGroupSessionsToBackUp(version: string): number {
    const a = this.acct();
    return a === null ? 0 : (this.s().countInboundToBackUp.get(a, version) ?? 0);
  }

  /** Inbound sessions not confirmed in backup `version`, in the order of {@link listInboundGroupSessions}. */
  listInboundGroupSessionsToBackUp(version: string, limit: number): InboundGroupSessionRecord[] {
    const a = this.acct();
    if (a === null || !(limit > 0)) return [];
    return this.s().listInboundToBackUp.all(a, version, Math.floor(limit)).map(toInbound);
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
    const rec = toReplay(r, senderKey, sessionId, messageIndex);
    if (!rec) throw new StoreError(`A replay record of session ${sessionId} in the crypto store is corrupted.`, { path: this.path });
    return rec;
  }

  /** Pending events of one session in a room, oldest first, then in the order they were saved (rowid). */
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
    const scope = this.scope;
    if (!validateBatchForAccount(changes, scope, scope?.accountId != null)) return;
    const acc = changes.account;
    const now = Date.now();
    const prune = this.pruning.due(now);
    let accountId: number;
    // Session numbers handed out in this batch: cached only once the batch is committed.
    const newReplaySessions: [string, number][] = [];
    try {
      accountId = db.transaction((): number => {
        let a: number;
        if (acc) {
          st.upsertAccount.run(...accountParams(acc));
          a = st.getAccount.get(acc.userId, acc.deviceId)!.account_id;
        } else {
          a = scope!.accountId!;
        }
        for (const r of changes.olmSessions ?? []) st.upsertOlmSession.run(...olmParams(a, r));
        for (const r of changes.inboundGroupSessions ?? []) st.upsertInbound.run(...inboundParams(a, r));
        for (const roomId of changes.deletedOutboundGroupSessions ?? []) st.deleteOutbound.run(a, roomId);
        for (const r of changes.outboundGroupSessions ?? []) st.upsertOutbound.run(...outboundParams(a, r));
        for (const r of changes.devices ?? []) st.upsertDevice.run(...deviceParams(a, r));
        for (const r of changes.trackedUsers ?? []) st.upsertTrackedUser.run(a, r.userId, r.dirty ? 1 : 0);
        for (const userId of changes.untrackedUsers ?? []) st.deleteTrackedUser.run(a, userId);
        for (const r of changes.rooms ?? []) st.upsertRoom.run(...roomParams(a, r));
        for (const r of changes.roomMembers ?? []) st.upsertRoomMember.run(...memberParams(a, r));
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
        for (const r of changes.pendingEvents ?? []) st.upsertPending.run(...pendingParams(a, r));
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
      throw sqliteStoreError("Saving to the crypto store failed", this.path, e);
    }
    if (prune) this.pruning.pruned(now);
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
