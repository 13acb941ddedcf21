/**
 * What-if experiments, bench only (NOT shipped, NOT a proposal to use as is): the SDK's
 * `SqliteCryptoStore`, wrapped, loaded inside the real crypto worker through the documented
 * custom-store hook (`encryptionConf.store = { module, export, options }`), with one or more of
 * the engine/store changes the report recommends switched on, so their effect on the full sdk
 * path is measured rather than guessed:
 *
 * - `relaxedDecryptSync`: batches that only carry replay records / pending events (what
 *   `decryptRoomEvents` writes) commit with `synchronous=NORMAL`; every other batch keeps
 *   `synchronous=FULL`. In WAL mode the next FULL commit (at the latest the sync-token commit
 *   of the same sync) fsyncs those frames too, so nothing a sync token covers is less durable.
 * - `deviceCache`: `getDeviceByCurve25519` answered from a map (cleared whenever a batch writes
 *   devices or the account), instead of one SQL query + row decoding per decrypted event.
 * - `groupCommit`: decrypt-only batches are held in memory (reads see them) and written in the
 *   next other batch — in a sync, the `commitSyncToken` one — so a sync costs one transaction
 *   instead of one per room plus one. Emulates "the engine defers decrypt side effects to the
 *   token commit"; a crash before it re-processes the sync, which re-creates them.
 * - `skipReplayRows`: do not write replay records (upper bound of what a cheaper replay scheme
 *   could save; replay detection is then only as good as the engine's in-memory state).
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
import { noopLogger, type Logger } from "../src/util/logger.js";
import { SqliteCryptoStore } from "../workers/store/SqliteCryptoStore.js";

export interface TunedStoreOptions {
  path: string;
  relaxedDecryptSync?: boolean;
  deviceCache?: boolean;
  skipReplayRows?: boolean;
  groupCommit?: boolean;
}

const DECRYPT_ONLY_KEYS = new Set(["replayRecords", "pendingEvents", "deletedPendingEvents"]);

export class TunedSqliteStore implements CryptoStore {
  private readonly inner: SqliteCryptoStore;
  private readonly devices = new Map<string, DeviceRecord | null>();
  private mode: "FULL" | "NORMAL" = "FULL";
  /** groupCommit: decrypt-only writes not yet in SQLite. */
  private readonly bufReplay = new Map<string, ReplayRecord>();
  private readonly bufPending = new Map<string, PendingEventRecord | null>();

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
    this.devices.clear();
    return this.inner.useAccount(userId, deviceId);
  }
  deleteAccount(userId: string, deviceId: string): Promise<void> {
    this.devices.clear();
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
    if (!this.opts.deviceCache) return this.inner.getDeviceByCurve25519(curve25519);
    const hit = this.devices.get(curve25519);
    if (hit !== undefined) return hit;
    const d = this.inner.getDeviceByCurve25519(curve25519);
    this.devices.set(curve25519, d);
    return d;
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
    return this.inner.getReplayRecord(senderKey, sessionId, messageIndex) ?? this.bufReplay.get(`${senderKey}|${sessionId}|${messageIndex}`) ?? null;
  }
  getPendingEvents(roomId: string, sessionId: string): PendingEventRecord[] {
    const byId = new Map(this.inner.getPendingEvents(roomId, sessionId).map((p) => [p.eventId, p] as const));
    for (const [k, v] of this.bufPending) {
      if (v === null) byId.delete(k.slice(k.indexOf("|") + 1));
      else if (v.roomId === roomId && v.sessionId === sessionId) byId.set(v.eventId, v);
    }
    return [...byId.values()];
  }
  countPendingEvents(): number {
    let n = this.inner.countPendingEvents();
    for (const v of this.bufPending.values()) n += v === null ? 0 : 1;
    return n;
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
    if (changes.devices?.length || changes.account) this.devices.clear();
    let c = changes;
    if (this.opts.skipReplayRows && c.replayRecords) {
      const { replayRecords: _r, ...rest } = c;
      c = rest;
      if (!Object.keys(c).length) return;
    }
    const decryptOnly = Object.keys(c).every((k) => DECRYPT_ONLY_KEYS.has(k));
    if (this.opts.groupCommit) {
      if (decryptOnly) {
        for (const r of c.replayRecords ?? []) {
          const k = `${r.senderKey}|${r.sessionId}|${r.messageIndex}`;
          if (!this.bufReplay.has(k)) this.bufReplay.set(k, r);
        }
        for (const r of c.pendingEvents ?? []) this.bufPending.set(`${r.roomId}|${r.eventId}`, r);
        for (const r of c.deletedPendingEvents ?? []) this.bufPending.set(`${r.roomId}|${r.eventId}`, null);
        if (this.bufReplay.size + this.bufPending.size < 20_000) return;
      }
      c = this.withBuffered(c);
    }
    if (this.opts.relaxedDecryptSync) this.setSync(decryptOnly ? "NORMAL" : "FULL");
    this.inner.saveChanges(c);
    this.bufReplay.clear();
    this.bufPending.clear();
  }

  private withBuffered(c: StoreChanges): StoreChanges {
    if (!this.bufReplay.size && !this.bufPending.size) return c;
    const pendingPut = [...this.bufPending.values()].filter((v): v is PendingEventRecord => v !== null);
    const pendingDel = [...this.bufPending].filter(([, v]) => v === null).map(([k]) => ({ roomId: k.slice(0, k.indexOf("|")), eventId: k.slice(k.indexOf("|") + 1) }));
    return {
      ...c,
      replayRecords: [...this.bufReplay.values(), ...(c.replayRecords ?? [])],
      pendingEvents: [...pendingPut, ...(c.pendingEvents ?? [])],
      deletedPendingEvents: [...pendingDel, ...(c.deletedPendingEvents ?? [])],
    };
  }

  private setSync(mode: "FULL" | "NORMAL"): void {
    if (mode === this.mode) return;
    const db = (this.inner as unknown as { db: Database.Database | null }).db;
    if (!db) return;
    db.pragma(`synchronous = ${mode}`);
    this.mode = mode;
  }
}
