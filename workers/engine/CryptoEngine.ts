/**
 * The engine facade: the methods the crypto worker exposes, each one transaction over the
 * components that do the work (no crypto logic of its own).
 *
 * It never touches the network. Callers push sync data in, pull requests out and report the
 * responses (the same contract as matrix-rust-sdk's `OlmMachine`). Every public method builds one
 * {@link Transaction} and commits it with a single `saveChanges` before returning, so a crash can
 * lose at most the call in progress, never half of it.
 *
 * Locking rules (the caller's duty, see DESIGN §3): calls must not interleave — the worker facade
 * runs them one at a time. Per room, the caller runs prepareRoomKeyShare → shareRoomKey →
 * encryptRoomEvent under the room's lock; keys/claim is single flight.
 *
 * Sends and I/O: an encryption with a session already marked in use commits nothing (its ratchet
 * moves in memory, megolm/OutboundRatchets), so it holds no other room behind an fsync. Calls
 * still run one at a time: the built-in stores commit synchronously on this thread, and a no-write
 * encryption overtaking a pending asynchronous commit (a custom store) would read a store the
 * contract leaves undefined until `saveChanges` resolves.
 *
 * Components (one job each, listed in the README's architecture section) are built below in
 * dependency order; trust/senderTrust alone decides event labels.
 */
import type {
  AccountInfo,
  CrossSigningBootstrap,
  DeviceInfo,
  IncomingKeyRequest,
  IncomingSecretRequest,
  KeyBackupBatch,
  KeyBackupCreation,
  KeyBackupKeySource,
  KeyBackupTrust,
  OutgoingRequest,
  PrepareShareStep,
  RoomDecryptResult,
  SyncChangesInput,
  SyncChangesOptions,
  SyncChangesResult,
  UserIdentityInfo,
} from "../../src/protocol/api.js";
import { InvalidArgumentError } from "../../src/protocol/errors.js";
import type { CryptoStore } from "../../src/protocol/store.js";
import type { PoolSession } from "../../src/protocol/pool.js";
import type { Logger } from "../../src/pure/logger.js";
import { AccountKeys } from "./account/AccountKeys.js";
import { KeyBackup } from "./backup/KeyBackup.js";
import { EngineContext, isObj, isStr, type Json, type OlmModule } from "./EngineContext.js";
import { KeySharing } from "./gossiping/KeySharing.js";
import { SecretSharing } from "./gossiping/SecretSharing.js";
import { DeviceTracker } from "./identities/DeviceTracker.js";
import { UserIdentities } from "./identities/UserIdentities.js";
import { RoomKeyExport } from "./keys/RoomKeyExport.js";
import { InboundSessions } from "./megolm/InboundSessions.js";
import { OutboundSessions } from "./megolm/OutboundSessions.js";
import { RoomDecryptor, type RoomResults } from "./megolm/RoomDecryptor.js";
import { WithheldNotices } from "./megolm/WithheldNotices.js";
import { OlmSessions } from "./olm/OlmSessions.js";
import { SessionClaims } from "./olm/SessionClaims.js";
import { RoomState } from "./rooms/RoomState.js";
import { CrossSigningSecrets } from "./secrets/CrossSigningSecrets.js";
import { ToDeviceHandler } from "./sync/ToDeviceHandler.js";
import { SyncBatches, emptySyncResult } from "./sync/SyncBatches.js";
import type { Transaction } from "./Transaction.js";
import type { VerificationAction, VerificationActionResult, VerificationFlowView, VerificationTransport } from "../../src/protocol/verification.js";
import { Verifications } from "./verification/Verifications.js";

/** Dependencies of the engine. */
export interface EngineOptions {
  olm: OlmModule;
  store: CryptoStore;
  pickleKey: string;
  logger: Logger;
  now?: () => number;
  sessionCacheSize?: number;
}

