/**
 * Server-side key backup on the main thread: finds or creates the backup version, moves its key
 * to and from secret storage (`m.megolm_backup.v1`), runs the background upload (batches the
 * worker builds and encrypts; single flight, retried with backoff; sessions are marked only after
 * the server confirmed their batch) and the restore (sessions decrypted and imported in the
 * worker, events they unlock emitted again). The engine decides trust (backup/KeyBackup).
 * @internal
 */
import type { KeyBackupTrust, RoomDecryptResult } from "../../protocol/api.js";
import { InvalidArgumentError, MatrixHttpError } from "../../protocol/errors.js";
import { p, type HttpClient } from "../../http/HttpClient.js";
import type { Logger } from "../../pure/logger.js";
import { computeBackoff } from "../../util/backoff.js";
import { SingleFlight } from "../../util/KeyedMutex.js";
import type { QuietTime } from "../../util/QuietTime.js";
import type { CryptoAccess } from "../CryptoAccess.js";
import { emitError, type ClientEventSink } from "../events.js";
import { isObj, type Json } from "../json.js";
import type { TimelineEmitter } from "../timeline.js";
import type { AccountData } from "./accountData.js";

/** The secret name of the backup key in secret storage. */
const BACKUP_SECRET = "m.megolm_backup.v1";
/** Sessions per `PUT /room_keys/keys` (as matrix-rust-sdk): one batch keeps the worker about 30 ms (0.28 ms a session). */
const BATCH_SIZE = 100;
/** Sessions per worker call of a restore (one transaction each, so syncs interleave). */
const IMPORT_BATCH = 500;
/**
 * Uploads run between syncs: a batch starts once sync processing has rested this long (the long
 * poll waits), so it never competes with a catch-up's decryption for the worker.
 */
const QUIET_MS = 250;
/** ...or after this long whatever runs, one batch at a time: uploads slow down under load, never stop. */
const MAX_QUIET_WAIT_MS = 10_000;
/** A missing session is looked up in the backup at most once in this time. */
const DOWNLOAD_AGAIN_MS = 10 * 60_000;

/** The recovery key or passphrase of secret storage, or the backup key itself. */
export type KeyBackupSecret = { recoveryKey: string } | { passphrase: string } | { backupKey: string };

/** What `MatrixClient.enableKeyBackup` resolves with. */
export interface KeyBackupInfo {
  /** The backup version uploaded to. */
  version: string;
  /** A new version was created (none existed on the server). */
  created: boolean;
  /** Why the version is trusted. */
  trust: KeyBackupTrust;
}

/** What the backup manager needs. @internal */
export interface KeyBackupDeps {
  http: HttpClient;
  crypto: CryptoAccess;
  accountData: AccountData;
  events: ClientEventSink;
  timeline: TimelineEmitter;
  log: Logger;
  isClosed: () => boolean;
  /** Sync processing's activity: upload batches wait for a quiet moment. */
  quiet: QuietTime;
  /** Override {@link QUIET_MS} and {@link MAX_QUIET_WAIT_MS} (tests). */
  quietTimes?: { quietMs: number; maxWaitMs: number };
}

/** Server-side key backup: enable, upload in the background, restore. @internal */
export class KeyBackupManager {
  private readonly flight = new SingleFlight(() => this.pass());
  private retryTimer: NodeJS.Timeout | null = null;
  private failures = 0;
  /** Flushes in progress: while any runs, batches do not wait for a quiet moment. */
  private flushes = 0;
  /** The server's version as last fetched (undefined: not yet), for single-session downloads. */
  private info: Json | null | undefined = undefined;
  /** When each missing session (`room|session`) was last looked up in the backup. */
  private readonly lookedUp = new Map<string, number>();
  /** Single-session downloads run one at a time. */
  private downloads: Promise<void> = Promise.resolve();

  constructor(private readonly deps: KeyBackupDeps) {}

  /** The current version on the server, or null when there is none. */
  async serverVersion(): Promise<Json | null> {
    try {
      return (this.info = await this.deps.http.request<Json>("GET", "/_matrix/client/v3/room_keys/version"));
    } catch (err) {
      if (err instanceof MatrixHttpError && err.status === 404) return (this.info = null);
      throw err;
    }
  }

  /** Events the client emits: a new room key goes to the backup; a missing session is looked up in it. */
  observe(name: string, args: unknown[]): void {
    if (name === "room.key") void this.trigger();
    const ev = args[0] as { code?: string; roomId?: string; sessionId?: string | null } | undefined;
    if (name === "room.undecryptable" && ev?.code === "missing_session" && ev.roomId && ev.sessionId) this.lookUp(ev.roomId, ev.sessionId);
  }

