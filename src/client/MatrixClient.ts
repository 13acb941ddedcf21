/**
 * The main-thread client: HTTP, the sync loop, rooms and events. All Olm/Megolm work and all
 * crypto-store access happen in the crypto worker ({@link CryptoWorkerHost}); this class only
 * moves JSON between the homeserver and the worker, in the order DESIGN §3 prescribes.
 */
import { EventEmitter } from "eventemitter3";
import { resolve as resolvePath } from "node:path";
import { join } from "node:path";
import type { Dispatcher } from "undici";
import type { OutgoingRequest, RemoteCryptoWorkerApi, RoomDecryptResult, SyncChangesInput, SyncChangesResult, AccountInfo, IncomingKeyRequest, EncryptedEventInput, Primitive } from "../protocol/api.js";
import {
  ClientClosedError,
  EncryptionDisabledError,
  InvalidArgumentError,
  MatrixHttpError,
  MatrixSdkError,
  UnknownDevicesError,
  UnsupportedAlgorithmError,
} from "../protocol/errors.js";
import { MEGOLM_ALGORITHM, type DeviceInfo, type UserIdentityInfo } from "../protocol/api.js";
import type { StoreConfig } from "../protocol/store.js";
import { HttpClient, makeTxnId, p } from "../http/HttpClient.js";
import { computeBackoff, sleep } from "../util/backoff.js";
import { KeyedMutex, SingleFlight } from "../util/KeyedMutex.js";
import { childLogger, noopLogger, type Logger, type LogLevel } from "../util/logger.js";
import { CryptoWorkerHost } from "./CryptoWorkerHost.js";
import { Device } from "./Device.js";
import type { MatrixClientEvents, RoomEvent, UndecryptableEvent } from "./events.js";
import { DEFAULT_PICKLE_KEY, userDataDir } from "./paths.js";
import { Room, type RoomEncryptionSettings } from "./Room.js";
import { createWriteStream } from "node:fs";
import { downloadAttachment, downloadToBuffer, fileContent, uploadEncrypted, uploadPlain, type AttachmentInput, type SendFileOptions } from "./media.js";

/** Where and how the crypto store is kept. */
export interface StoreConf {
  /** Folder of the SQLite file (created if missing). Default: the platform's user data directory. */
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
  /** Live inbound Megolm sessions kept unpickled in the worker (default 2000). */
  sessionCacheSize?: number;
}

/** Options of {@link MatrixClient}. */
export interface MatrixClientOptions {
  /** Enable end-to-end encryption (default false). */
  encryption?: boolean;
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
  /** Logger (no-op by default). Secrets are never logged. */
  logger?: Logger;
  /** Log level of the crypto worker (default: silent unless a logger is given, then "info"). */
  workerLogLevel?: LogLevel | "silent";
  /** undici dispatcher (e.g. MockAgent in tests). */
  dispatcher?: Dispatcher;
  /** Long-poll timeout of /sync (default 30 s). */
  syncTimeoutMs?: number;
  /** Sync backoff bounds (ms). */
  syncBackoff?: { baseMs?: number; maxMs?: number };
}

/** Options of {@link MatrixClient.createRoom}. */
export interface CreateRoomOptions {
  encrypted?: boolean;
  invite?: string[];
  name?: string;
  preset?: "private_chat" | "public_chat" | "trusted_private_chat";
  isDirect?: boolean;
  encryptionSettings?: { rotationPeriodMs?: number; rotationPeriodMsgs?: number };
}

/** Called when a requested room key arrived from another of our devices (events for it are re-emitted). */
export type KeyForwardListener = (sessionId: string) => void;
/**
 * Called with our own devices that asked for room keys in a sync (device ID → Device, with trust
 * flags) and a function to call with the IDs of the devices to answer. Only those get the keys.
 */
export type KeyRequestListener = (devices: Record<string, Device>, answer: (deviceIds: string[]) => Promise<void>) => void;

/** Most events fetched to fill one room's timeline gap; beyond, `room.timelineGap` is emitted. */
const MAX_GAP_EVENTS = 1000;
/** Sync filter: more timeline events per room per sync than the server default of 10. */
const SYNC_FILTER = JSON.stringify({ room: { timeline: { limit: 100 } } });

/** The `content` of a decrypted payload (checked to be an object by the worker). */
function plaintextContent(plaintextJson: string): Json {
  const p = JSON.parse(plaintextJson) as { content?: unknown };
  return isObj(p.content) ? p.content : {};
}

/** Items of `list` that can be serialized; the others are logged and dropped. */
function keepSerializable<T>(list: T[], log: Logger, what: string): T[] {
  return list.filter((item) => {
    try {
      JSON.stringify(item);
      return true;
    } catch {
      log.warn(`dropped a ${what} that cannot be serialized (reason: malformed)`);
      return false;
    }
  });
}


type Json = Record<string, unknown>;
const isObj = (v: unknown): v is Json => typeof v === "object" && v !== null && !Array.isArray(v);

/** The events array of `section[key]` (`{ events: [...] }` in a sync response), or none. */
function syncEvents(section: unknown, key: string): unknown[] {
  if (!isObj(section) || !isObj(section[key])) return [];
  const evs = (section[key] as Json).events;
  return Array.isArray(evs) ? evs : [];
}

/** A `/sync` response taken apart for processing (see `MatrixClient.prepareSync`). */
interface SyncWork {
  res: unknown;
  nextBatch: string;
  join: Json;
  invite: Json;
  leave: Json;
  cryptoRooms: SyncChangesInput["rooms"];
  /** Joined rooms' timelines as received; `gapFrom` is the `prev_batch` of a limited timeline. */
  timelines: { roomId: string; events: Json[]; gapFrom: string | null }[];
  /** `receiveSyncChanges` input, serialized (null: not prepared). */
  cryptoInputJson: string | null;
  /** `decryptSyncTimelines` input (null: not prepared, or nothing to decrypt). */
  decrypt: DecryptPayload | null;
}

type DecryptPayload = { roomId: string; events: EncryptedEventInput[] }[];

/** `v` when it is a JSON primitive, else null (what crosses to the worker is never nested). */
function primitive(v: unknown): Primitive {
  return v === null || v === undefined || typeof v === "string" || typeof v === "number" || typeof v === "boolean" ? v : null;
}

/**
 * A Matrix client with end-to-end encryption running in a worker thread.
 *
 * ```ts
 * const client = new MatrixClient("https://matrix.example.org", { encryption: true, restoreDeviceId: true });
 * await client.login("@bot:example.org", "password");
 * client.on("room.event", (ev) => console.log(ev.sender, ev.content.body));
 * client.start();
 * ```
 */
export class MatrixClient extends EventEmitter<MatrixClientEvents> {
  /** Homeserver base URL. */
  readonly homeserverUrl: string;
  private readonly http: HttpClient;
  private readonly log: Logger;
  private readonly opts: MatrixClientOptions;
  private host: CryptoWorkerHost | null = null;
  private account: AccountInfo | null = null;
  private _userId: string | null = null;
  private _deviceId: string | null = null;
  private readonly rooms = new Map<string, Room>();
  private readonly roomLocks = new KeyedMutex();
  private readonly claimLock = new KeyedMutex();
  private readonly outgoing: SingleFlight;
  private syncToken: string | null = null;
  private syncAbort: AbortController | null = null;
  private syncLoop: Promise<void> | null = null;
  private closed = false;
  private keyForwardListener: KeyForwardListener | null = null;
  private keyRequestListener: KeyRequestListener | null = null;
  /** Key requests from our own devices, waiting for the request listener: `${deviceId}|${requestId}`. */
  private readonly pendingKeyRequests = new Map<string, IncomingKeyRequest>();
  /** The encryption flag (read-only after construction). */
  readonly encryption: boolean;
  /** Device verification default for new rooms. */
  readonly verifyDevices: boolean;