/** @internal */
export class CryptoEngine {
  private readonly ctx: EngineContext;
  private readonly account: AccountKeys;
  private readonly devices: DeviceTracker;
  private readonly identities: UserIdentities;
  private readonly olm: OlmSessions;
  private readonly claims: SessionClaims;
  private readonly rooms: RoomState;
  private readonly inbound: InboundSessions;
  private readonly withheld: WithheldNotices;
  private readonly keySharing: KeySharing;
  private readonly decryptor: RoomDecryptor;
  private readonly outbound: OutboundSessions;
  private readonly keyExport: RoomKeyExport;
  private readonly secrets: CrossSigningSecrets;
  private readonly toDevice: ToDeviceHandler;
  private readonly verifications: Verifications;
  private readonly backup: KeyBackup;
  private readonly secretSharing: SecretSharing;
  private readonly syncs: SyncBatches;

  constructor(opts: EngineOptions) {
    const ctx = (this.ctx = new EngineContext({ olm: opts.olm, store: opts.store, pickleKey: opts.pickleKey, logger: opts.logger, now: opts.now ?? Date.now }));
    this.account = new AccountKeys(ctx);
    this.devices = new DeviceTracker(ctx, this.account);
    this.identities = new UserIdentities(ctx);
    this.olm = new OlmSessions(ctx, this.account, this.devices);
    this.claims = new SessionClaims(ctx, this.olm);
    this.rooms = new RoomState(ctx, this.devices);
    this.inbound = new InboundSessions(ctx, opts.sessionCacheSize ?? 10_000);
    this.withheld = new WithheldNotices(ctx);
    this.keySharing = new KeySharing(ctx, this.inbound, this.olm, this.claims, this.identities);
    // Key requests are queued in memory; each call that decrypts writes them once (saveQueued).
    this.decryptor = new RoomDecryptor(ctx, this.inbound, this.devices, this.identities, this.withheld, (_tx, roomId, senderKey, sessionId, sender) =>
      this.keySharing.queueRequest(roomId, senderKey, sessionId, sender),
    );
    this.outbound = new OutboundSessions(ctx, this.rooms, this.devices, this.identities, this.olm, this.claims, this.inbound);
    this.keyExport = new RoomKeyExport(ctx, this.inbound);
    this.secrets = new CrossSigningSecrets(ctx, this.account, this.devices, this.identities);
    this.backup = new KeyBackup(ctx, this.account, this.identities, this.inbound);
    this.secretSharing = new SecretSharing(ctx, this.olm, this.identities, this.secrets, this.backup);
    this.toDevice = new ToDeviceHandler(ctx, this.olm, this.claims, this.devices, this.rooms, this.inbound, this.withheld, this.keySharing, this.secretSharing);
    this.verifications = new Verifications(ctx, this.devices, this.identities);
    this.syncs = new SyncBatches(ctx, { rooms: this.rooms, devices: this.devices, account: this.account, toDevice: this.toDevice, decryptor: this.decryptor, keySharing: this.keySharing, inbound: this.inbound }, (fn) => this.write(fn));
  }

  /** Run `fn` in a new transaction and commit it. */
  private async write<T>(fn: (tx: Transaction) => T | Promise<T>): Promise<T> {
    const tx = this.ctx.newTx();
    const value = await fn(tx);
    await this.ctx.commit(tx);
    return value;
  }

  // --- account -----------------------------------------------------------------------------------

  /** Device ID of the most recent stored account of `userId`. */
  getStoredDeviceId(userId: string): string | null {
    return this.ctx.store.getStoredDeviceId(userId);
  }

  /** Load this device's account, creating it on first use. */
  async loadAccount(userId: string, deviceId: string): Promise<AccountInfo> {
    if (!isStr(userId) || !userId.startsWith("@") || !isStr(deviceId) || deviceId === "") {
      throw new InvalidArgumentError("loadAccount needs a full user ID and a device ID");
    }
    await this.outbound.writeRatchets();
    this.release();
    this.outbound.reset();
    const rec = await this.ctx.store.useAccount(userId, deviceId);
    this.devices.load(rec !== null);
    this.rooms.reset();
    const tx = this.ctx.newTx();
    const existed = this.account.load(tx, userId, deviceId, rec);
    // Outstanding key requests are sent again after a restart, and unfinished unwedging is resumed.
    this.keySharing.load(existed);
    this.claims.load(tx);
    // Our own user is always tracked: our other devices are recipients too.
    if (!tx.isTracked(userId)) tx.putTracked({ userId, dirty: true });
    await this.ctx.commit(tx);
    return { ...this.ctx.me() };
  }

