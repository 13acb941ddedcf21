/**
 * The options of `MatrixClient`: encryption, the crypto store, logging, HTTP and sync timing.
 */
import type { Dispatcher } from "undici";
import type { StoreConfig } from "../protocol/store.js";
import type { WorkerOptions } from "../protocol/api.js";
import type { Logger, LogLevel } from "../pure/logger.js";
import type { AutoJoinPolicy } from "./rooms/AutoJoiner.js";
import { join } from "node:path";
import { availableParallelism } from "node:os";
import { InvalidArgumentError } from "../protocol/errors.js";
import { userDataDir } from "./paths.js";

/** Where and how the crypto store is kept. */
export interface StoreConf {
  /** Folder of the SQLite file (created if missing). Default: the platform's user data directory (see `appName`). */
  dbPath?: string;
  /** File name. Default `crypto.db`. */
  dbName?: string;
  /**
   * Key that encrypts libolm pickles at rest. The default is a constant: it keeps keys out of
   * casual view but protects nothing against someone who can read the file. Set your own secret
   * to protect the keys at rest.
   */
  pickleKey?: string;
}

/** Encryption options. */
export interface EncryptionConf {
  storeConf?: StoreConf;
  /** A store of your own, built inside the worker: module specifier or absolute path, export name, JSON options. */
  store?: { module: string; export: string; options?: unknown };
  /** Keep the crypto store in memory only (tests; everything is lost on exit). */
  inMemoryStore?: boolean;
  /**
   * Live inbound Megolm sessions kept unpickled in the worker (default 10,000: every sender of
   * 1,000 busy rooms; about 3 KB each, so up to ~35 MB when full). A session evicted is read from
   * the store and unpickled again on its next event, which costs about half a decryption.
   */
  sessionCacheSize?: number;
  /**
   * The crypto worker's entry file (a path or `file:` URL). Default: the package's
   * `dist/workers/crypto-worker.js`, found relative to the client module; a bundled application
   * (esbuild, webpack, electron-vite) is not next to it, so it names the file:
   * `workerPath: fileURLToPath(import.meta.resolve("matrix-e2ee-worker-sdk/worker"))`, or the
   * path where it ships the package's `dist/` tree.
   */
  workerPath?: string | URL;
  /**
   * Threads that decrypt room events (default 1: the crypto worker alone). With 2 or more, that
   * many Megolm decrypt workers (`decrypt-worker.js`, next to the crypto worker's entry) decipher
   * each sync's events in parallel, sharded by room; the crypto worker still decides replay,
   * labels and every write. `"auto"`: the machine's cores minus one for the main thread (1 on a
   * 2-core machine). A room's events always go to the same worker, so one busy room uses one core.
   * On Linux the decrypt workers' threads run at a lower priority (niceness 10) than the main
   * thread and the crypto worker.
   */
  decryptWorkers?: number | "auto";
}

/** Where the client keeps its state across restarts (sync token, joined rooms, `client.storage`). */
export interface StateStoreConf {
  /** Folder of the SQLite file. Default: `encryptionConf.storeConf.dbPath`, else the platform's user data directory (`appName`). */
  dbPath?: string;
  /** File name. Default `state.db`. */
  dbName?: string;
  /** Keep it in memory only (nothing survives a restart). Default: `encryptionConf.inMemoryStore`. */
  inMemory?: boolean;
}

