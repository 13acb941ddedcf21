/**
 * Opening the SQLite crypto store's file: create it private, open it, take the exclusive lock,
 * set the pragmas, and migrate the schema with the numbered `.sql` files of `./migrations/`.
 *
 * - The file is created with mode 0600 (its folder with 0700 when missing) before SQLite opens it.
 * - `PRAGMA locking_mode=EXCLUSIVE` plus an immediate `BEGIN EXCLUSIVE; COMMIT` takes the file
 *   lock and holds it until the connection closes; a second opener (another process, or another
 *   connection of this process) gets `StoreLockedError` and changes nothing.
 * - WAL journal, `synchronous=FULL` (a committed batch is durable), foreign keys on (deleting an
 *   account cascades), `secure_delete=ON` (deleted pickles are overwritten).
 * - Migrations are append-only, keyed on `PRAGMA user_version`: file `NNN_name.sql` moves the
 *   schema from version NNN-1 to NNN, each in its own transaction. The files ship in the package
 *   next to this module (`npm run build` copies them, `scripts/copy-assets.mjs`) and are read at
 *   every open.
 *
 * @internal
 * @packageDocumentation
 */

import Database from "better-sqlite3";
import { chmodSync, closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync } from "node:fs";
import { dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { StoreError, StoreLockedError } from "../../../src/protocol/errors.js";
import type { Logger } from "../../../src/pure/logger.js";
import { sqliteOpenDetails, sqliteOpenFailure } from "../../../src/pure/sqliteNative.js";
import type { Db } from "./statements.js";

/**
 * The schema version statements.ts and rows.ts are written for: the number of the last migration.
 * Bump it with every new migration file.
 */
export const SCHEMA_VERSION = 6;

/** The folder of the migration files, next to this module (in the source tree and in `dist/`). */
export const MIGRATIONS_DIR = new URL("./migrations/", import.meta.url);

/** `NNN_name.sql`: three digits, the version the file migrates to. */
const MIGRATION_FILE = /^(\d{3})_[a-z0-9_]+\.sql$/;

/**
 * The migrations' SQL, in order: entry `i` moves the schema from `user_version = i` to `i + 1`.
 * Throws `StoreError` when the folder cannot be read, a `.sql` file is misnamed or numbered
 * twice, or any of `001` … {@link SCHEMA_VERSION} is missing (or one beyond it is present).
 *
 * @param dir - Folder to read (tests point it elsewhere); default {@link MIGRATIONS_DIR}.
 */
export function loadMigrations(dir: URL = MIGRATIONS_DIR): string[] {
  const where = fileURLToPath(dir);
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch (e) {
    throw new StoreError(`Cannot read the SQLite migrations in ${where}: ${errMessage(e)}`, { path: where });
  }
  const byVersion = new Map<number, string>();
  for (const name of names.sort()) {
    if (!name.endsWith(".sql")) continue;
    const m = MIGRATION_FILE.exec(name);
    const v = m ? Number(m[1]) : 0;
    if (v < 1 || byVersion.has(v)) {
      throw new StoreError(`Unexpected SQLite migration file ${name} in ${where} (expected one NNN_name.sql per version from 001).`, { path: where });
    }
    byVersion.set(v, name);
  }
  const out: string[] = [];
  for (let v = 1; v <= Math.max(SCHEMA_VERSION, byVersion.size); v++) {
    const name = byVersion.get(v);
    if (name === undefined || v > SCHEMA_VERSION) {
      const problem = name === undefined ? "is missing" : `is newer than this code (${SCHEMA_VERSION})`;
      throw new StoreError(`SQLite migration ${String(v).padStart(3, "0")} ${problem} in ${where}; the package is incomplete.`, {
        path: where,
        schemaVersion: v,
      });
    }
    out.push(readFileSync(new URL(name, dir), "utf8"));
  }
  return out;
}

/**
 * Open `path` (or `":memory:"`) exclusively and migrate it to {@link SCHEMA_VERSION}. Throws
 * `StoreLockedError` when another connection or process holds the file, and `StoreError` on any
 * other failure (including a schema newer than this code, or missing migration files); the
 * connection is closed again on failure.
 */
export function openDatabase(path: string, logger: Logger, options: { nativeBinding?: string } = {}): Db {
  const inMemory = path === ":memory:";
  if (!inMemory) createPrivateFile(path);
  let db: Db;
  try {
    db = new Database(path, { ...(inMemory ? {} : { fileMustExist: true }), ...options });
  } catch (e) {
    throw openError(path, logger, e);
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
    migrate(db, path, logger);
    if (!inMemory) {
      for (const suffix of ["-wal", "-shm", "-journal"]) {
        const p = path + suffix;
        if (existsSync(p)) chmodSync(p, 0o600);
      }
    }
    return db;
  } catch (e) {
    try {
      db.close();
    } catch {
      // already failing
    }
    throw openError(path, logger, e);
  }
}

/** Apply the migrations past the file's `user_version`, one transaction each. */
function migrate(db: Db, path: string, logger: Logger): void {
  const current = Number(db.pragma("user_version", { simple: true }));
  if (current > SCHEMA_VERSION) {
    throw new StoreError(`The crypto store ${path} has schema version ${current}, newer than this SDK supports (${SCHEMA_VERSION}).`, {
      path,
      schemaVersion: current,
    });
  }
  // Read even when there is nothing to apply, so an incomplete package fails at its first open.
  const migrations = loadMigrations();
  for (let v = current; v < migrations.length; v++) {
    const sql = migrations[v]!;
    db.transaction(() => {
      db.exec(sql);
      db.pragma(`user_version = ${v + 1}`);
    })();
    logger.info(`crypto store ${path} migrated to schema version ${v + 1}`);
  }
}

/** Create the file with mode 0600 (tightening an existing one) and a missing folder with 0700. */
function createPrivateFile(path: string): void {
  try {
    const dir = dirname(path);
    if (mkdirSync(dir, { recursive: true, mode: 0o700 }) !== undefined) chmodSync(dir, 0o700);
    closeSync(openSync(path, "a", 0o600));
    chmodSync(path, 0o600);
  } catch (e) {
    throw new StoreError(`Cannot create the crypto store ${path}: ${errMessage(e)}`, { path });
  }
}

function openError(path: string, logger: Logger, e: unknown): Error {
  if (e instanceof StoreLockedError || e instanceof StoreError) return e;
  if (isLockError(e)) {
    logger.warn(`crypto store ${path} is locked by another connection or process`);
    return new StoreLockedError(path);
  }
  return sqliteStoreError(`Cannot open the crypto store ${path}`, path, e);
}

function isLockError(e: unknown): boolean {
  const code = (e as { code?: unknown } | null)?.code;
  return typeof code === "string" && (code.startsWith("SQLITE_BUSY") || code.startsWith("SQLITE_LOCKED"));
}

/** `StoreError` for a SQLite failure: `what: <message>`, with the SQLite code when there is one. */
export function sqliteStoreError(what: string, path: string, e: unknown): StoreError {
  const code = (e as { code?: unknown } | null)?.code;
  return new StoreError(sqliteOpenFailure(what, e), { path, ...(typeof code === "string" ? { sqliteCode: code } : {}), ...sqliteOpenDetails(e) });
}

function errMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