  constructor(homeserverUrl: string, opts: MatrixClientOptions = {}) {
    super();
    if (opts.restoreDeviceId && !opts.encryption) {
      throw new InvalidArgumentError("restoreDeviceId only makes sense when encryption is enabled.");
    }
    this.homeserverUrl = homeserverUrl.replace(/\/+$/, "");
    this.opts = opts;
    this.encryption = opts.encryption === true;
    this.verifyDevices = opts.verifyDevices === true;
    this.log = opts.logger ?? noopLogger;
    this.http = new HttpClient(this.homeserverUrl, { logger: childLogger(this.log, "[http]"), ...(opts.dispatcher ? { dispatcher: opts.dispatcher } : {}) });
    this.outgoing = new SingleFlight(() => this.processOutgoingRequests());
  }

  /** Logged-in user ID, or null. */
  get userId(): string | null {
    return this._userId;
  }
  /** This device's ID, or null before login. */
  get deviceId(): string | null {
    return this._deviceId;
  }
  /** Access token (never logged). */
  get accessToken(): string | undefined {
    return this.http.accessToken;
  }

  // ---------------------------------------------------------------------------------------------
  // crypto worker

  private storeConfig(): StoreConfig {
    const conf = this.opts.encryptionConf ?? {};
    if (conf.store) return { kind: "module", module: conf.store.module, export: conf.store.export, options: conf.store.options };
    if (conf.inMemoryStore) return { kind: "memory" };
    const dir = conf.storeConf?.dbPath ?? userDataDir();
    return { kind: "sqlite", path: join(dir, conf.storeConf?.dbName ?? "crypto.db") };
  }

  /** Start the worker (opens the store). Idempotent. */
  private async ensureWorker(): Promise<CryptoWorkerHost> {
    if (!this.encryption) throw new EncryptionDisabledError();
    if (this.closed) throw new ClientClosedError();
    if (!this.host) {
      const host = new CryptoWorkerHost(
        {
          store: this.storeConfig(),
          pickleKey: this.opts.encryptionConf?.storeConf?.pickleKey ?? DEFAULT_PICKLE_KEY,
          logLevel: this.opts.workerLogLevel ?? (this.opts.logger ? "info" : "silent"),
          ...(this.opts.encryptionConf?.sessionCacheSize ? { sessionCacheSize: this.opts.encryptionConf.sessionCacheSize } : {}),
        },
        childLogger(this.log, "[crypto]"),
      );
      host.on("crashed", (err) => this.emit("crypto.workerCrashed", err));
      host.on("restarted", () => this.emit("crypto.workerRestarted"));
      host.onRestart = async () => {
        if (!this.account) return;
        await host.apiDuringRestart.loadAccount(this.account.userId, this.account.deviceId);
        if (this.keyForwardListener) await host.apiDuringRestart.setKeyRequestsEnabled(true);
      };
      this.host = host;
      try {
        await host.start();
      } catch (err) {
        this.host = null;
        throw err;
      }
      this.log.info(`crypto store: ${host.location}`);
    }
    return this.host;
  }

  private get crypto(): RemoteCryptoWorkerApi {
    if (!this.host || !this.account) throw new EncryptionDisabledError("Encryption is not set up: enable it and log in first.");
    return this.host.api;
  }

  /** @internal the worker host (tests). */
  get cryptoHostForTesting(): CryptoWorkerHost | null {
    return this.host;
  }

  private async initCrypto(userId: string, deviceId: string): Promise<void> {
    const host = await this.ensureWorker();
    this.account = await host.api.loadAccount(userId, deviceId);
    if (this.keyForwardListener) await host.api.setKeyRequestsEnabled(true);
    this.syncToken = await host.api.getSyncToken();
    await this.outgoing.trigger();
  }

  // ---------------------------------------------------------------------------------------------
  // login

  /**
   * Log in with a password. With `restoreDeviceId`, the device ID stored for `userId` is reused
   * (so the identity keys stay the same); an explicit `deviceId` starts or resumes that device.
   */
  async login(userId: string, password: string, opts: { deviceId?: string; initialDeviceDisplayName?: string } = {}): Promise<void> {
    let deviceId = opts.deviceId;
    if (this.opts.restoreDeviceId && !deviceId) {
      if (!/^@[^:]+:.+$/.test(userId)) {
        throw new InvalidArgumentError("When using restoreDeviceId, a full user ID (e.g. @bot:example.org) must be supplied when logging in.");
      }
      const host = await this.ensureWorker();
      deviceId = (await host.api.getStoredDeviceId(userId)) ?? undefined;
      if (deviceId) this.log.info(`reusing stored device ID ${deviceId}`);
    }
    const body: Json = { type: "m.login.password", identifier: { type: "m.id.user", user: userId }, password };
    if (deviceId) body.device_id = deviceId;
    if (opts.initialDeviceDisplayName) body.initial_device_display_name = opts.initialDeviceDisplayName;
    const res = await this.http.request<Json>("POST", "/_matrix/client/v3/login", { body, auth: false });
    if (typeof res.access_token !== "string" || typeof res.user_id !== "string" || typeof res.device_id !== "string") {
      throw new MatrixHttpError(200, "M_BAD_JSON", "login response lacks access_token, user_id or device_id");
    }
    await this.setSession(res.user_id, res.device_id, res.access_token);
  }

  /** Use an existing access token; the user and device are found with `/account/whoami`. */
  async loginWithToken(accessToken: string): Promise<void> {
    this.http.setAccessToken(accessToken);
    const who = await this.http.request<Json>("GET", "/_matrix/client/v3/account/whoami");
    if (typeof who.user_id !== "string" || (this.encryption && typeof who.device_id !== "string")) {
      throw new MatrixHttpError(200, "M_BAD_JSON", "whoami response lacks user_id or device_id");
    }
    await this.setSession(who.user_id, typeof who.device_id === "string" ? who.device_id : "", accessToken);
  }

  private async setSession(userId: string, deviceId: string, token: string): Promise<void> {
    this.http.setAccessToken(token);
    this._userId = userId;
    this._deviceId = deviceId;
    if (this.encryption) await this.initCrypto(userId, deviceId);
  }

  /** Log out (invalidates the token), stop syncing and close. */
  async logout(): Promise<void> {
    await this.stop();
    try {
      await this.http.request("POST", "/_matrix/client/v3/logout", { body: {} });
    } finally {
      await this.close();
    }
  }

  /** Stop syncing, close the worker and the store cleanly, close HTTP connections. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    await this.stop();
    this.closed = true;
    await this.host?.close();
    await this.http.close();
  }

  // ---------------------------------------------------------------------------------------------
  // identity and devices

  /** This device's ed25519 fingerprint (unpadded base64). */
  getFingerprint(): string {
    if (!this.encryption) throw new EncryptionDisabledError("Encryption is not enabled, this device has no fingerprint.");
    if (!this.account) throw new EncryptionDisabledError("Log in first: the device has no keys yet.");
    return this.account.ed25519;
  }

  /** This device's curve25519 identity key. */
  getIdentityKey(): string {
    this.getFingerprint();
    return this.account!.curve25519;
  }

