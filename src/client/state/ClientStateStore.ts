/**
 * The client's own state across restarts, for every client (encrypted or not): the sync token,
 * the joined rooms with the room state the client keeps, and a small key-value store for the
 * application (`client.storage`). One SQLite file on the main thread (`state.db` by default, next
 * to the crypto store), one row set per user ID.
 *
 * Why here and not in the crypto store: a client without encryption has no worker (and should not
 * start libolm to remember a sync token); the writes are one small transaction per sync (the rooms
 * the sync changed plus the token), off the decrypt path. With encryption on, the crypto store's
 * token stays the one the client resumes from (it is committed with the sync's to-device results);
 * this store is written *before* that commit, so it is never behind it, and re-processing a sync
 * re-applies the same room state.
 *
 * @packageDocumentation
 */
import Database from "better-sqlite3";
import { chmodSync, closeSync, mkdirSync, openSync } from "node:fs";
import { dirname } from "node:path";
import { InvalidArgumentError, StoreError } from "../../protocol/errors.js";
import { sqliteOpenDetails, sqliteOpenFailure } from "../../pure/sqliteNative.js";

/** A joined room as persisted: our membership, the members seen and the encryption settings. @internal */
export interface PersistedRoom {
  roomId: string;
  /** Members seen in sync state: user ID → membership. */
  members: Record<string, string>;
  /** `m.room.encryption` content, null when known not encrypted, absent when unknown. */
  encryption?: Record<string, unknown> | null;
}

/**
 * The application's key-value store (`client.storage`), persisted next to the client's sync
 * state, per user ID. Values are strings (store JSON if you need structure); writes are durable
 * when the call returns.
 */