/** Options of {@link MatrixClient}. */
export interface MatrixClientOptions {
  /** Enable end-to-end encryption (default false). */
  encryption?: boolean;
  /**
   * Name of this application's folder in the platform's user data directory, where the crypto
   * store and the state store go unless `dbPath` says otherwise (default `matrix-e2ee-worker-sdk`,
   * shared by every app that keeps the default: give yours its own).
   */
  appName?: string;
  /**
   * Path of better-sqlite3's compiled module (`better_sqlite3.node`), when it is not where
   * better-sqlite3 looks (an Electron app that unpacks it from the asar archive). Used by the
   * SQLite crypto store and the state store.
   */
  nativeBinding?: string;
  /** Reuse the device ID stored for the user at login (needs `encryption` and a full user ID). */
  restoreDeviceId?: boolean;
  /** Refuse to send to encrypted rooms with devices that are neither verified, ignored nor blacklisted. */
  verifyDevices?: boolean;
  /**
   * Share room keys only with devices cross-signed by their owner (others are sent
   * `m.room_key.withheld` with `m.unverified`), as current clients do (MSC4153). Per room too.
   */
  onlyCrossSignedDevices?: boolean;
  encryptionConf?: EncryptionConf;
  /**
   * The client state store: sync token, joined rooms and their state, and the application's
   * key-value store (`client.storage`), for every client, encrypted or not. One row set per user.
   */
  stateStore?: StateStoreConf;
  /** Logger (no-op by default). Secrets are never logged. */
  logger?: Logger;
  /**
   * Lowest level of the crypto worker's log lines that reach `logger` (the worker posts them to
   * the main thread, which calls `logger`; records below this level are never posted). Default:
   * "info" when a logger is given (the worker's debug lines are per event: ask for "debug"
   * explicitly), "silent" when not. The worker never prints to stdout or stderr itself.
   */
  workerLogLevel?: LogLevel | "silent";
  /** undici dispatcher (e.g. MockAgent in tests). */
  dispatcher?: Dispatcher;
  /** Long-poll timeout of /sync (default 30 s). */
  syncTimeoutMs?: number;
  /** Sync backoff bounds (ms). */
  syncBackoff?: { baseMs?: number; maxMs?: number };
  /**
   * Join rooms we are invited to: `true` for every invite, or an allow-list callback
   * `(roomId, inviter) => boolean | Promise<boolean>` (e.g. only invites from your admins).
   * Default false: invites are only emitted (`room.invite`). A failed join is an `error` event.
   */
  autoJoin?: AutoJoinPolicy;
}

/** The worker's store configuration for the client's options. @internal */
export function storeConfig(opts: MatrixClientOptions): StoreConfig {
  const conf = opts.encryptionConf ?? {};
  if (conf.store) return { kind: "module", module: conf.store.module, export: conf.store.export, options: conf.store.options };
  if (conf.inMemoryStore) return { kind: "memory" };
  const dir = conf.storeConf?.dbPath ?? userDataDir(opts.appName);
  return { kind: "sqlite", path: join(dir, conf.storeConf?.dbName ?? "crypto.db"), ...nativeBindingOption(opts) };
}

/** `{ nativeBinding }` when the option is set. @internal */
export function nativeBindingOption(opts: MatrixClientOptions): { nativeBinding?: string } {
  return opts.nativeBinding === undefined ? {} : { nativeBinding: opts.nativeBinding };
}

/** The state store's file (or `":memory:"`) for the client's options. @internal */
export function stateStorePath(opts: MatrixClientOptions): string {
  const conf = opts.stateStore ?? {};
  if (conf.inMemory ?? opts.encryptionConf?.inMemoryStore === true) return ":memory:";
  return join(conf.dbPath ?? opts.encryptionConf?.storeConf?.dbPath ?? userDataDir(opts.appName), conf.dbName ?? "state.db");
}

/** The options the crypto worker of a client with `opts` starts with. @internal */
export function workerOptions(opts: MatrixClientOptions, pickleKey: string): WorkerOptions {
  return {
    store: storeConfig(opts),
    pickleKey,
    logLevel: opts.workerLogLevel ?? (opts.logger ? "info" : "silent"),
    ...(opts.encryptionConf?.sessionCacheSize ? { sessionCacheSize: opts.encryptionConf.sessionCacheSize } : {}),
  };
}

/** `opts` without the pickle key (the client keeps that apart, out of reach of `util.inspect`). @internal */
export function withoutPickleKey(opts: MatrixClientOptions): MatrixClientOptions {
  const storeConf = opts.encryptionConf?.storeConf;
  if (storeConf?.pickleKey === undefined) return opts;
  const { pickleKey: _secret, ...rest } = storeConf;
  return { ...opts, encryptionConf: { ...opts.encryptionConf, storeConf: rest } };
}

/** `o` without its `undefined` properties (options often come from `process.env`). @internal */
export function definedOnly<T extends object>(o: T): { [K in keyof T]?: Exclude<T[K], undefined> } {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as { [K in keyof T]?: Exclude<T[K], undefined> };
}

/** The number of decrypt workers `encryptionConf.decryptWorkers` asks for (1: none, the crypto worker decrypts). @internal */
export function decryptWorkerCount(opts: MatrixClientOptions, cores = availableParallelism()): number {
  const n = opts.encryptionConf?.decryptWorkers ?? 1;
  if (n === "auto") return Math.max(1, cores - 1);
  if (!Number.isSafeInteger(n) || n < 1 || n > 64) throw new InvalidArgumentError(`encryptionConf.decryptWorkers must be "auto" or an integer from 1 to 64, not ${String(n)}`);
  return n;
}