  /** Delete a stored account. Refuses to delete the loaded one. */
  async deleteStoredDevice(userId: string, deviceId: string): Promise<void> {
    if (this.ctx.hasAccount && this.ctx.me().userId === userId && this.ctx.me().deviceId === deviceId) {
      throw new InvalidArgumentError("cannot delete the account that is in use");
    }
    await this.ctx.store.deleteAccount(userId, deviceId);
  }

  /**
   * Close cleanly: write the outbound sessions' ratchets (advanced in memory since their in-use
   * mark) with their marks cleared, so the next engine keeps using them, then {@link release}.
   * An engine that never gets here (crash, kill) leaves the marks: the next one discards those
   * sessions and shares new ones, never reusing a message index.
   */
  async close(): Promise<void> {
    await this.outbound.writeRatchets();
    this.release();
  }

  /** Free libolm objects and forget in-memory state (outbound ratchets are not written: see {@link close}). */
  release(): void {
    this.syncs.drop();
    this.outbound.release();
    this.inbound.release();
    this.backup.release();
    this.identities.invalidate();
    this.claims.release();
    this.verifications.machine.close();
    this.account.release();
    this.ctx.inFlight.clear();
    this.ctx.clearMirrors();
  }

  /** Our identity. */
  identity(): AccountInfo {
    return { ...this.ctx.me() };
  }

  /** The last committed sync token. */
  getSyncToken(): string | null {
    return this.ctx.store.getSyncToken();
  }

  // --- outgoing requests -------------------------------------------------------------------------

  /** Requests to send now (keys/upload, keys/query, key requests, unwedging). Single flight per kind. */
  async outgoingRequests(): Promise<OutgoingRequest[]> {
    return this.write((tx) => {
      const out: OutgoingRequest[] = [];
      const upload = this.account.buildUploadRequest(tx);
      if (upload) out.push({ id: upload.id, kind: "keys_upload", body: JSON.stringify(upload.body) });
      const toQuery = this.devices.usersToQuery(tx);
      if (toQuery.length) out.push(this.devices.buildKeysQuery(toQuery));
      out.push(...this.keySharing.buildRequestMessages());
      out.push(...this.claims.buildUnwedgeRequests(tx));
      return out;
    });
  }

  /** Report a response to a request from {@link outgoingRequests} or a share/claim step. */
  async markRequestAsSent(id: string, kind: OutgoingRequest["kind"], responseJson: string): Promise<{ identityChanges: string[] }> {
    const identityChanges: string[] = [];
    const req = this.ctx.inFlight.get(id);
    this.ctx.inFlight.delete(id);
    // Handed out before a restart: what it would confirm (a key share) is handed out again.
    if (!req) this.ctx.log.info(`answer to a ${kind} request this engine does not know (handed out before a restart, or discarded); what it covered is redone`);
    let response: Json;
    try {
      const parsed: unknown = JSON.parse(responseJson);
      response = isObj(parsed) ? parsed : {};
    } catch {
      response = {};
    }
    await this.write((tx) => {
      switch (kind) {
        case "keys_upload":
          this.account.onUploaded(tx, response);
          break;
        case "keys_query":
          this.identities.invalidate();
          // Our pending bootstrap keys, published by an upload whose commit a crash prevented.
          this.secrets.adoptIfPublished(tx, response);
          this.devices.onKeysQueried(tx, response, req?.users ?? new Map());
          this.identities.onKeysQueried(tx, response, identityChanges);
          break;
        case "keys_claim":
          this.claims.onClaimed(tx, response, req?.users ?? new Map(), req?.unwedge === true);
          break;
        case "to_device":
          if (req?.share) this.outbound.onShareSent(tx, req.share);
          if (req?.keyRequest) this.keySharing.onRequestSent(tx, req.keyRequest);
          break;
      }
    });
    return { identityChanges };
  }