export interface KeyValueStore {
  /** The value stored for `key`, or undefined. */
  get(key: string): string | undefined;
  /** Store `value` under `key` (replacing any previous value). */
  set(key: string, value: string): void;
  /** Remove `key`; true when it existed. */
  delete(key: string): boolean;
  /** Every key, sorted. */
  keys(): string[];
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS sync_state (user_id TEXT PRIMARY KEY, token TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS joined_rooms (user_id TEXT NOT NULL, room_id TEXT NOT NULL, state_json TEXT NOT NULL, PRIMARY KEY (user_id, room_id));
CREATE TABLE IF NOT EXISTS app_kv (user_id TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (user_id, key));
`;

/** One user's rows of the state file. @internal */
export class ClientStateStore implements KeyValueStore {
  private constructor(
    private readonly db: Database.Database,
    private readonly userId: string,
    /** The WAL file, when the store is in WAL mode (an in-memory one is not): only then can a write defer its sync. */
    private readonly walFile: string | null,
  ) {}

  /**
   * Open (creating with mode 0600) the state file at `path`, or `":memory:"`, for `userId`.
   * Several processes may share the file (one row set per user); a missing better-sqlite3 native
   * module or an unreadable file gives `StoreError`. `options.nativeBinding`: better-sqlite3's
   * compiled module, when it is not where better-sqlite3 looks.
   */
  static open(path: string, userId: string, options: { nativeBinding?: string } = {}): ClientStateStore {
    if (path !== ":memory:") {
      try {
        const dir = dirname(path);
        if (mkdirSync(dir, { recursive: true, mode: 0o700 }) !== undefined) chmodSync(dir, 0o700);
        closeSync(openSync(path, "a", 0o600));
      } catch (e) {
        throw new StoreError(`Cannot create the client state store ${path}: ${e instanceof Error ? e.message : String(e)}`, { path });
      }
    }
    let db: Database.Database | undefined;
    try {
      db = new Database(path, options);
      db.pragma("busy_timeout = 5000");
      const wal = db.pragma("journal_mode = WAL", { simple: true }) === "wal";
      db.pragma("synchronous = FULL");
      db.exec(SCHEMA);
      return new ClientStateStore(db, userId, wal ? `${path}-wal` : null);
    } catch (e) {
      db?.close();
      throw new StoreError(sqliteOpenFailure(`Cannot open the client state store ${path}`, e), { path, ...sqliteOpenDetails(e) });
    }
  }

  /** The token of the last sync saved, or null. */
  syncToken(): string | null {
    const row = this.db.prepare("SELECT token FROM sync_state WHERE user_id = ?").get(this.userId) as { token: string } | undefined;
    return row?.token ?? null;
  }

  /** The joined rooms saved, in room ID order. */
  rooms(): PersistedRoom[] {
    const rows = this.db.prepare("SELECT state_json FROM joined_rooms WHERE user_id = ? ORDER BY room_id").all(this.userId) as { state_json: string }[];
    return rows.map((r) => JSON.parse(r.state_json) as PersistedRoom);
  }

  /**
   * One transaction: the sync's joined rooms (replaced), the rooms it left (removed), its token.
   * Durable when it returns, unless `deferSync`: then it is written to the file (it survives the
   * process) without waiting for the disk, and is durable once the files of
   * {@link ClientStateStore.durabilityFiles} were synced — the crypto worker does that before it
   * commits the sync's token, so this thread never waits for the disk during sync processing.
   */
  saveSync(token: string, joined: PersistedRoom[], left: string[], opts: { deferSync?: boolean } = {}): void {
    const put = this.db.prepare("INSERT OR REPLACE INTO joined_rooms (user_id, room_id, state_json) VALUES (?, ?, ?)");
    const del = this.db.prepare("DELETE FROM joined_rooms WHERE user_id = ? AND room_id = ?");
    const tok = this.db.prepare("INSERT OR REPLACE INTO sync_state (user_id, token) VALUES (?, ?)");
    const write = this.db.transaction(() => {
      for (const r of joined) put.run(this.userId, r.roomId, JSON.stringify(r));
      for (const roomId of left) del.run(this.userId, roomId);
      tok.run(this.userId, token);
    });
    if (!opts.deferSync || this.walFile === null) return write();
    // WAL with synchronous=NORMAL: the commit is appended to the WAL file, not synced.
    this.db.pragma("synchronous = NORMAL");
    try {
      write();
    } finally {
      this.db.pragma("synchronous = FULL");
    }
  }

  /**
   * The files whose sync makes every write of {@link ClientStateStore.saveSync} with `deferSync`
   * durable: the WAL file (none when the store is not in WAL mode, an in-memory one: its writes
   * never defer their sync). SQLite syncs the database file itself whenever it checkpoints the WAL
   * into it.
   */
  durabilityFiles(): string[] {
    return this.walFile === null ? [] : [this.walFile];
  }

  get(key: string): string | undefined {
    const row = this.db.prepare("SELECT value FROM app_kv WHERE user_id = ? AND key = ?").get(this.userId, checkKey(key)) as { value: string } | undefined;
    return row?.value;
  }

  set(key: string, value: string): void {
    if (typeof value !== "string") throw new InvalidArgumentError("storage values are strings (JSON.stringify structured values)");
    this.db.prepare("INSERT OR REPLACE INTO app_kv (user_id, key, value) VALUES (?, ?, ?)").run(this.userId, checkKey(key), value);
  }

  delete(key: string): boolean {
    return this.db.prepare("DELETE FROM app_kv WHERE user_id = ? AND key = ?").run(this.userId, checkKey(key)).changes > 0;
  }

  keys(): string[] {
    return (this.db.prepare("SELECT key FROM app_kv WHERE user_id = ? ORDER BY key").all(this.userId) as { key: string }[]).map((r) => r.key);
  }

  /** Close the file. Idempotent. */
  close(): void {
    if (this.db.open) this.db.close();
  }
}

function checkKey(key: string): string {
  if (typeof key !== "string" || key === "") throw new InvalidArgumentError("storage keys are non-empty strings");
  return key;
}
