/**
 * What-if experiments, bench only (NOT shipped, NOT a proposal to use as is): the SDK's
 * `SqliteCryptoStore`, wrapped, loaded inside the real crypto worker through the documented
 * custom-store hook (`encryptionConf.store = { module, export, options }`), with one store-side
 * change switched on, so what the remaining store work costs the full sdk path is measured rather
 * than guessed:
 *
 * - `relaxedTokenCommit`: the per-sync token commit (sync token, replay records, events kept for
 *   later) is written with `synchronous=NORMAL`, i.e. without its fsync; every other batch keeps
 *   `synchronous=FULL`. In WAL mode the next FULL commit fsyncs those frames too, and a lost tail
 *   only rolls the token back with what it covered.
 * - `skipReplayRows`: do not write replay records (the upper bound of what any cheaper replay
 *   scheme could save; replay detection is then only as good as the engine's in-memory state).
 */
import type Database from "better-sqlite3";
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
} from "../src/protocol/store.js";
import { noopLogger, type Logger } from "../src/pure/logger.js";
import { SqliteCryptoStore } from "../workers/store/sqlite/SqliteCryptoStore.js";

export interface TunedStoreOptions {
  path: string;
  relaxedTokenCommit?: boolean;
  skipReplayRows?: boolean;
}

/** What the engine's token commit writes. */
const TOKEN_COMMIT_KEYS = new Set(["syncToken", "replayRecords", "pendingEvents", "deletedPendingEvents", "values"]);

export class TunedSqliteStore implements CryptoStore {
  private readonly inner: SqliteCryptoStore;
  private mode: "FULL" | "NORMAL" = "FULL";

  constructor(
    private readonly opts: TunedStoreOptions,
    logger: Logger = noopLogger,
  ) {
    this.inner = new SqliteCryptoStore(opts.path, logger);
  }

  get location(): string {
    return this.inner.location;
  }
  open(): Promise<void> {
    return this.inner.open();
  }
  close(): Promise<void> {
    return this.inner.close();
  }
  listAccounts(): { userId: string; deviceId: string; createdTs: number }[] {
    return this.inner.listAccounts();
  }
  getStoredDeviceId(userId: string): string | null {
    return this.inner.getStoredDeviceId(userId);
  }
  useAccount(userId: string, deviceId: string): Promise<AccountRecord | null> {
    return this.inner.useAccount(userId, deviceId);
  }
  deleteAccount(userId: string, deviceId: string): Promise<void> {
    return this.inner.deleteAccount(userId, deviceId);
  }
  getOlmSessions(senderKey: string): OlmSessionRecord[] {
    return this.inner.getOlmSessions(senderKey);
  }
  getInboundGroupSession(roomId: string, senderKey: string, sessionId: string): InboundGroupSessionRecord | null {
    return this.inner.getInboundGroupSession(roomId, senderKey, sessionId);
  }
  countInboundGroupSessions(): number {
    return this.inner.countInboundGroupSessions();
  }
  listInboundGroupSessions(limit: number, after?: string): InboundGroupSessionRecord[] {
    return this.inner.listInboundGroupSessions(limit, after);
  }
  countInboundGroupSessionsToBackUp(version: string): number {
    return this.inner.countInboundGroupSessionsToBackUp(version);
  }
  listInboundGroupSessionsToBackUp(version: string, limit: number): InboundGroupSessionRecord[] {
    return this.inner.listInboundGroupSessionsToBackUp(version, limit);
  }
  getOutboundGroupSession(roomId: string): OutboundGroupSessionRecord | null {
    return this.inner.getOutboundGroupSession(roomId);
  }
  getUserDevices(userId: string): DeviceRecord[] {
    return this.inner.getUserDevices(userId);
  }
  getDevice(userId: string, deviceId: string): DeviceRecord | null {
    return this.inner.getDevice(userId, deviceId);
  }
  getDeviceByCurve25519(curve25519: string): DeviceRecord | null {
    return this.inner.getDeviceByCurve25519(curve25519);
  }
  getTrackedUsers(): TrackedUserRecord[] {
    return this.inner.getTrackedUsers();
  }
  getRoom(roomId: string): RoomRecord | null {
    return this.inner.getRoom(roomId);
  }
  getRoomMembers(roomId: string): RoomMemberRecord[] {
    return this.inner.getRoomMembers(roomId);
  }
  getReplayRecord(senderKey: string, sessionId: string, messageIndex: number): ReplayRecord | null {
    return this.inner.getReplayRecord(senderKey, sessionId, messageIndex);
  }
  getPendingEvents(roomId: string, sessionId: string): PendingEventRecord[] {
    return this.inner.getPendingEvents(roomId, sessionId);
  }
  countPendingEvents(): number {
    return this.inner.countPendingEvents();
  }
  hasToDeviceDigest(digest: string): boolean {
    return this.inner.hasToDeviceDigest(digest);
  }
  getSyncToken(): string | null {
    return this.inner.getSyncToken();
  }
  getValue(key: string): string | null {
    return this.inner.getValue(key);
  }

  saveChanges(changes: StoreChanges): void {
    let c = changes;
    if (this.opts.skipReplayRows && c.replayRecords) {
      const { replayRecords: _r, ...rest } = c;
      c = rest;
      if (!Object.keys(c).length) return;
    }
    if (this.opts.relaxedTokenCommit) this.setSync(c.syncToken !== undefined && Object.keys(c).every((k) => TOKEN_COMMIT_KEYS.has(k)) ? "NORMAL" : "FULL");
    this.inner.saveChanges(c);
  }

  private setSync(mode: "FULL" | "NORMAL"): void {
    if (mode === this.mode) return;
    const db = (this.inner as unknown as { db: Database.Database | null }).db;
    if (!db) return;
    db.pragma(`synchronous = ${mode}`);
    this.mode = mode;
  }
}