  /** The fingerprint in groups of four characters, for reading aloud. */
  getFingerprintForDisplay(): string {
    return this.getFingerprint().match(/.{1,4}/g)!.join(" ");
  }

  /** Known devices of a user (from the worker's store). */
  async getDevices(userId: string): Promise<Device[]> {
    const infos = await this.crypto.getDevices(userId);
    return infos.map((i) => new Device(i, this));
  }

  /** One device of a user, or null. */
  async getDevice(userId: string, deviceId: string): Promise<Device | null> {
    return (await this.getDevices(userId)).find((d) => d.deviceId === deviceId) ?? null;
  }

  /** @internal used by Device */
  setDeviceFlags(userId: string, deviceId: string, flags: { verified?: boolean; blacklisted?: boolean; ignored?: boolean }): Promise<DeviceInfo> {
    return this.crypto.setDeviceFlags(userId, deviceId, flags);
  }

  /** Remove another device's data (e.g. an old device ID) from the store file. */
  async deleteStoredDevice(userId: string, deviceId: string): Promise<void> {
    const host = await this.ensureWorker();
    await host.api.deleteStoredDevice(userId, deviceId);
  }

  // ---------------------------------------------------------------------------------------------
  // outgoing requests loop (single flight, DESIGN §3)

  /**
   * One pass of the outgoing-requests loop. Failures are reported once per pass as an `error`
   * event and never reject: the engine keeps the work (unpublished keys, dirty users) for the next pass.
   */
  private async processOutgoingRequests(): Promise<void> {
    if (!this.account || !this.host) return;
    try {
      // A response can enable the next step (a claim, then the m.dummy it allows): a few passes.
      for (let pass = 0; pass < 3; pass++) {
        const reqs = await this.crypto.outgoingRequests();
        if (!reqs.length) return;
        const results = await Promise.allSettled(reqs.map((r) => this.sendOutgoing(r)));
        const failed = results.find((r): r is PromiseRejectedResult => r.status === "rejected");
        if (failed) throw failed.reason;
      }
    } catch (err) {
      if (this.closed) return;
      this.log.warn(`outgoing crypto requests failed: ${String(err)}`);
      this.emit("error", err instanceof Error ? err : new Error(String(err)));
    }
  }

  // ---------------------------------------------------------------------------------------------
  // cross-signing and secret storage

  private async accountData(type: string): Promise<Json | null> {
    try {
      return await this.http.request<Json>("GET", p`/_matrix/client/v3/user/${this._userId!}/account_data/${type}`);
    } catch (err) {
      if (err instanceof MatrixHttpError && err.status === 404) return null;
      throw err;
    }
  }

  private async setAccountData(type: string, content: Json): Promise<void> {
    await this.http.request("PUT", p`/_matrix/client/v3/user/${this._userId!}/account_data/${type}`, { body: content });
  }

  private async uploadSignatures(body: Json): Promise<void> {
    const res = await this.http.request<Json>("POST", "/_matrix/client/v3/keys/signatures/upload", { body });
    if (isObj(res.failures) && Object.keys(res.failures).length) {
      throw new MatrixHttpError(200, "M_INVALID_SIGNATURE", `signature upload failed: ${JSON.stringify(res.failures)}`);
    }
  }

  private async refreshOwnKeys(): Promise<void> {
    await this.crypto.refreshUsers([this._userId!]);
    await this.outgoing.trigger();
  }

  /**
   * Create this user's cross-signing identity (master, self-signing and user-signing keys, made and
   * kept in the worker), upload it (completing user-interactive auth with `password`), sign this
   * device, and store the private keys in secret storage on the account, protected by a new
   * recovery key (returned: give it to the user) or by `passphrase`.
   */
  async bootstrapCrossSigning(opts: { password?: string; passphrase?: string } = {}): Promise<{ recoveryKey: string }> {
    const r = await this.crypto.bootstrapCrossSigning(opts.passphrase ? { passphrase: opts.passphrase } : {});
    const path = "/_matrix/client/v3/keys/device_signing/upload";
    try {
      await this.http.request("POST", path, { body: r.deviceSigningUpload });
    } catch (err) {
      if (!(err instanceof MatrixHttpError) || err.status !== 401) throw err;
      const session = typeof err.details.session === "string" ? err.details.session : undefined;
      if (!opts.password) throw new InvalidArgumentError("the server wants the account password to upload cross-signing keys");
      await this.http.request("POST", path, {
        body: { ...r.deviceSigningUpload, auth: { type: "m.login.password", identifier: { type: "m.id.user", user: this._userId }, password: opts.password, session } },
      });
    }
    await this.uploadSignatures(r.signatureUpload);
    const ss = r.secretStorage;
    await this.setAccountData(`m.secret_storage.key.${ss.keyId}`, ss.keyDescription);
    for (const [name, content] of Object.entries(ss.secrets)) await this.setAccountData(name, content);
    await this.setAccountData("m.secret_storage.default_key", { key: ss.keyId });
    await this.refreshOwnKeys();
    return { recoveryKey: r.recoveryKey };
  }

  /**
   * On another device of the same user: fetch the cross-signing keys from secret storage, decrypt
   * them with the recovery key or passphrase (in the worker), check them against the published
   * keys, and sign this device. A wrong key gives a typed error and changes nothing.
   */
  async restoreCrossSigning(secret: { recoveryKey: string } | { passphrase: string }): Promise<void> {
    const def = await this.accountData("m.secret_storage.default_key");
    const keyId = def && typeof def.key === "string" ? def.key : null;
    if (!keyId) throw new InvalidArgumentError("this account has no default secret storage key");
    const keyDescription = await this.accountData(`m.secret_storage.key.${keyId}`);
    if (!keyDescription) throw new InvalidArgumentError(`secret storage key ${keyId} is not described on the account`);
    const secrets: Record<string, unknown> = {};
    for (const name of ["m.cross_signing.master", "m.cross_signing.self_signing", "m.cross_signing.user_signing"]) secrets[name] = await this.accountData(name);
    await this.refreshOwnKeys();
    const r = await this.crypto.restoreCrossSigning({ keyDescription, keyId, secrets, ...secret });
    await this.uploadSignatures(r.signatureUpload);
    await this.refreshOwnKeys();
  }

  /** Sign another user's master key with our user-signing key, after checking them out of band. */
  async verifyUser(userId: string): Promise<void> {
    const r = await this.crypto.verifyUser(userId);
    await this.uploadSignatures(r.signatureUpload);
  }

  /** A user's cross-signing identity: master key, the pinned one, whether it changed, whether we trust it. */
  async getUserIdentity(userId: string): Promise<UserIdentityInfo> {
    return this.crypto.getUserIdentity(userId);
  }

  /** Accept a changed identity (reported by `user.identityChanged`) after checking it out of band. */
  async acknowledgeIdentityChange(userId: string): Promise<void> {
    await this.crypto.acknowledgeIdentityChange(userId);
  }

  /** Fetch a user's devices and identity from the server again. */
  async refreshUserKeys(userId: string): Promise<void> {
    await this.crypto.refreshUsers([userId]);
    await this.outgoing.trigger();
  }

  // ---------------------------------------------------------------------------------------------
  // key export / import

  /**
   * Export every room key (inbound Megolm session) to `path` in the Matrix key-export format
   * (interoperable with Element and other clients), encrypted with `passphrase`. The file is
   * written atomically with mode 0600. PBKDF2 and encryption run off the main thread.
   * This does not export the device's identity keys.
   */
  async exportKeys(path: string, passphrase: string, opts: { rounds?: number; onProgress?: (done: number, total: number) => void } = {}): Promise<{ exported: number }> {
    const exported = await this.crypto.exportKeysToFile(resolvePath(path), passphrase, opts.rounds, this.progressReporter(opts.onProgress));
    return { exported };
  }