  /** Report a definitive failure of a request. */
  async markRequestAsFailed(id: string, kind: OutgoingRequest["kind"], errcode: string | null, message: string): Promise<void> {
    const req = this.ctx.inFlight.get(id);
    this.ctx.inFlight.delete(id);
    await this.write((tx) => {
      if (kind === "keys_upload") this.account.onUploadFailed(tx, errcode, message);
      else if (kind === "keys_claim" && req?.users) this.claims.onClaimFailed(tx, req.users, req.unwedge === true);
      else this.ctx.log.warn(`${kind} request failed (${errcode ?? "network"})`);
    });
  }

  // --- sync --------------------------------------------------------------------------------------

  /** See {@link SyncBatches.receive}. */
  async receiveSyncChanges(input: SyncChangesInput, opts: SyncChangesOptions = {}): Promise<SyncChangesResult> {
    return this.syncs.receive(input, opts);
  }

  /** See {@link SyncBatches.decrypt}. */
  decryptSyncTimelines(rooms: { roomId: string; events: unknown[] }[]): RoomResults[] {
    return this.syncs.decrypt(rooms);
  }

  /** See `CryptoWorkerApi.decryptSyncTimelinesPooled` and {@link SyncBatches.decrypt}. */
  decryptSyncTimelinesPooled(rooms: { roomId: string; events: unknown[] }[]): { rooms: RoomResults[]; sessions: PoolSession[] } {
    const exported = new Map<string, PoolSession>();
    return { rooms: this.syncs.decrypt(rooms, exported), sessions: [...exported.values()] };
  }

  /** See {@link SyncBatches.commit}. */
  async commitSyncToken(token: string, batchId: string, syncFirst?: string[]): Promise<void> {
    await this.syncs.commit(token, batchId, syncFirst);
  }

  /** Decrypt a batch of `m.room.encrypted` events of one room (history, single events). */
  async decryptRoomEvents(roomId: string, events: unknown[]): Promise<RoomDecryptResult[]> {
    this.ctx.me();
    return this.write((tx) => {
      const results = this.decryptor.decryptBatch(tx, roomId, Array.isArray(events) ? events : [], true);
      this.keySharing.saveQueued(tx);
      return results;
    });
  }

  // --- rooms and sending -------------------------------------------------------------------------

  /** Turn on a room's encryption (never off). */
  async setRoomEncryption(roomId: string, encryption: Json): Promise<void> {
    await this.write((tx) => this.rooms.setEncryption(tx, roomId, encryption));
  }

  /** A room's full member list. */
  async setRoomMembers(roomId: string, members: { userId: string; membership: string }[]): Promise<void> {
    await this.write((tx) => this.rooms.setMembers(tx, roomId, members));
  }

  /** A room's encryption settings and whether its members are known. */
  getRoomInfo(roomId: string): { encryption: Json | null; membersKnown: boolean } {
    return this.rooms.info(roomId);
  }

  /** Next request needed before sharing the room key: keys/query, then keys/claim; or ready. Caller holds the room's lock. */
  async prepareRoomKeyShare(roomId: string, verifyDevices: boolean, onlyCrossSigned = false): Promise<PrepareShareStep> {
    return this.write((tx) => this.outbound.prepareShare(tx, roomId, verifyDevices, onlyCrossSigned));
  }

  /** Share the room's outbound session with every recipient device that lacks it; rotate first when needed. Caller holds the room's lock. */
  async shareRoomKey(roomId: string, verifyDevices: boolean, onlyCrossSigned = false): Promise<OutgoingRequest[]> {
    this.ctx.me();
    return this.write((tx) => this.outbound.share(tx, roomId, verifyDevices, onlyCrossSigned));
  }

