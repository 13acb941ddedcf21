/**
 * The public facade: owns the HTTP client, the crypto worker host, the session and the lifecycle,
 * and routes each call to the component doing that job.
 *
 * All Olm/Megolm work and all crypto-store access happen in the crypto worker
 * ({@link CryptoWorkerHost}); the main thread only moves JSON between the homeserver and the
 * worker, along two paths:
 *
 * - receiving: `sync/SyncLoop` (GET /sync) → `sync/SyncProcessor` (worker inputs → events in
 *   order → token commit), with `keys/KeySharingManager` for the key requests a sync brings;
 * - sending: `send/RoomSendQueue` (per-room FIFO) → `send/KeyClaimManager` (single flight over
 *   prepare + keys/claim) → `send/OutgoingRequestSender`, and `send/OutgoingRequestsLoop` for the
 *   engine's own requests (single flight with a run-again flag). DESIGN §3 has the locking rules.
 */
import type { AccountInfo, DeviceInfo, RemoteCryptoWorkerApi, UserIdentityInfo } from "../protocol/api.js";
import { ClientClosedError, EncryptionDisabledError, InvalidArgumentError } from "../protocol/errors.js";
import { HttpClient, makeTxnId } from "../http/HttpClient.js";
import { VerificationManager } from "./verification/VerificationManager.js";
import type { VerificationRequest } from "./verification/VerificationRequest.js";
import { childLogger, noopLogger, type Logger } from "../pure/logger.js";
import { inspectCustom, redactedInspect, Secret, type InspectFn } from "../pure/secret.js";
import { cryptoAccess } from "./CryptoAccess.js";
import { AccountEndpoints } from "./account/AccountEndpoints.js";
import { CryptoWorkerHost } from "./CryptoWorkerHost.js";
import { Device, type DeviceOwner } from "./Device.js";
import type { ClientEventSink, MatrixClientEvents } from "./events.js";
import { EverydayApi } from "./EverydayApi.js";
import { CrossSigningManager, type CrossSigningBootstrapResult } from "./keys/CrossSigningManager.js";
import { AccountData } from "./keys/accountData.js";
import { KeyBackupManager, type KeyBackupInfo, type KeyBackupSecret } from "./keys/KeyBackupManager.js";
import { KeyExportManager } from "./keys/KeyExportManager.js";
import { setupRecovery, type RecoverySetupResult } from "./keys/RecoverySetup.js";
import { KeySharingManager, type KeyForwardListener, type KeyRequestListener } from "./keys/KeySharingManager.js";
import { FileMessageSender } from "./media/FileMessageSender.js";
import { decryptWorkerCount, definedOnly, nativeBindingOption, stateStorePath, withoutPickleKey, workerOptions, type MatrixClientOptions } from "./options.js";
import { passwordLogin, tokenLogin, type LoginSession } from "./login.js";
import { DEFAULT_PICKLE_KEY } from "./paths.js";
import type { Room, RoomHost } from "./rooms/Room.js";
import { AutoJoiner } from "./rooms/AutoJoiner.js";
import { RoomEncryptionTracker } from "./rooms/RoomEncryptionTracker.js";
import { RoomOperations, type CreateRoomOptions } from "./rooms/RoomOperations.js";
import { RoomRegistry } from "./rooms/RoomRegistry.js";
import { KeyClaimManager } from "./send/KeyClaimManager.js";
import { OutgoingRequestSender } from "./send/OutgoingRequestSender.js";
import { OutgoingRequestsLoop } from "./send/OutgoingRequestsLoop.js";
import { RoomSendQueue } from "./send/RoomSendQueue.js";
import { ClientStateStore, type KeyValueStore } from "./state/ClientStateStore.js";
import { SyncLoop } from "./sync/SyncLoop.js";
import { QuietTime } from "../util/QuietTime.js";
import { DECRYPT_WORKER_NICENESS, DecryptPool } from "./sync/DecryptPool.js";
import { SyncProcessor } from "./sync/SyncProcessor.js";
import { TimelineEmitter } from "./timeline.js";