  /**
   * Import room keys from a key-export file. Imported sessions count as unauthenticated for
   * verification; an existing session is replaced only by one starting at an earlier index.
   * Events waiting for these sessions are decrypted and emitted (`lateDecryption`). Batches of
   * 1,000 sessions are committed one by one, so syncing goes on during a large import.
   */
  async importKeys(path: string, passphrase: string, opts: { onProgress?: (done: number, total: number) => void } = {}): Promise<{ total: number; imported: number; skipped: number }> {
    const r = await this.crypto.importKeysFromFile(resolvePath(path), passphrase, this.progressReporter(opts.onProgress));
    for (const batch of r.redecrypted) for (const ev of batch.results) if (ev.ok) this.emitDecrypted(batch.roomId, { event_id: ev.eventId }, ev, true);
    return { total: r.total, imported: r.imported, skipped: r.skipped };
  }

  /**
   * Wrap a caller's progress callback for the worker, which waits for each report so that every
   * report arrives before the result. The wrapper returns at once (never the caller's promise, which
   * might wait for the worker and deadlock), and a throwing callback becomes an `error` event.
   */
  private progressReporter(onProgress: ((done: number, total: number) => void) | undefined): ((done: number, total: number) => void) | undefined {
    if (!onProgress) return undefined;
    return (done, total) => {
      try {
        onProgress(done, total);
      } catch (err) {
        this.emit("error", err instanceof Error ? err : new Error(String(err)));
      }
    };
  }

  // ---------------------------------------------------------------------------------------------
  // key sharing among our own devices

  /**
   * Once set, each event that cannot be decrypted because its Megolm session is missing makes the
   * client ask our other devices for the key (`m.room_key_request`, once per session, persisted and
   * re-sent after a restart). When a matching `m.forwarded_room_key` arrives from one of our own
   * devices, the session is added, the request cancelled, `callback(sessionId)` called, and the
   * events that failed for that session are decrypted and emitted again (`lateDecryption`).
   * Only one listener exists; setting another replaces it. To request keys at start-up, add the
   * listener before `start()`.
   */
  async addKeyForwardListener(callback: KeyForwardListener): Promise<void> {
    this.keyForwardListener = callback;
    if (this.account) await this.crypto.setKeyRequestsEnabled(true);
  }

  /**
   * Handle key requests from our own other devices. After each sync with requests, `callback`
   * receives device ID → Device (check `verified` before answering) and `answer(deviceIds)`; only
   * the listed devices get `m.forwarded_room_key`s. Requests from other users, from this device,
   * or for sessions we do not have never reach the callback; blacklisted devices are never
   * answered. Without a listener, requests are dropped (never queued without bound).
   */
  addKeyRequestListener(callback: KeyRequestListener): void {
    this.keyRequestListener = callback;
  }

  private async handleKeyRequests(result: SyncChangesResult): Promise<void> {
    for (const c of result.keyRequestCancellations) this.pendingKeyRequests.delete(c);
    if (!this.keyRequestListener) {
      this.pendingKeyRequests.clear();
      return;
    }
    for (const r of result.keyRequests) {
      if (this.pendingKeyRequests.size >= 1000) break;
      this.pendingKeyRequests.set(`${r.deviceId}|${r.requestId}`, r);
    }
    if (!this.pendingKeyRequests.size) return;
    const batch = [...this.pendingKeyRequests.values()];
    this.pendingKeyRequests.clear();
    const own = await this.getDevices(this._userId!);
    const devices: Record<string, Device> = {};
    for (const r of batch) {
      const d = own.find((x) => x.deviceId === r.deviceId);
      if (d) devices[r.deviceId] = d;
    }
    if (!Object.keys(devices).length) return;
    let answered = false;
    const answer = async (deviceIds: string[]): Promise<void> => {
      if (answered) return;
      answered = true;
      const chosen = batch.filter((r) => deviceIds.includes(r.deviceId) && devices[r.deviceId]);
      if (!chosen.length) return;
      const claim = await this.crypto.prepareKeyForwarding([...new Set(chosen.map((r) => r.deviceId))]);
      if (claim) await this.claimLock.run("claim", () => this.sendOutgoing(claim));
      // One forwarded key per device per to-device request: send the rest in further batches.
      let rest = chosen;
      while (rest.length) {
        const seen = new Set<string>();
        const now = rest.filter((r) => (seen.has(r.deviceId) ? false : (seen.add(r.deviceId), true)));
        rest = rest.filter((r) => !now.includes(r));
        for (const req of await this.crypto.answerKeyRequests(now)) await this.sendOutgoing(req);
      }
    };
    try {
      this.keyRequestListener(devices, answer);
    } catch (err) {
      this.emit("error", err instanceof Error ? err : new Error(String(err)));
    }
  }

  private async sendOutgoing(r: OutgoingRequest): Promise<void> {
    try {
      const res = await this.sendRequest(r);
      const { identityChanges } = await this.crypto.markRequestAsSent(r.id, r.kind, JSON.stringify(res ?? {}));
      for (const u of identityChanges) this.emit("user.identityChanged", u);
    } catch (err) {
      if (err instanceof MatrixHttpError) {
        await this.crypto.markRequestAsFailed(r.id, r.kind, err.errcode ?? null, err.message);
      } else {
        await this.crypto.markRequestAsFailed(r.id, r.kind, null, err instanceof Error ? err.message : String(err)).catch(() => undefined);
      }
      throw err;
    }
  }

  private sendRequest(r: OutgoingRequest): Promise<unknown> {
    const body: unknown = JSON.parse(r.body);
    switch (r.kind) {
      case "keys_upload":
        return this.http.request("POST", "/_matrix/client/v3/keys/upload", { body });
      case "keys_query":
        return this.http.request("POST", "/_matrix/client/v3/keys/query", { body });
      case "keys_claim":
        return this.http.request("POST", "/_matrix/client/v3/keys/claim", { body });
      case "to_device":
        return this.http.request("PUT", p`/_matrix/client/v3/sendToDevice/${r.eventType}/${r.txnId}`, { body });
    }
  }

  // ---------------------------------------------------------------------------------------------
  // sync loop

  /** Start the sync loop (returns at once). Errors are emitted as `error` and retried with backoff. */
  start(): void {
    if (this.closed) throw new ClientClosedError();
    if (!this._userId) throw new InvalidArgumentError("log in before starting the sync loop");
    if (this.syncLoop) return;
    const abort = new AbortController();
    this.syncAbort = abort;
    this.syncLoop = this.runSyncLoop(abort.signal).finally(() => {
      this.syncLoop = null;
    });
  }

  /** Stop the sync loop; resolves once the current sync finished processing. */
  async stop(): Promise<void> {
    this.syncAbort?.abort(new ClientClosedError("sync stopped"));
    await this.syncLoop?.catch(() => undefined);
    this.syncAbort = null;
  }

  /** Run one sync now (for scripts and tests); resolves once it is processed and committed. */
  async syncOnce(timeoutMs = 0): Promise<void> {
    const res = await this.http.request<unknown>("GET", "/_matrix/client/v3/sync", {
      query: { since: this.syncToken ?? undefined, timeout: timeoutMs },
      timeoutMs: timeoutMs + 60_000,
      retry: false,
    });
    await this.processSync(res);
  }