  /**
   * Encrypt an event when the room's session already reached every current recipient (one call per
   * send); null when `prepareRoomKeyShare`/`shareRoomKey` must run first. Caller holds the room's lock.
   */
  async encryptRoomEventIfReady(roomId: string, eventType: string, contentJson: string, verifyDevices: boolean, onlyCrossSigned = false): Promise<string | null> {
    this.ctx.me();
    const content: unknown = JSON.parse(contentJson);
    if (!isObj(content)) throw new InvalidArgumentError("the event content must be a JSON object");
    return this.write((tx) => {
      const c = this.outbound.encryptIfShared(tx, roomId, eventType, content, verifyDevices, onlyCrossSigned);
      return c ? JSON.stringify(c) : null;
    });
  }

  /** Discard a room's outbound session. */
  async discardRoomKey(roomId: string): Promise<void> {
    await this.write((tx) => this.outbound.discard(tx, roomId));
  }

  /** Encrypt one event with the room's fully shared outbound session. Caller holds the room's lock. */
  async encryptRoomEvent(roomId: string, eventType: string, content: Json): Promise<Json> {
    this.ctx.me();
    return this.write((tx) => this.outbound.encrypt(tx, roomId, eventType, content));
  }

  // --- identities and cross-signing --------------------------------------------------------------

  /** Mark users' device lists (and identities) stale so the next outgoing-requests pass queries them. */
  async refreshUsers(userIds: string[]): Promise<void> {
    // Explicitly asked for: tracked from now on (the server reports changes only for users we share rooms with).
    await this.write((tx) => {
      for (const u of userIds) if (isStr(u) && u.startsWith("@")) this.devices.markDirty(tx, u);
    });
  }

  /** A user's cross-signing identity as we know it. */
  getUserIdentity(userId: string): UserIdentityInfo {
    return this.identities.getUserIdentity(this.ctx.newTx(), userId);
  }

  /** Accept a changed identity of `userId` (after checking it out of band). */
  async acknowledgeIdentityChange(userId: string): Promise<void> {
    await this.write((tx) => this.identities.acknowledgeIdentityChange(tx, userId));
  }

  /**
   * Prepare new cross-signing keys and their secret-storage copy for upload. Our identity is not
   * changed: the keys are committed as a pending bootstrap (before anything leaves), which
   * {@link commitCrossSigning} turns into our identity after the server accepted the upload and
   * {@link discardCrossSigning} forgets after a failure.
   */
  async prepareCrossSigning(opts: { passphrase?: string } = {}): Promise<CrossSigningBootstrap> {
    this.ctx.me();
    return this.write((tx) => this.secrets.prepare(tx, opts));
  }

  /** The server accepted the upload of the prepared keys with master key `masterKey`: they become our identity. */
  async commitCrossSigning(masterKey: string): Promise<void> {
    this.ctx.me();
    await this.write((tx) => this.secrets.commitPrepared(tx, masterKey));
  }

  /** The upload of the prepared keys failed: forget them; our identity stays as it was. */
  async discardCrossSigning(): Promise<void> {
    this.ctx.me();
    await this.write((tx) => this.secrets.discardPrepared(tx));
  }

  /** Restore our cross-signing keys from secret storage; throws, changing nothing, on a wrong key. */
  async restoreCrossSigning(input: { keyDescription: Json; keyId: string; secrets: Record<string, unknown>; recoveryKey?: string; passphrase?: string }): Promise<{ signatureUpload: Json }> {
    this.ctx.me();
    return this.write((tx) => this.secrets.restore(tx, input));
  }

  /** Sign another user's master key with our user-signing key (after verifying them out of band). */
  async verifyUser(userId: string): Promise<{ signatureUpload: Json }> {
    this.ctx.me();
    return this.write((tx) => ({ signatureUpload: this.identities.verifyUser(tx, userId) }));
  }

  // --- key sharing among our own devices ---------------------------------------------------------

  /** Turn automatic key requests on (the application added a key-forward listener) or off. */
  setKeyRequestsEnabled(enabled: boolean): void {
    this.keySharing.setEnabled(enabled);
  }

  /** keys/claim for own devices we are about to answer and have no Olm session with. */
  prepareKeyForwarding(deviceIds: string[]): OutgoingRequest | null {
    this.ctx.me();
    return this.keySharing.prepareForwarding(this.ctx.newTx(), deviceIds);
  }