  /**
   * With the backup key held, download the one missing session (`GET /room_keys/keys/{room}/{session}`)
   * and import it; the events it decrypts are emitted again. Rate-limited: one download at a time,
   * each session at most once per {@link DOWNLOAD_AGAIN_MS}. Failures are logged, never thrown.
   */
  private lookUp(roomId: string, sessionId: string): void {
    const k = `${roomId}|${sessionId}`;
    const now = Date.now();
    if ((this.lookedUp.get(k) ?? -Infinity) > now - DOWNLOAD_AGAIN_MS) return;
    this.lookedUp.set(k, now);
    if (this.lookedUp.size > 10_000) for (const [key, t] of this.lookedUp) if (t <= now - DOWNLOAD_AGAIN_MS) this.lookedUp.delete(key);
    this.downloads = this.downloads.then(async () => {
      try {
        const info = this.info === undefined ? await this.serverVersion() : this.info;
        if (!info || typeof info.version !== "string" || this.deps.isClosed()) return;
        if (!(await this.deps.crypto.api.keyBackupStatus(info)).trust?.matchesKey) return;
        const data = await this.deps.http.request<Json>("GET", p`/_matrix/client/v3/room_keys/keys/${roomId}/${sessionId}`, { query: { version: info.version } });
        this.emitRedecrypted((await this.deps.crypto.api.importBackupSessions(info, JSON.stringify({ rooms: { [roomId]: { sessions: { [sessionId]: data } } } }))).redecrypted);
      } catch (err) {
        if (err instanceof MatrixHttpError && err.status === 404) return;
        this.deps.log.info(`session ${sessionId} could not be fetched from the key backup: ${String(err)}`);
      }
    });
  }

  private emitRedecrypted(redecrypted: { roomId: string; results: RoomDecryptResult[] }[]): void {
    for (const batch of redecrypted) for (const ev of batch.results) if (ev.ok) this.deps.timeline.emitDecrypted(batch.roomId, { event_id: ev.eventId }, ev, true);
  }

  /** See `MatrixClient.enableKeyBackup`. */
  async enable(secret: { recoveryKey?: string; passphrase?: string } = {}): Promise<KeyBackupInfo> {
    const { crypto } = this.deps;
    const existing = await this.serverVersion();
    if (existing) {
      const status = await crypto.api.keyBackupStatus(existing);
      const source: KeyBackupSecret | null = secret.recoveryKey ? { recoveryKey: secret.recoveryKey } : secret.passphrase ? { passphrase: secret.passphrase } : null;
      if (!status.trust?.matchesKey && source) {
        // Uploading needs only the public key: a version trusted by its signatures is adopted even
        // when its private key cannot be taken from secret storage.
        await this.unlock(existing, source).catch((err: unknown) => {
          if (!status.trust?.trusted) throw err;
          this.deps.log.warn(`the backup key of version ${String(existing.version)} could not be taken from secret storage: ${String(err)}`);
        });
      }
      const trust = (await crypto.api.activateKeyBackup(existing))!;
      void this.trigger();
      return { version: String(existing.version), created: false, trust };
    }
    const ss = secret.recoveryKey || secret.passphrase ? await this.deps.accountData.defaultSecretStorageKey() : null;
    if ((secret.recoveryKey || secret.passphrase) && !ss) throw new InvalidArgumentError("this account has no default secret storage key to keep the backup key in");
    const made = await crypto.api.createKeyBackup(ss ? { ...ss, ...secret } : undefined);
    const res = await this.deps.http.request<Json>("POST", "/_matrix/client/v3/room_keys/version", { body: { algorithm: made.algorithm, auth_data: made.authData } });
    if (typeof res.version !== "string") throw new MatrixHttpError(200, "M_BAD_JSON", "POST /room_keys/version answered without a version");
    if (made.secret) await this.deps.accountData.set(BACKUP_SECRET, made.secret);
    this.info = { version: res.version, algorithm: made.algorithm, auth_data: made.authData };
    const trust = (await crypto.api.activateKeyBackup(this.info))!;
    void this.trigger();
    return { version: res.version, created: true, trust };
  }

  /** Hold the key of `info`: from secret storage (recovery key / passphrase) or given. */
  private async unlock(info: Json, secret: KeyBackupSecret): Promise<void> {
    if ("backupKey" in secret) return this.deps.crypto.api.unlockKeyBackup(info, { backupKey: secret.backupKey });
    const ss = await this.deps.accountData.defaultSecretStorageKey();
    const stored = ss ? await this.deps.accountData.get(BACKUP_SECRET) : null;
    // No copy in secret storage: a recovery key may be the backup key itself (older backups).
    if (!ss || !stored) {
      if ("recoveryKey" in secret) return this.deps.crypto.api.unlockKeyBackup(info, { backupKey: secret.recoveryKey });
      throw new InvalidArgumentError("the backup key is not in secret storage");
    }
    await this.deps.crypto.api.unlockKeyBackup(info, { secretStorage: { ...ss, secret: stored, ...secret } });
  }