export type { MatrixClientOptions, EncryptionConf, StoreConf, StateStoreConf } from "./options.js";
export type { KeyValueStore } from "./state/ClientStateStore.js";
export type { CreateRoomOptions } from "./rooms/RoomOperations.js";
export type { MessagesOptions, MessagesPage } from "./rooms/Room.js";
export type { KeyForwardListener, KeyRequestListener } from "./keys/KeySharingManager.js";
export type { AutoJoinPolicy } from "./rooms/AutoJoiner.js";

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
export class MatrixClient extends EverydayApi {
  /** Homeserver base URL. */
  readonly homeserverUrl: string;
  // `http` and `host` keep these names: the benchmarks reach into them (bench/measure.ts).
  /** @internal */
  protected readonly http: HttpClient;
  private readonly log: Logger;
  /** The options, without the pickle key. */
  private readonly opts: MatrixClientOptions;
  /** The pickle key, out of reach of `util.inspect` and `JSON.stringify`. */
  readonly #pickleKey: Secret;
  private host: CryptoWorkerHost | null = null;
  /** The decrypt pool (`encryptionConf.decryptWorkers` ≥ 2), from login on. */
  private pool: DecryptPool | null = null;
  private account: AccountInfo | null = null;
  private _userId: string | null = null;
  private _deviceId: string | null = null;
  /** Sync token, joined rooms, `storage` (opened at login). */
  private state: ClientStateStore | null = null;
  private closed = false;
  /** The encryption flag (read-only after construction). */
  readonly encryption: boolean;
  /** Device verification default for new rooms. */
  readonly verifyDevices: boolean;

  /** Owner of the `Device` objects handed out (their setters persist through the worker). */
  private readonly deviceOwner: DeviceOwner;
  private readonly rooms: RoomRegistry;
  private readonly roomEncryption: RoomEncryptionTracker;
  /** @internal */
  protected readonly roomOps: RoomOperations;
  /** @internal */
  protected readonly accountEndpoints: AccountEndpoints;
  private readonly outgoing: OutgoingRequestsLoop;
  private readonly sendQueue: RoomSendQueue;
  private readonly files: FileMessageSender;
  private readonly keySharing: KeySharingManager;
  private readonly keyFiles: KeyExportManager;
  private readonly crossSigning: CrossSigningManager;
  private readonly keyBackup: KeyBackupManager;
  private readonly syncProcessor: SyncProcessor;
  private readonly syncLoop: SyncLoop;
  private readonly verification: VerificationManager;