  private async runSyncLoop(signal: AbortSignal): Promise<void> {
    const base = this.opts.syncBackoff?.baseMs ?? 500;
    const max = this.opts.syncBackoff?.maxMs ?? 60_000;
    const timeout = this.opts.syncTimeoutMs ?? 30_000;
    let failures = 0;
    type Fetched = { res: unknown; work?: SyncWork | undefined } | { err: unknown };
    const fetchSync = (since: string | null, prepare = false): Promise<Fetched> =>
      this.http
        .request<unknown>("GET", "/_matrix/client/v3/sync", {
          query: { since: since ?? undefined, timeout: since ? timeout : 0, filter: SYNC_FILTER },
          timeoutMs: timeout + 30_000,
          retry: false,
          signal,
        })
        .then(
          // A prefetched sync is prepared (parsed into the worker's inputs) as soon as it arrives,
          // which is while the worker still decrypts the previous one; in a task of its own, so
          // that it does not add to the stall of parsing the response body.
          (res) => (prepare ? new Promise<Fetched>((resolve) => setImmediate(() => resolve({ res, work: this.tryPrepareSync(res) }))) : { res }),
          (err: unknown) => ({ err }),
        );
    // The next /sync is fetched while this one's timelines decrypt (its to-device part is already
    // committed); on any failure the prefetch is dropped and the sync is fetched again.
    let prefetch: Promise<Fetched> | null = null;
    while (!signal.aborted) {
      try {
        const got: Fetched = await (prefetch ?? fetchSync(this.syncToken));
        prefetch = null;
        if ("err" in got) throw got.err;
        if (signal.aborted) break;
        await this.processSync(got.res, (next) => {
          if (!signal.aborted) prefetch = fetchSync(next, true);
        }, got.work);
        failures = 0;
      } catch (err) {
        prefetch = null;
        if (signal.aborted) break;
        failures++;
        const e = err instanceof Error ? err : new Error(String(err));
        const wait = err instanceof MatrixHttpError && err.retryAfterMs !== undefined ? err.retryAfterMs : computeBackoff(failures, base, max);
        this.log.warn(`sync failed (${MatrixSdkError.isSdkError(e) ? e.code : e.name}: ${e.message}); retrying in ${wait} ms`);
        this.emit("error", e);
        try {
          await sleep(Math.max(wait, Math.min(base, 50)), signal);
        } catch {
          break;
        }
      }
    }
  }

  /** {@link prepareSync}, or undefined when the response is malformed (processSync reports it). */
  private tryPrepareSync(res: unknown): SyncWork | undefined {
    try {
      return this.prepareSync(res);
    } catch {
      return undefined;
    }
  }

  /**
   * The parts of a `/sync` response's processing that depend on nothing but the response: its
   * sections, the crypto worker's input (serialized) and the encrypted timeline events reduced to
   * what decryption reads. A prefetched sync is prepared while the worker is busy with the previous one,
   * so the worker does not wait for this main-thread work between syncs.
   */
  private prepareSync(res: unknown): SyncWork {
    if (!isObj(res) || typeof res.next_batch !== "string") throw new MatrixHttpError(200, "M_BAD_JSON", "sync response without next_batch");
    const nextBatch = res.next_batch;
    const roomsSection = isObj(res.rooms) ? res.rooms : {};
    const join = isObj(roomsSection.join) ? roomsSection.join : {};
    const invite = isObj(roomsSection.invite) ? roomsSection.invite : {};
    const leave = isObj(roomsSection.leave) ? roomsSection.leave : {};
    const stateOf = (section: unknown): unknown[] => [...syncEvents(section, "state"), ...syncEvents(section, "timeline").filter((e) => isObj(e) && typeof e.state_key === "string")];
    const cryptoRooms: SyncChangesInput["rooms"] = [];
    for (const [roomId, r] of Object.entries(join)) cryptoRooms.push({ roomId, membership: "join", stateEvents: stateOf(r) });
    for (const [roomId, r] of Object.entries(leave)) cryptoRooms.push({ roomId, membership: "leave", stateEvents: stateOf(r) });
    for (const [roomId, r] of Object.entries(invite)) cryptoRooms.push({ roomId, membership: "invite", stateEvents: syncEvents(r, "invite_state") });
    const timelines: SyncWork["timelines"] = [];
    for (const [roomId, r] of Object.entries(join)) {
      const tl = isObj(r) && isObj(r.timeline) ? r.timeline : {};
      timelines.push({ roomId, events: syncEvents(r, "timeline").filter(isObj), gapFrom: tl.limited === true && typeof tl.prev_batch === "string" ? tl.prev_batch : null });
    }
    const work: SyncWork = { res, nextBatch, join, invite, leave, cryptoRooms, timelines, cryptoInputJson: null, decrypt: null };
    if (this.encryption && this.account) {
      work.cryptoInputJson = this.cryptoInputJson(work);
      // With a gap to fetch first, the events to decrypt are known only after the fetch.
      if (!timelines.some((t) => t.gapFrom !== null)) work.decrypt = this.decryptPayload(timelines);
    }
    return work;
  }

  /** The worker's `receiveSyncChanges` input for a sync, serialized. */
  private cryptoInputJson(work: SyncWork): string {
    const res = work.res as Json;
    const devLists = isObj(res.device_lists) ? res.device_lists : {};
    const input: SyncChangesInput = {
      nextBatch: work.nextBatch,
      toDevice: syncEvents(res, "to_device"),
      deviceLists: { changed: devLists.changed, left: devLists.left },
      rooms: work.cryptoRooms,
    };
    if (isObj(res.device_one_time_keys_count)) input.oneTimeKeyCounts = res.device_one_time_keys_count;
    const fb = res.device_unused_fallback_key_types ?? res["org.matrix.msc2732.device_unused_fallback_key_types"];
    if (fb !== undefined) input.unusedFallbackKeyTypes = fb;
    return this.toWorkerJson(input, () => {
      input.toDevice = keepSerializable(input.toDevice, this.log, "to-device event");
      for (const r of input.rooms) r.stateEvents = keepSerializable(r.stateEvents, this.log, "state event");
    });
  }

  /** The encrypted timeline events of a sync, reduced for `decryptSyncTimelines`; null when there are none. */
  private decryptPayload(timelines: { roomId: string; events: Json[] }[]): DecryptPayload | null {
    const payload: DecryptPayload = [];
    for (const t of timelines) {
      const events: EncryptedEventInput[] = [];
      for (const e of t.events) {
        if (e.type !== "m.room.encrypted") continue;
        const c = e.content;
        events.push({
          type: "m.room.encrypted",
          event_id: primitive(e.event_id),
          sender: primitive(e.sender),
          origin_server_ts: primitive(e.origin_server_ts),
          content: isObj(c) ? { algorithm: primitive(c.algorithm), ciphertext: primitive(c.ciphertext), session_id: primitive(c.session_id), sender_key: primitive(c.sender_key), device_id: primitive(c.device_id) } : null,
        });
      }
      if (events.length) payload.push({ roomId: t.roomId, events });
    }
    return payload.length ? payload : null;
  }