  /** See `MatrixClient.restoreKeyBackup`. */
  async restore(secret: KeyBackupSecret, opts: { roomId?: string; onProgress?: (done: number, total: number) => void }): Promise<{ version: string; total: number; imported: number; failed: number }> {
    const info = await this.serverVersion();
    if (!info || typeof info.version !== "string") throw new InvalidArgumentError("there is no key backup on the server");
    await this.unlock(info, secret);
    const path = opts.roomId ? p`/_matrix/client/v3/room_keys/keys/${opts.roomId}` : "/_matrix/client/v3/room_keys/keys";
    const res = await this.deps.http.request<Json>("GET", path, { query: { version: info.version } });
    const rooms: Record<string, Json> = opts.roomId ? { [opts.roomId]: res } : isObj(res.rooms) ? (res.rooms as Record<string, Json>) : {};
    const all: [string, string, unknown][] = [];
    for (const [roomId, room] of Object.entries(rooms)) for (const [sid, data] of Object.entries(isObj(room.sessions) ? room.sessions : {})) all.push([roomId, sid, data]);
    let imported = 0;
    let failed = 0;
    for (let i = 0; i < all.length; i += IMPORT_BATCH) {
      const chunk: Record<string, { sessions: Json }> = {};
      for (const [roomId, sid, data] of all.slice(i, i + IMPORT_BATCH)) (chunk[roomId] ??= { sessions: {} }).sessions[sid] = data;
      const r = await this.deps.crypto.api.importBackupSessions(info, JSON.stringify({ rooms: chunk }));
      imported += r.imported;
      failed += r.failed;
      this.emitRedecrypted(r.redecrypted);
      this.progress(opts.onProgress, Math.min(i + IMPORT_BATCH, all.length), all.length);
    }
    return { version: info.version, total: all.length, imported, failed };
  }

  private progress(onProgress: ((done: number, total: number) => void) | undefined, done: number, total: number): void {
    try {
      onProgress?.(done, total);
    } catch (err) {
      emitError(this.deps.events, err);
    }
  }

  /**
   * Upload what is not backed up yet (single flight; resolves when a pass that started now ended).
   * Batches wait for a quiet moment between syncs (at most {@link MAX_QUIET_WAIT_MS} each) unless
   * `now` (a flush) asks for them at once. Never rejects.
   */
  trigger(now = false): Promise<void> {
    if (!now) return this.flight.trigger();
    this.flushes++;
    this.deps.quiet.wake();
    return this.flight.trigger().finally(() => this.flushes--);
  }

  /** Stop the retry timer and any wait for a quiet moment (the client closes). */
  close(): void {
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.deps.quiet.wake();
  }

  /**
   * Batches until none is left. A failed upload leaves its batch unmarked; it and any other
   * failure (the worker crashed mid-batch: the restarted engine hands the sessions out again) is
   * an `error` event and a retry with backoff. Never rejects.
   */
  private async pass(): Promise<void> {
    const { crypto, http } = this.deps;
    try {
      while (crypto.ready && !this.deps.isClosed()) {
        if (this.flushes === 0) await this.deps.quiet.wait(this.deps.quietTimes?.quietMs ?? QUIET_MS, this.deps.quietTimes?.maxWaitMs ?? MAX_QUIET_WAIT_MS);
        if (!crypto.ready || this.deps.isClosed()) return;
        const batch = await crypto.api.keyBackupBatch(BATCH_SIZE);
        if (!batch) return;
        try {
          await http.request("PUT", "/_matrix/client/v3/room_keys/keys", { query: { version: batch.version }, body: batch.body });
        } catch (err) {
          await crypto.api.keyBackupBatchDone(batch.id, false).catch(() => undefined);
          if (err instanceof MatrixHttpError && (err.errcode === "M_WRONG_ROOM_KEYS_VERSION" || err.status === 404)) return await this.versionGone(batch.version);
          throw err;
        }
        this.failures = 0;
        await crypto.api.keyBackupBatchDone(batch.id, true);
      }
    } catch (err) {
      if (this.deps.isClosed()) return;
      this.deps.log.warn(`key backup upload failed, retrying later: ${String(err)}`);
      emitError(this.deps.events, err);
      this.scheduleRetry();
    }
  }

  private scheduleRetry(): void {
    if (this.retryTimer) return;
    const delay = computeBackoff(this.failures++, 2_000, 300_000);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      void this.trigger();
    }, delay);
    this.retryTimer.unref();
  }

  /** Our version is no longer the server's: stop uploading and report it; a new version is never trusted silently. */
  private async versionGone(version: string): Promise<void> {
    const current = await this.serverVersion().catch(() => null);
    await this.deps.crypto.api.activateKeyBackup(null);
    const now = current && typeof current.version === "string" ? current.version : null;
    this.deps.log.warn(`key backup version ${version} is gone from the server (now: ${now ?? "none"}); backup stopped until enableKeyBackup is called again`);
    this.deps.events.emit("keyBackup.versionChanged", { previous: version, current: now });
  }
}