  constructor(homeserverUrl: string, opts: MatrixClientOptions = {}) {
    super();
    if (opts.restoreDeviceId && !opts.encryption) {
      throw new InvalidArgumentError("restoreDeviceId only makes sense when encryption is enabled.");
    }
    this.homeserverUrl = homeserverUrl.replace(/\/+$/, "");
    this.#pickleKey = new Secret(opts.encryptionConf?.storeConf?.pickleKey ?? DEFAULT_PICKLE_KEY);
    this.opts = withoutPickleKey(opts);
    this.encryption = opts.encryption === true;
    this.verifyDevices = opts.verifyDevices === true;
    this.log = opts.logger ?? noopLogger;
    this.http = new HttpClient(this.homeserverUrl, { logger: childLogger(this.log, "[http]"), ...(opts.dispatcher ? { dispatcher: opts.dispatcher } : {}) });

    // Components, wired through narrow arguments (see each file's first comment for its job).
    const { http, log } = this;
    const encryption = this.encryption;
    const isClosed = (): boolean => this.closed;
    const syncActivity = new QuietTime();
    const userId = (): string => this._userId!;
    // The worker as components see it: read at call time, so a restarted or replaced host is used.
    const crypto = cryptoAccess(() => this.account !== null && this.host !== null, () => this.crypto);
    this.deviceOwner = { setDeviceFlags: (u, d, flags) => this.crypto.setDeviceFlags(u, d, flags) };
    // Verification events (to-device and in-room) are seen where they are emitted.
    const verification = (this.verification = new VerificationManager({
      http,
      crypto,
      events: this,
      log: childLogger(log, "[verification]"),
      sendRoomEvent: (roomId, type, content) => this.sendQueue.send(this.getRoom(roomId), type, content),
      newTxnId: makeTxnId,
      onVerified: (u) => void (u === this._userId && this.keySharing.requestSecrets()),
    }));
    const observed = {
      emit: <K extends keyof MatrixClientEvents>(name: K, ...args: Parameters<MatrixClientEvents[K]>): boolean => {
        verification.observe(name, args);
        this.keyBackup.observe(name, args);
        return (this.emit as (n: K, ...a: Parameters<MatrixClientEvents[K]>) => boolean)(name, ...args);
      },
    } as ClientEventSink;
    const timeline = new TimelineEmitter(observed, log, encryption);
    const sender = new OutgoingRequestSender(http, crypto, this);
    const keyClaims = new KeyClaimManager(sender);
    this.outgoing = new OutgoingRequestsLoop({ crypto, sender, keyClaims, events: this, log, isClosed });
    this.roomEncryption = new RoomEncryptionTracker(http, crypto);
    // What rooms ask of the client (sending under the room's FIFO lock, send/RoomSendQueue; files
    // encrypted through a 0600 temp file in rooms that are or may be encrypted).
    const roomHost: RoomHost = {
      sendRoomEvent: (room, type, content) => this.sendQueue.send(room, type, content),
      sendFileMessage: (room, msgtype, input, o) => this.files.send(room, msgtype, input, o),
      refreshRoomEncryption: (room) => this.roomEncryption.refresh(room),
      noteRoomEncryption: (room, enc) => this.roomEncryption.note(room, enc),
      sendStateEvent: (roomId, type, stateKey, content) => this.roomOps.sendStateEvent(roomId, type, stateKey, content),
      inviteToRoom: (roomId, u) => this.roomOps.invite(roomId, u),
      leaveRoom: (roomId) => this.roomOps.leave(roomId),
      fetchRoomHistory: (roomId, limit) => this.roomOps.fetchHistory(roomId, limit ?? 50),
      getJoinedMembers: (roomId) => this.roomOps.getJoinedMembers(roomId),
      requestRoomVerification: (roomId, u) => this.verification.requestInRoom(roomId, u),
      getRoomMessages: (roomId, o) => this.getRoomMessages(roomId, o),
      getRoomState: (roomId, type, stateKey, o) => this.getRoomState(roomId, type, stateKey, o),
      redactEvent: (roomId, eventId, reason) => this.redactEvent(roomId, eventId, reason),
      setTyping: (roomId, typing, timeoutMs) => this.setTyping(roomId, typing, timeoutMs),
      sendReadReceipt: (roomId, eventId, o) => this.sendReadReceipt(roomId, eventId, o),
    };
    this.rooms = new RoomRegistry(roomHost, { verifyDevices: this.verifyDevices, onlyCrossSignedDevices: opts.onlyCrossSignedDevices === true }, this.roomEncryption);
    this.roomOps = new RoomOperations({ http, crypto, rooms: this.rooms, roomEncryption: this.roomEncryption, timeline, userId });
    this.accountEndpoints = new AccountEndpoints({ http, userId });
    this.sendQueue = new RoomSendQueue({ http, crypto, encryption, isClosed, roomEncryption: this.roomEncryption, keyClaims, sender, devices: this.deviceOwner });
    this.files = new FileMessageSender(http, encryption, this.roomEncryption);
    this.keySharing = new KeySharingManager({ crypto, events: this, keyClaims, sender, userId, getDevices: (u) => this.getDevices(u) });
    this.keyFiles = new KeyExportManager(crypto, this, timeline);
    this.crossSigning = new CrossSigningManager({ http, crypto, userId, triggerOutgoing: () => this.outgoing.trigger() });
    this.keyBackup = new KeyBackupManager({ http, crypto, accountData: new AccountData(http, userId), events: this, timeline, log: childLogger(log, "[backup]"), isClosed, quiet: syncActivity });
    this.syncProcessor = new SyncProcessor({ http, crypto, events: observed, log, keyUploadsAnswered: () => sender.keyUploadsAnswered, rooms: this.rooms, timeline, keySharing: this.keySharing, outgoing: this.outgoing, userId: () => this._userId, state: () => this.state, activity: syncActivity, pool: () => this.pool });
    if (opts.autoJoin) new AutoJoiner({ events: this, policy: opts.autoJoin, join: (roomId) => this.roomOps.joinRoom(roomId), log });
    this.syncLoop = new SyncLoop({ http, processor: this.syncProcessor, events: this, log, options: this.opts, keyUploadsAnswered: () => sender.keyUploadsAnswered });
  }