  /** Answer approved requests from our own devices with Olm-encrypted `m.forwarded_room_key`s. */
  async answerKeyRequests(requests: IncomingKeyRequest[]): Promise<OutgoingRequest[]> {
    this.ctx.me();
    return this.write((tx) => this.keySharing.answer(tx, requests));
  }

  /** Olm-encrypted `m.secret.send`s for requests from our own verified devices (others refused, logged). */
  async answerSecretRequests(requests: IncomingSecretRequest[]): Promise<OutgoingRequest[]> {
    return this.write((tx) => this.secretSharing.answer(tx, Array.isArray(requests) ? requests : []));
  }

  /** `m.secret.request`s to our own verified devices for the secrets we lack (request IDs committed first). */
  async requestSecrets(): Promise<OutgoingRequest[]> {
    return this.write((tx) => this.secretSharing.request(tx));
  }

  // --- key export / import -----------------------------------------------------------------------

  /** One page of inbound sessions in the key-export format. */
  exportRoomKeysPage(limit: number, after?: string): { keys: Json[]; next: string | null; total: number } {
    this.ctx.me();
    return this.keyExport.exportPage(limit, after);
  }

  /**
   * Import sessions from a key export (one transaction per call: callers pass batches). Imported
   * sessions are never better than unauthenticated. Events waiting for these sessions are
   * decrypted and returned.
   */
  async importRoomKeys(keys: unknown[]): Promise<{ imported: number; skipped: number; redecrypted: RoomResults[] }> {
    this.ctx.me();
    return this.write((tx) => {
      const { stored, skipped } = this.keyExport.importBatch(tx, keys);
      return { imported: stored.length, skipped, redecrypted: this.redecryptFor(tx, stored) };
    });
  }

  // --- server-side key backup (backup/KeyBackup) ------------------------------------------------

  /** How far a backup version (`GET /room_keys/version` answer) is trusted, which one we upload to, and how many sessions it lacks. */
  keyBackupStatus(info: Json | null): { trust: KeyBackupTrust | null; active: string | null; remaining: number } {
    return this.backup.status(this.ctx.newTx(), info);
  }

  /** A new backup key (held from now on) and the signed `auth_data` for `POST /room_keys/version`; with secret storage input, its `m.megolm_backup.v1` copy. */
  async createKeyBackup(ss?: { keyDescription: Json; keyId: string; recoveryKey?: string; passphrase?: string }): Promise<KeyBackupCreation> {
    return this.write((tx) => this.backup.create(tx, ss));
  }

  /** Hold the private key of backup version `info`, from secret storage or given; `bad_key` when it is another key. */
  async unlockKeyBackup(info: Json, source: KeyBackupKeySource): Promise<void> {
    await this.write((tx) => this.backup.unlock(tx, info, source));
  }

  /** Upload to version `info` from now on (refused, `untrusted`, unless trusted), or stop uploading (`null`). */
  async activateKeyBackup(info: Json | null): Promise<KeyBackupTrust | null> {
    return this.write((tx) => (info ? this.backup.activate(tx, info) : (this.backup.deactivate(tx), null)));
  }

  /** The next upload batch of at most `limit` sessions, or null (backup off, or all uploaded). */
  keyBackupBatch(limit: number): KeyBackupBatch | null {
    return this.backup.nextBatch(this.ctx.newTx(), limit);
  }

  /** The server confirmed (`ok`) or refused batch `id`: its sessions are marked backed up, or go out again. */
  async keyBackupBatchDone(id: string, ok: boolean): Promise<{ marked: number }> {
    return ok ? this.write((tx) => ({ marked: this.backup.batchSent(tx, id) })) : (this.backup.batchFailed(id), { marked: 0 });
  }

  /** Restore a batch of backed-up sessions of version `info` (provenance `backup`); events waiting for them are decrypted and returned. */
  async importBackupSessions(info: Json, keys: Json): Promise<{ imported: number; failed: number; redecrypted: RoomResults[] }> {
    return this.write((tx) => {
      const { stored, failed } = this.backup.importSessions(tx, info, keys);
      return { imported: stored.length, failed, redecrypted: this.redecryptFor(tx, stored) };
    });
  }