  /** Process one `/sync` response: crypto first, then timelines in order, then commit the token. */
  private async processSync(res: unknown, onIngested?: (nextBatch: string) => void, prepared?: SyncWork): Promise<void> {
    const work = prepared !== undefined && prepared.res === res ? prepared : this.prepareSync(res);
    const { nextBatch, invite, cryptoRooms } = work;

    // Main-thread room view.
    for (const cr of cryptoRooms) {
      const room = this.getOrCreateRoom(cr.roomId);
      for (const ev of cr.stateEvents) {
        if (!isObj(ev) || typeof ev.type !== "string" || typeof ev.state_key !== "string" || !isObj(ev.content)) continue;
        if (ev.type === "m.room.member" && typeof ev.content.membership === "string") room.members.set(ev.state_key, ev.content.membership);
        if (ev.type === "m.room.encryption" && ev.state_key === "" && !room.encrypted && typeof ev.content.algorithm === "string") {
          room.encryption = ev.content as RoomEncryptionSettings;
        }
      }
      if (room.encryption === undefined && cr.membership === "join" && this.isFullStateSync()) room.encryption = null;
    }

    let cryptoResult: SyncChangesResult | null = null;
    // When the events to decrypt are already known (no timeline gap to fetch), the decryption is
    // queued right behind the sync's crypto changes, so the worker goes from one to the other
    // without waiting for this thread. Its side effects are committed only with the sync token.
    let early: Promise<{ roomId: string; results: RoomDecryptResult[] }[]> | null = null;
    if (this.encryption && this.account) {
      const changes = this.crypto.receiveSyncChanges(work.cryptoInputJson ?? this.cryptoInputJson(work));
      if (work.decrypt !== null) {
        early = this.crypto.decryptSyncTimelines(work.decrypt);
        early.catch(() => undefined); // awaited below; if the crypto changes fail, nobody does
      }
      cryptoResult = await changes;
      for (const f of cryptoResult.toDeviceFailures) this.emit("toDevice.failure", f);
      for (const t of cryptoResult.toDevice) {
        this.emit("toDevice", { type: t.type, sender: t.sender, content: JSON.parse(t.contentJson) as Json, encrypted: t.encrypted, senderCurve25519: t.senderCurve25519 });
      }
      for (const k of cryptoResult.roomKeys) this.emit("room.key", k);
      for (const e of cryptoResult.encryptedRooms) this.emit("room.encrypted", e.roomId, e.encryption);
    } else {
      for (const t of syncEvents(work.res, "to_device")) {
        if (isObj(t) && typeof t.type === "string" && typeof t.sender === "string" && isObj(t.content)) {
          this.emit("toDevice", { type: t.type, sender: t.sender, content: t.content, encrypted: false, senderCurve25519: null });
        }
      }
    }

    onIngested?.(nextBatch);

    for (const [roomId, r] of Object.entries(invite)) {
      const inv = syncEvents(r, "invite_state").find((e) => isObj(e) && e.type === "m.room.member" && e.state_key === this._userId);
      this.emit("room.invite", roomId, isObj(inv) && typeof inv.sender === "string" ? inv.sender : null);
    }

    // Timelines, in order per room; gaps of limited timelines fetched first.
    let emitted = 0;
    const timelines: { roomId: string; events: Json[] }[] = [];
    for (const t of work.timelines) {
      // A limited timeline skipped events since our last sync: fetch the gap so nothing is lost.
      const gap = t.gapFrom !== null && this.syncToken ? await this.fetchGap(t.roomId, t.gapFrom, this.syncToken, t.events) : [];
      timelines.push({ roomId: t.roomId, events: gap.length ? [...gap, ...t.events] : t.events });
    }
    // One worker call for the whole sync's encrypted timeline events (O(1) hops per sync).
    const decrypted = new Map<string, RoomDecryptResult>();
    if (this.encryption && this.account) {
      const payload = early ? null : this.decryptPayload(timelines);
      const out = early ?? (payload !== null ? this.crypto.decryptSyncTimelines(payload) : null);
      if (out) for (const o of await out) for (const r of o.results) decrypted.set(`${o.roomId}\u0000${r.eventId}`, r);
    }
    timelines.forEach((t) => {
      for (const ev of t.events) {
        const r = ev.type === "m.room.encrypted" && typeof ev.event_id === "string" ? decrypted.get(`${t.roomId}\u0000${ev.event_id}`) : undefined;
        this.emitTimelineEvent(t.roomId, ev, r, false);
        emitted++;
      }
    });
    for (const batch of cryptoResult?.redecrypted ?? []) {
      for (const r of batch.results) {
        if (r.ok) this.emitDecrypted(batch.roomId, { event_id: r.eventId }, r, true);
      }
    }
    if (cryptoResult) {
      for (const k of cryptoResult.forwardedKeys) {
        try {
          this.keyForwardListener?.(k.sessionId);
        } catch (err) {
          this.emit("error", err instanceof Error ? err : new Error(String(err)));
        }
      }
      if (cryptoResult.keyRequests.length || cryptoResult.keyRequestCancellations.length || this.pendingKeyRequests.size) {
        await this.handleKeyRequests(cryptoResult).catch((err: unknown) => this.emit("error", err instanceof Error ? err : new Error(String(err))));
      }
    }

    if (this.encryption && this.account) await this.crypto.commitSyncToken(nextBatch);
    this.syncToken = nextBatch;
    this.emit("sync", { nextBatch, events: emitted });
    void this.outgoing.trigger();
  }

  /**
   * Serialize for the worker. Deeply nested or cyclic input (a hostile server) cannot be
   * serialized: then `prune` drops the offending items (logged) and serialization is retried, so
   * one bad event never blocks the sync.
   */
  private toWorkerJson(value: unknown, prune: () => void): string {
    try {
      return JSON.stringify(value);
    } catch {
      prune();
      return JSON.stringify(value);
    }
  }

  /** Events between `from` (a limited timeline's prev_batch) and our last sync token, oldest first. */
  private async fetchGap(roomId: string, from: string, to: string, known: Json[]): Promise<Json[]> {
    const seen = new Set(known.map((e) => e.event_id));
    const out: Json[] = [];
    let token: string | undefined = from;
    try {
      while (token && out.length < MAX_GAP_EVENTS) {
        const res: Json = await this.http.request<Json>("GET", p`/_matrix/client/v3/rooms/${roomId}/messages`, { query: { dir: "b", from: token, to, limit: 100 } });
        const chunk = (Array.isArray(res.chunk) ? res.chunk : []).filter(isObj);
        if (!chunk.length) return out.reverse();
        for (const e of chunk) if (!seen.has(e.event_id)) out.push(e);
        token = typeof res.end === "string" && res.end !== token ? res.end : undefined;
      }
    } catch (err) {
      this.log.warn(`could not fetch the timeline gap of ${roomId}: ${String(err)}`);
      this.emit("room.timelineGap", roomId, from);
      return out.reverse();
    }
    if (token) this.emit("room.timelineGap", roomId, token);
    return out.reverse();
  }

  private isFullStateSync(): boolean {
    return this.syncToken === null;
  }

  private emitTimelineEvent(roomId: string, ev: Json, r: RoomDecryptResult | undefined, late: boolean): void {
    const item = this.toTimelineItem(roomId, ev, r, late);
    if ("code" in item) this.deliver("room.undecryptable", item);
    else this.deliver("room.event", item);
  }

  private emitDecrypted(roomId: string, ev: Json, r: RoomDecryptResult & { ok: true }, late: boolean): void {
    this.deliver("room.event", this.toTimelineItem(roomId, ev, r, late) as RoomEvent);
  }

  /**
   * Emit to application listeners. A throwing listener must not fail the sync (which would then be
   * processed again and again): its error is reported as an `error` event.
   */
  private deliver<K extends "room.event" | "room.undecryptable">(event: K, arg: Parameters<MatrixClientEvents[K]>[0]): void {
    try {
      (this.emit as (e: string, a: unknown) => boolean)(event, arg);
    } catch (err) {
      this.log.warn(`a ${event} listener threw: ${String(err)}`);
      try {
        this.emit("error", err instanceof Error ? err : new Error(String(err)));
      } catch {
        // an error listener that throws is ignored
      }
    }
  }