  /** Logged-in user ID, or null. */
  get userId(): string | null {
    return this._userId;
  }
  /** This device's ID, or null before login. */
  get deviceId(): string | null {
    return this._deviceId;
  }
  /** The application's key-value store, kept with the client's sync state per user (option `stateStore`); after login. */
  get storage(): KeyValueStore {
    if (!this.state) throw new InvalidArgumentError("log in first: the storage is kept per user");
    return this.state;
  }

  /** Access token (never logged). */
  get accessToken(): string | undefined {
    return this.http.accessToken;
  }

  /**
   * What `JSON.stringify(client)` shows: the homeserver, the session's user and device, and
   * flags. Never the access token or the pickle key.
   */
  toJSON(): { homeserverUrl: string; userId: string | null; deviceId: string | null; encryption: boolean; loggedIn: boolean; closed: boolean } {
    return { homeserverUrl: this.homeserverUrl, userId: this._userId, deviceId: this._deviceId, encryption: this.encryption, loggedIn: this.http.accessToken !== undefined, closed: this.closed };
  }

  /** What `util.inspect(client)` (and so `console.log`) shows: the summary of {@link MatrixClient.toJSON}. */
  [inspectCustom](_depth: number, options: object, inspect: InspectFn): string {
    return redactedInspect("MatrixClient", this.toJSON(), options, inspect);
  }

  // ---------------------------------------------------------------------------------------------
  // crypto worker