  /** Decrypt the events waiting for newly stored sessions (and those the sync in progress kept). */
  private redecryptFor(tx: Transaction, stored: { roomId: string; sessionId: string; senderKey: string }[]): RoomResults[] {
    const result = emptySyncResult();
    result.roomKeys.push(...stored);
    this.decryptor.redecryptPending(tx, result, this.syncs.openTx);
    this.keySharing.saveQueued(tx);
    return result.redecrypted;
  }

  // --- devices -----------------------------------------------------------------------------------

  /** Devices of a user, with trust. */
  getDevices(userId: string): DeviceInfo[] {
    const tx = this.ctx.newTx();
    return this.ctx.store.getUserDevices(userId).map((d) => this.identities.deviceInfo(tx, d));
  }

  /** Set a device's local trust flags. */
  async setDeviceFlags(userId: string, deviceId: string, flags: { verified?: boolean; blacklisted?: boolean; ignored?: boolean }): Promise<DeviceInfo> {
    const tx = this.ctx.newTx();
    const upd = this.devices.setFlags(tx, userId, deviceId, flags);
    await this.ctx.commit(tx);
    return this.identities.deviceInfo(tx, upd);
  }

  // --- interactive verification (SAS) ------------------------------------------------------------

  /** Request a to-device verification with `deviceIds` of `userId` (null: all their known devices but ours). */
  async requestVerification(userId: string, deviceIds: string[] | null): Promise<VerificationActionResult> {
    const me = this.ctx.me();
    return this.write((tx) => {
      const ids = deviceIds ?? tx.getUserDevices(userId).filter((d) => !d.deleted && !(userId === me.userId && d.deviceId === me.deviceId)).map((d) => d.deviceId);
      return this.verifications.apply(tx, this.verifications.machine.requestToDevice(userId, ids));
    });
  }

  /** The content of an in-room verification request to `userId` (an `m.room.message`). */
  roomVerificationRequestContent(userId: string): Json {
    this.ctx.me();
    return this.verifications.machine.roomRequestContent(userId);
  }

  /** Our in-room request to `userId` was sent as `eventId` in `roomId`: the flow exists from now on. */
  async roomVerificationRequestSent(roomId: string, eventId: string, userId: string): Promise<VerificationActionResult> {
    this.ctx.me();
    return this.write((tx) => this.verifications.apply(tx, this.verifications.machine.roomRequestSent(roomId, eventId, userId)));
  }

  /** A user action on a flow. */
  async verificationAction(flowId: string, action: VerificationAction): Promise<VerificationActionResult> {
    this.ctx.me();
    const m = this.verifications.machine;
    const steps: Record<string, (flowId: string) => unknown> = { accept: m.accept, start_sas: m.startSas, confirm: m.confirm, mismatch: m.mismatch, cancel: m.cancelFlow };
    const step = Object.hasOwn(steps, action) ? (steps[action] as typeof m.accept) : undefined;
    if (!step) throw new InvalidArgumentError(`unknown verification action ${String(action)}`);
    return this.write((tx) => this.verifications.apply(tx, step.call(m, flowId)));
  }

  /** A verification event received to-device or in a room (content as JSON). */
  async receiveVerificationEvent(sender: string, type: string, contentJson: string, where: { transport: VerificationTransport; roomId?: string; eventId?: string; originServerTs?: number }): Promise<VerificationActionResult> {
    this.ctx.me();
    let content: unknown;
    try {
      content = JSON.parse(contentJson);
    } catch {
      content = null;
    }
    return this.write((tx) => this.verifications.handle(tx, sender, type, content, where));
  }

  /** Time out flows older than 10 minutes (call about once a minute while flows are active). */
  async verificationTick(): Promise<VerificationActionResult> {
    this.ctx.me();
    return this.write((tx) => this.verifications.apply(tx, this.verifications.machine.tick()));
  }

  /** The current view of a flow, or null. */
  getVerification(flowId: string): VerificationFlowView | null {
    return this.verifications.machine.get(flowId);
  }
}