  /** A raw timeline event plus its decryption result → what listeners get. */
  private toTimelineItem(roomId: string, ev: Json, r: RoomDecryptResult | undefined, late: boolean): RoomEvent | UndecryptableEvent {
    if (r?.ok) {
      const out: RoomEvent = {
        roomId,
        eventId: r.eventId,
        sender: r.sender,
        type: r.type,
        content: plaintextContent(r.plaintextJson),
        originServerTs: r.originServerTs,
        encryption: {
          senderCurve25519: r.senderCurve25519,
          claimedEd25519: r.claimedEd25519,
          senderDeviceId: r.senderDeviceId,
          verification: r.verification,
          crossSigned: r.crossSigned,
          sessionId: r.sessionId,
          messageIndex: r.messageIndex,
          forwardingChain: r.forwardingChain,
        },
      };
      if (late) out.lateDecryption = true;
      if (isObj(ev.unsigned)) out.unsigned = ev.unsigned;
      return out;
    }
    if (ev.type === "m.room.encrypted") {
      const content = isObj(ev.content) ? ev.content : {};
      const utd: UndecryptableEvent = {
        roomId,
        eventId: typeof ev.event_id === "string" ? ev.event_id : "",
        sender: typeof ev.sender === "string" ? ev.sender : "",
        originServerTs: typeof ev.origin_server_ts === "number" ? ev.origin_server_ts : 0,
        code: r && !r.ok ? r.code : this.encryption ? "malformed" : "missing_session",
        message: r && !r.ok ? r.message : this.encryption ? "no decryption result" : "encryption is disabled",
        sessionId: r && !r.ok ? r.sessionId : typeof content.session_id === "string" ? content.session_id : null,
        raw: ev,
      };
      if (r && !r.ok && r.withheldCode) utd.withheldCode = r.withheldCode;
      return utd;
    }
    const out: RoomEvent = {
      roomId,
      eventId: typeof ev.event_id === "string" ? ev.event_id : "",
      sender: typeof ev.sender === "string" ? ev.sender : "",
      type: typeof ev.type === "string" ? ev.type : "",
      content: isObj(ev.content) ? ev.content : {},
      originServerTs: typeof ev.origin_server_ts === "number" ? ev.origin_server_ts : 0,
    };
    if (typeof ev.state_key === "string") out.stateKey = ev.state_key;
    if (isObj(ev.unsigned)) out.unsigned = ev.unsigned;
    return out;
  }

  /**
   * Fetch the last `limit` events of a room from the server (`/messages`), oldest first, decrypted
   * where possible. Nothing is emitted.
   */
  async fetchRoomHistory(roomId: string, limit = 50): Promise<(RoomEvent | UndecryptableEvent)[]> {
    const res = await this.http.request<Json>("GET", p`/_matrix/client/v3/rooms/${roomId}/messages`, { query: { dir: "b", limit } });
    const chunk = (Array.isArray(res.chunk) ? res.chunk : []).filter(isObj).reverse();
    const enc = chunk.filter((e) => e.type === "m.room.encrypted");
    let results = new Map<string, RoomDecryptResult>();
    if (enc.length && this.encryption && this.account) {
      results = new Map((await this.crypto.decryptRoomEvents(roomId, JSON.stringify(enc))).map((r) => [r.eventId, r]));
    }
    return chunk.map((ev) => this.toTimelineItem(roomId, ev, typeof ev.event_id === "string" ? results.get(ev.event_id) : undefined, false));
  }

  // ---------------------------------------------------------------------------------------------
  // rooms

  /** The room object for an ID (created on first use). */
  getRoom(roomId: string): Room {
    return this.getOrCreateRoom(roomId);
  }

  /** Rooms seen so far. */
  getRooms(): Room[] {
    return [...this.rooms.values()];
  }

  private getOrCreateRoom(roomId: string): Room {
    let room = this.rooms.get(roomId);
    if (!room) {
      room = new Room(this, roomId, this.verifyDevices);
      room.onlyCrossSignedDevices = this.opts.onlyCrossSignedDevices === true;
      this.rooms.set(roomId, room);
    }
    return room;
  }

  /** Create a room, optionally encrypted, inviting users. */
  async createRoom(opts: CreateRoomOptions = {}): Promise<Room> {
    const body: Json = { preset: opts.preset ?? "private_chat", invite: opts.invite ?? [] };
    if (opts.name) body.name = opts.name;
    if (opts.isDirect) body.is_direct = true;
    let encryption: RoomEncryptionSettings | null = null;
    if (opts.encrypted) {
      encryption = { algorithm: MEGOLM_ALGORITHM };
      if (opts.encryptionSettings?.rotationPeriodMs) encryption.rotation_period_ms = opts.encryptionSettings.rotationPeriodMs;
      if (opts.encryptionSettings?.rotationPeriodMsgs) encryption.rotation_period_msgs = opts.encryptionSettings.rotationPeriodMsgs;
      body.initial_state = [{ type: "m.room.encryption", state_key: "", content: encryption }];
    }
    const res = await this.http.request<Json>("POST", "/_matrix/client/v3/createRoom", { body });
    if (typeof res.room_id !== "string") throw new MatrixHttpError(200, "M_BAD_JSON", "createRoom response lacks room_id");
    const room = this.getOrCreateRoom(res.room_id);
    room.members.set(this._userId!, "join");
    for (const u of opts.invite ?? []) room.members.set(u, "invite");
    room.encryption = encryption;
    if (encryption) await this.noteRoomEncryption(room, encryption);
    return room;
  }

  /** Join a room by ID or alias. */
  async joinRoom(roomIdOrAlias: string): Promise<Room> {
    const res = await this.http.request<Json>("POST", p`/_matrix/client/v3/join/${roomIdOrAlias}`, { body: {} });
    if (typeof res.room_id !== "string") throw new MatrixHttpError(200, "M_BAD_JSON", "join response lacks room_id");
    const room = this.getOrCreateRoom(res.room_id);
    room.members.set(this._userId!, "join");
    room.membersLoaded = false;
    return room;
  }

  /** @internal */
  async inviteToRoom(roomId: string, userId: string): Promise<void> {
    await this.http.request("POST", p`/_matrix/client/v3/rooms/${roomId}/invite`, { body: { user_id: userId } });
  }

  /** @internal */
  async leaveRoom(roomId: string): Promise<void> {
    await this.http.request("POST", p`/_matrix/client/v3/rooms/${roomId}/leave`, { body: {} });
  }

  /** Kick a user. */
  async kick(roomId: string, userId: string, reason?: string): Promise<void> {
    await this.http.request("POST", p`/_matrix/client/v3/rooms/${roomId}/kick`, { body: reason ? { user_id: userId, reason } : { user_id: userId } });
  }

  /** Ban a user. */
  async ban(roomId: string, userId: string, reason?: string): Promise<void> {
    await this.http.request("POST", p`/_matrix/client/v3/rooms/${roomId}/ban`, { body: reason ? { user_id: userId, reason } : { user_id: userId } });
  }

  /** @internal */
  async getJoinedMembers(roomId: string): Promise<string[]> {
    const res = await this.http.request<Json>("GET", p`/_matrix/client/v3/rooms/${roomId}/joined_members`);
    return isObj(res.joined) ? Object.keys(res.joined) : [];
  }