  /** Start the worker (opens the store). Idempotent. */
  private async ensureWorker(): Promise<CryptoWorkerHost> {
    if (!this.encryption) throw new EncryptionDisabledError();
    if (this.closed) throw new ClientClosedError();
    if (!this.host) {
      const host = new CryptoWorkerHost(workerOptions(this.opts, this.#pickleKey.reveal()), childLogger(this.log, "[crypto]"), this.opts.encryptionConf?.workerPath);
      host.on("crashed", (err) => this.emit("crypto.workerCrashed", err));
      host.on("restarted", () => this.emit("crypto.workerRestarted"));
      host.onRestart = async () => {
        if (!this.account) return;
        await host.apiDuringRestart.loadAccount(this.account.userId, this.account.deviceId);
        if (this.keySharing.keyRequestsEnabled) await host.apiDuringRestart.setKeyRequestsEnabled(true);
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

  /** @internal the decrypt pool, if any (tests, bench). */
  get decryptPoolForTesting(): DecryptPool | null {
    return this.pool;
  }

  private async initCrypto(userId: string, deviceId: string): Promise<void> {
    const host = await this.ensureWorker();
    this.account = await host.api.loadAccount(userId, deviceId);
    const poolSize = decryptWorkerCount(this.opts);
    if (poolSize >= 2 && !this.pool) {
      const opts = workerOptions(this.opts, this.#pickleKey.reveal());
      this.pool = new DecryptPool(poolSize, { pickleKey: opts.pickleKey, cacheSize: opts.sessionCacheSize ?? 10_000, niceness: DECRYPT_WORKER_NICENESS }, new URL("decrypt-worker.js", host.workerUrl), childLogger(this.log, "[decrypt]"));
      await this.pool.start();
    }
    if (this.keySharing.keyRequestsEnabled) await host.api.setKeyRequestsEnabled(true);
    this.syncProcessor.resumeFrom(await host.api.getSyncToken());
    await this.outgoing.trigger();
    void this.keyBackup.trigger();
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
    await this.setSession(await passwordLogin(this.http, userId, password, { deviceId, initialDeviceDisplayName: opts.initialDeviceDisplayName }));
  }

  /** Use an existing access token; the user and device are found with `/account/whoami`. */
  async loginWithToken(accessToken: string): Promise<void> {
    await this.setSession(await tokenLogin(this.http, accessToken, this.encryption));
  }

  private async setSession(s: LoginSession): Promise<void> {
    this.http.setAccessToken(s.accessToken);
    this._userId = s.userId;
    this._deviceId = s.deviceId;
    // The last run's joined rooms, and (encryption off) its sync token; else the crypto store's is used.
    this.state?.close();
    this.state = ClientStateStore.open(stateStorePath(this.opts), s.userId, nativeBindingOption(this.opts));
    this.rooms.restore(this.state.rooms());
    if (this.encryption) await this.initCrypto(s.userId, s.deviceId);
    else this.syncProcessor.resumeFrom(this.state.syncToken());
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
    this.verification.close();
    this.keyBackup.close();
    await this.pool?.close();
    await this.host?.close();
    this.state?.close();
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
    return infos.map((i) => new Device(i, this.deviceOwner));
  }

  /** One device of a user, or null. */
  async getDevice(userId: string, deviceId: string): Promise<Device | null> {
    return (await this.getDevices(userId)).find((d) => d.deviceId === deviceId) ?? null;
  }

  /** @internal used by Device */
  setDeviceFlags(userId: string, deviceId: string, flags: { verified?: boolean; blacklisted?: boolean; ignored?: boolean }): Promise<DeviceInfo> {
    return this.deviceOwner.setDeviceFlags(userId, deviceId, flags);
  }

  /** Remove another device's data (e.g. an old device ID) from the store file. */
  async deleteStoredDevice(userId: string, deviceId: string): Promise<void> {
    const host = await this.ensureWorker();
    await host.api.deleteStoredDevice(userId, deviceId);
  }

  // ---------------------------------------------------------------------------------------------
  // cross-signing and secret storage (keys/CrossSigningManager)

  /**
   * Create this user's cross-signing identity (master, self-signing and user-signing keys, made and
   * kept in the worker), upload it (completing user-interactive auth with `password`), sign this
   * device, and store the private keys in secret storage on the account, protected by a new
   * recovery key (returned: give it to the user; `util.inspect` and `JSON.stringify` of the result
   * redact it) or by `passphrase`.
   *
   * The new keys become this device's identity only once the server accepted their upload: when
   * the upload fails (no password or a wrong one: `InvalidArgumentError` / `MatrixHttpError` 401;
   * refused) the call throws and the identity, its pinned master key and trust are exactly as
   * before. Run it again to retry; that also repairs a crash in the middle of a bootstrap.
   */
  async bootstrapCrossSigning(opts: { password?: string | undefined; passphrase?: string | undefined } = {}): Promise<CrossSigningBootstrapResult> {
    return this.crossSigning.bootstrap(opts);
  }

  /**
   * On another device of the same user: fetch the cross-signing keys from secret storage, decrypt
   * them with the recovery key or passphrase (in the worker), check them against the published
   * keys, and sign this device. A wrong key gives a typed error and changes nothing.
   */
  async restoreCrossSigning(secret: { recoveryKey: string } | { passphrase: string }): Promise<void> {
    await this.crossSigning.restore(secret);
  }

  /** Sign another user's master key with our user-signing key, after checking them out of band. */
  async verifyUser(userId: string): Promise<void> {
    await this.crossSigning.verifyUser(userId);
  }

  /** A user's cross-signing identity: master key, the pinned one, whether it changed, whether we trust it. */
  async getUserIdentity(userId: string): Promise<UserIdentityInfo> {
    return this.crossSigning.getUserIdentity(userId);
  }

  /** Accept a changed identity (reported by `user.identityChanged`) after checking it out of band. */
  async acknowledgeIdentityChange(userId: string): Promise<void> {
    await this.crossSigning.acknowledgeIdentityChange(userId);
  }

  /** Fetch a user's devices and identity from the server again. */
  async refreshUserKeys(userId: string): Promise<void> {
    await this.crossSigning.refreshUserKeys(userId);
  }

  // ---------------------------------------------------------------------------------------------
  // server-side key backup (keys/KeyBackupManager)

  /**
   * Back up every room key to the server (`m.megolm_backup.v1.curve25519-aes-sha2`), in the
   * background from now on: batches encrypted in the worker, retried with backoff, each session
   * marked only after the server confirmed it. Adopts the server's version when it is trusted
   * (its key is ours, or it is signed by our master key or one of our verified devices; with the
   * secret storage `recoveryKey` / `passphrase`, the key is taken from secret storage); an
   * untrusted one is refused (`InvalidArgumentError`, `details.reason` `untrusted`). With no
   * version, creates one signed by this device (and our master key) and, given the recovery key or
   * passphrase, stores its key in secret storage as `m.megolm_backup.v1`. A version deleted or
   * replaced later stops the upload and emits `keyBackup.versionChanged`.
   */
  async enableKeyBackup(secret: { recoveryKey?: string | undefined; passphrase?: string | undefined } = {}): Promise<KeyBackupInfo> {
    return this.keyBackup.enable(definedOnly(secret));
  }

  /**
   * Restore room keys from the server's backup (all rooms, or `roomId`): the backup key comes from
   * secret storage (recovery key or passphrase) or is given (`backupKey`). Restored sessions are
   * labelled `unauthenticated`; events waiting for them are decrypted and emitted again. A wrong
   * key throws `InvalidArgumentError` (`details.reason`: `bad_key`, `bad_mac`, …) and imports nothing.
   */
  async restoreKeyBackup(secret: KeyBackupSecret, opts: { roomId?: string; onProgress?: (done: number, total: number) => void } = {}): Promise<{ version: string; total: number; imported: number; failed: number }> {
    return this.keyBackup.restore(secret, opts);
  }

  /**
   * One call for bots: on first run, create cross-signing (`password` completes its upload), secret
   * storage and key backup, returning the new recovery key; on a fresh store of the same account,
   * restore them with `recoveryKey` (e.g. from an environment variable): this device signed, room
   * keys restored from the backup, uploads resumed. The result redacts the key when logged.
   */
  async setupRecovery(opts: { recoveryKey?: string | undefined; password?: string | undefined } = {}): Promise<RecoverySetupResult> {
    return setupRecovery(this.crossSigning, this.keyBackup, this._userId!, definedOnly(opts));
  }

  /** Upload every room key known now at once (without waiting for a quiet moment between syncs); resolves once they are in the backup (or the upload failed: see `error`). */
  async flushKeyBackup(): Promise<void> {
    await this.keyBackup.trigger(true);
  }

  // ---------------------------------------------------------------------------------------------
  // key export / import (keys/KeyExportManager)

  /**
   * Export every room key (inbound Megolm session) to `path` in the Matrix key-export format
   * (interoperable with Element and other clients), encrypted with `passphrase`. The file is
   * written atomically with mode 0600. PBKDF2 and encryption run off the main thread.
   * This does not export the device's identity keys.
   */
  async exportKeys(path: string, passphrase: string, opts: { rounds?: number; onProgress?: (done: number, total: number) => void } = {}): Promise<{ exported: number }> {
    return this.keyFiles.exportKeys(path, passphrase, opts);
  }

  /**
   * Import room keys from a key-export file. Imported sessions count as unauthenticated for
   * verification; an existing session is replaced only by one starting at an earlier index.
   * Events waiting for these sessions are decrypted and emitted (`lateDecryption`). Batches of
   * 1,000 sessions are committed one by one, so syncing goes on during a large import.
   */
  async importKeys(path: string, passphrase: string, opts: { onProgress?: (done: number, total: number) => void } = {}): Promise<{ total: number; imported: number; skipped: number }> {
    return this.keyFiles.importKeys(path, passphrase, opts);
  }

  // ---------------------------------------------------------------------------------------------
  // key sharing among our own devices (keys/KeySharingManager)

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
    await this.keySharing.addKeyForwardListener(callback);
  }

  /**
   * Handle key requests from our own other devices. After each sync with requests, `callback`
   * receives device ID → Device (check `verified` before answering) and `answer(deviceIds)`; only
   * the listed devices get `m.forwarded_room_key`s. Requests from other users, from this device,
   * or for sessions we do not have never reach the callback; blacklisted devices are never
   * answered. Without a listener, requests are dropped (never queued without bound).
   */
  addKeyRequestListener(callback: KeyRequestListener): void {
    this.keySharing.addKeyRequestListener(callback);
  }

  // ---------------------------------------------------------------------------------------------
  // sync (sync/SyncLoop, sync/SyncProcessor)

  /** Start the sync loop (returns at once). Errors are emitted as `error` and retried with backoff. */
  start(): void {
    if (this.closed) throw new ClientClosedError();
    if (!this._userId) throw new InvalidArgumentError("log in before starting the sync loop");
    this.syncLoop.start();
  }

  /** Stop the sync loop; resolves once the current sync finished processing. */
  async stop(): Promise<void> {
    await this.syncLoop.stop();
  }

  /** Run one sync now (for scripts and tests); resolves once it is processed and committed. */
  async syncOnce(timeoutMs = 0): Promise<void> {
    await this.syncLoop.syncOnce(timeoutMs);
  }


  // ---------------------------------------------------------------------------------------------
  // rooms (rooms/RoomRegistry, rooms/RoomOperations, rooms/RoomEncryptionTracker)

  /** The room object for an ID (created on first use). */
  getRoom(roomId: string): Room {
    return this.rooms.get(roomId);
  }

  /** Rooms seen so far, from login on including the joined rooms an earlier run saved (`stateStore`). */
  getRooms(): Room[] {
    return this.rooms.all();
  }

  /** Create a room, optionally encrypted, inviting users. */
  async createRoom(opts: CreateRoomOptions = {}): Promise<Room> {
    return this.roomOps.createRoom(opts);
  }

  /** Join a room by ID or alias. */
  async joinRoom(roomIdOrAlias: string): Promise<Room> {
    return this.roomOps.joinRoom(roomIdOrAlias);
  }



  // ---------------------------------------------------------------------------------------------
  // interactive verification (verification/)

  /**
   * Ask another device to verify with us interactively (SAS emoji/decimal) over to-device messages:
   * one device of `userId`, or all their known devices (the first to accept wins; the others are
   * told). Use this for our own devices; for other users, `room.requestVerification` in a DM is
   * what the spec recommends. Resolves with the request in phase `requested`.
   *
   * @example
   * const req = await client.requestVerification(client.userId!, "OTHERDEVICE");
   * await req.waitFor((r) => r.phase === "ready");
   * await req.startSas();
   * const sas = await req.waitForSas();
   * console.log(sas.emoji);
   * await sas.confirm();
   * await req.done;
   */
  async requestVerification(userId: string, deviceId?: string): Promise<VerificationRequest> {
    return this.verification.requestToDevice(userId, deviceId);
  }

  /** The verification request of a flow this client saw (by its flow ID), if any. */
  getVerificationRequest(flowId: string): VerificationRequest | undefined {
    return this.verification.get(flowId);
  }

}