  /** Send a state event; resolves with the event ID. */
  async sendStateEvent(roomId: string, type: string, stateKey: string, content: Record<string, unknown>): Promise<string> {
    const res = await this.http.request<Json>("PUT", p`/_matrix/client/v3/rooms/${roomId}/state/${type}/${stateKey}`, { body: content });
    return typeof res.event_id === "string" ? res.event_id : "";
  }

  /** @internal record that a room is encrypted (main thread and worker). */
  async noteRoomEncryption(room: Room, encryption: RoomEncryptionSettings): Promise<void> {
    if (!room.encrypted) room.encryption = encryption;
    if (this.encryption && this.account) await this.crypto.setRoomEncryption(room.roomId, room.encryption as Json);
  }

  /** @internal Make sure we know whether a room is encrypted (asks the worker, then the server). */
  async refreshRoomEncryption(room: Room): Promise<void> {
    if (room.encrypted) return;
    if (this.encryption && this.account) {
      const info = await this.crypto.getRoomInfo(room.roomId);
      if (info.encryption) {
        room.encryption = info.encryption as RoomEncryptionSettings;
        return;
      }
    }
    try {
      const content = await this.http.request<Json>("GET", p`/_matrix/client/v3/rooms/${room.roomId}/state/m.room.encryption/`);
      if (typeof content.algorithm === "string") await this.noteRoomEncryption(room, content as RoomEncryptionSettings);
      else room.encryption = null;
    } catch (err) {
      if (err instanceof MatrixHttpError && err.status === 404) room.encryption = null;
      else throw err;
    }
  }

  /**
   * @internal Send an event, encrypting in encrypted rooms. Per room, claim → share → encrypt →
   * send run under the room's FIFO lock, so concurrent sends share the key once and keep their order.
   */
  async sendRoomEvent(room: Room, type: string, content: Record<string, unknown>): Promise<string> {
    if (this.closed) throw new ClientClosedError();
    return this.roomLocks.run(room.roomId, async () => {
      if (room.encryption === undefined || (!room.encrypted && this.encryption)) await this.refreshRoomEncryption(room);
      if (!room.encrypted) {
        const res = await this.http.request<Json>("PUT", p`/_matrix/client/v3/rooms/${room.roomId}/send/${type}/${makeTxnId()}`, { body: content });
        return typeof res.event_id === "string" ? res.event_id : "";
      }
      if (!this.encryption) throw new EncryptionDisabledError(`Room ${room.roomId} is encrypted but encryption is not enabled in this client; refusing to send in plaintext.`);
      if (room.encryption!.algorithm !== MEGOLM_ALGORITHM) throw new UnsupportedAlgorithmError(room.roomId, room.encryption!.algorithm);
      const encrypted = await this.encryptForRoom(room, type, content);
      const res = await this.http.request<Json>("PUT", p`/_matrix/client/v3/rooms/${room.roomId}/send/m.room.encrypted/${makeTxnId()}`, { body: encrypted });
      return typeof res.event_id === "string" ? res.event_id : "";
    });
  }

  private async encryptForRoom(room: Room, type: string, content: Record<string, unknown>): Promise<Json> {
    const crypto = this.crypto;
    if (!room.membersLoaded) {
      const res = await this.http.request<Json>("GET", p`/_matrix/client/v3/rooms/${room.roomId}/members`);
      const members = (Array.isArray(res.chunk) ? res.chunk : [])
        .filter(isObj)
        .filter((e) => typeof e.state_key === "string" && isObj(e.content) && typeof e.content.membership === "string")
        .map((e) => ({ userId: e.state_key as string, membership: (e.content as Json).membership as string }));
      await crypto.setRoomMembers(room.roomId, members);
      for (const m of members) room.members.set(m.userId, m.membership);
      room.membersLoaded = true;
    }
    // keys/query for members' devices, then keys/claim for missing Olm sessions (single flight).
    let shares: OutgoingRequest[];
    try {
      for (let i = 0; i < 4; i++) {
        const step = await crypto.prepareRoomKeyShare(room.roomId, room.verifyDevices, room.onlyCrossSignedDevices);
        if (step.ready) break;
        if (step.request.kind === "keys_claim") await this.claimLock.run("claim", () => this.sendOutgoing(step.request));
        else await this.sendOutgoing(step.request);
      }
      shares = await crypto.shareRoomKey(room.roomId, room.verifyDevices, room.onlyCrossSignedDevices);
    } catch (err) {
      if (err instanceof UnknownDevicesError) throw this.withDeviceObjects(err);
      throw err;
    }
    try {
      await Promise.all(shares.map((r) => this.sendOutgoing(r)));
    } catch (err) {
      await crypto.discardRoomKey(room.roomId);
      throw err;
    }
    return JSON.parse(await crypto.encryptRoomEvent(room.roomId, type, JSON.stringify(content))) as Json;
  }

  private withDeviceObjects(err: UnknownDevicesError): UnknownDevicesError {
    const userDevices: Record<string, Device[]> = {};
    for (const [userId, list] of Object.entries(err.userDevices)) {
      userDevices[userId] = (list as DeviceInfo[]).map((d) => new Device(d, this));
    }
    err.userDevices = userDevices;
    return err;
  }

  // ---------------------------------------------------------------------------------------------
  // media

  /** Upload content in the clear (e.g. an avatar); returns the `mxc://` URI. */
  async uploadContent(input: AttachmentInput, opts: { contentType?: string; filename?: string } = {}): Promise<string> {
    return (await uploadPlain(this.http, input, opts.contentType ?? "application/octet-stream", opts.filename)).mxc;
  }

  /**
   * @internal Upload and send a file message. In an encrypted room (or one that may be) the file is
   * encrypted (streamed through a 0600 temp file) and the event carries `file`, never `url`.
   */
  async sendFileMessage(room: Room, msgtype: string, input: AttachmentInput, opts: SendFileOptions): Promise<string> {
    if (room.encryption === undefined || (!room.encrypted && this.encryption)) await this.refreshRoomEncryption(room);
    if (room.encrypted) {
      if (!this.encryption) throw new EncryptionDisabledError(`Room ${room.roomId} is encrypted but encryption is not enabled in this client; refusing to upload in plaintext.`);
      const up = await uploadEncrypted(this.http, input);
      return room.sendMessage(fileContent(msgtype, input, opts, { size: up.size, file: up.file }));
    }
    const up = await uploadPlain(this.http, input, opts.mimetype ?? "application/octet-stream", opts.name);
    return room.sendMessage(fileContent(msgtype, input, opts, { size: up.size, mxc: up.mxc }));
  }

  /**
   * Download the attachment of a message content (`content.file` → decrypted after its SHA-256 is
   * checked; `content.url` → as is). Authenticated media first, legacy endpoints as a fallback.
   */
  downloadAttachment(content: Record<string, unknown>): Promise<Uint8Array> {
    return downloadToBuffer(this.http, content);
  }

  /** Like {@link MatrixClient.downloadAttachment}, streaming into a file (constant memory). */
  async downloadAttachmentToFile(content: Record<string, unknown>, path: string): Promise<void> {
    await downloadAttachment(this.http, content, createWriteStream(path, { mode: 0o600 }));
  }

  /** Send a to-device message in the clear (e.g. custom protocols). */
  async sendToDevice(eventType: string, messages: Record<string, Record<string, Record<string, unknown>>>): Promise<void> {
    await this.http.request("PUT", p`/_matrix/client/v3/sendToDevice/${eventType}/${makeTxnId()}`, { body: { messages } });
  }
}
