/**
 * The sans-I/O crypto engine: Olm account, Olm sessions, Megolm sessions, device tracking.
 *
 * It never touches the network. Callers push sync data in, pull requests out and report the
 * responses (the same contract as matrix-rust-sdk's `OlmMachine`). Every public method builds one
 * {@link Transaction} and commits it with a single `saveChanges` before returning, so a crash can
 * lose at most the call in progress, never half of it.
 *
 * Locking rules (the caller's duty, see DESIGN §3): calls must not interleave — the worker facade
 * runs them one at a time. Per room, the caller runs prepareRoomKeyShare → shareRoomKey →
 * encryptRoomEvent under the room's lock; keys/claim is single flight.
 */
import type Olm from "@matrix-org/olm";
import { createHash, randomBytes } from "node:crypto";
import {
  MEGOLM_ALGORITHM,
  OLM_ALGORITHM,
  DecryptionFailureCode,
  VerificationStatus,
  type AccountInfo,
  type DeviceInfo,
  type OutgoingRequest,
  type PrepareShareStep,
  type RoomDecryptResult,
  type SyncChangesInput,
  type SyncChangesResult,
  type DecryptionFailureCodeValue,
  type IncomingKeyRequest,
} from "../../src/protocol/api.js";
import {
  EncryptionDisabledError,
  InternalError,
  InvalidArgumentError,
  UnknownDeviceKeysError,
  UnknownDevicesError,
  UnsupportedAlgorithmError,
} from "../../src/protocol/errors.js";
import type {
  AccountRecord,
  CryptoStore,
  DeviceRecord,
  InboundGroupSessionRecord,
  OutboundGroupSessionRecord,
  SharedWithEntry,
} from "../../src/protocol/store.js";
import type { Logger } from "../../src/util/logger.js";
import { canonicalJson, signablePart } from "./canonicalJson.js";
import { GroupSessionCache, type LiveInboundSession } from "./GroupSessionCache.js";
import { Transaction } from "./Transaction.js";
import { checkDeviceChain, crossSigningKeysFromSeeds, deviceSigningUploadBody, generateCrossSigningKeys, mergeSignatureUploads, parseCrossSigningKey, publicKeyFromSeed, signDevice, signUserMaster, type CrossSigningSeeds } from "./crossSigning.js";
import { loadIdentity, loadPin, loadSeeds, loadVerified, saveIdentity, savePin, saveSeeds, saveVerified, type StoredIdentity } from "./CrossSigningStore.js";
import { checkKey, decodeRecoveryKey, decryptSecret, encodeRecoveryKey, deriveKeyFromPassphrase, encryptSecret, generateRecoveryKey, makeKeyDescription, newSecretStorageKeyId, SecretStorageError } from "./secretStorage.js";

type OlmModule = typeof Olm;
type Json = Record<string, unknown>;

/** Default rotation: 100 messages or one week (spec defaults for `m.room.encryption`). */
const DEFAULT_ROTATION_MSGS = 100;
const DEFAULT_ROTATION_MS = 7 * 24 * 3600 * 1000;
/** Messages per `/sendToDevice` request. */
const TO_DEVICE_CHUNK = 250;
/** Do not claim again for a device whose claim returned no key for this long. */
const FAILED_CLAIM_RETRY_MS = 60 * 1000;
/** Upper bound on events kept waiting for their keys. */
const MAX_PENDING_EVENTS = 20_000;
/** Limits on untrusted input sizes. */
const MAX_CIPHERTEXT_LENGTH = 1 << 20;
/** Longest session ID / key / device ID we accept from the wire. */
const MAX_ID_LENGTH = 255;

/** Dependencies of the engine. */
export interface EngineOptions {
  olm: OlmModule;
  store: CryptoStore;
  pickleKey: string;
  logger: Logger;
  now?: () => number;
  sessionCacheSize?: number;
}

class DecryptFailure extends Error {
  constructor(
    readonly code: DecryptionFailureCodeValue | string,
    message: string,
    readonly withheldCode?: string,
  ) {
    super(message);
  }
}

/** To-device event types of withheld notices (stable and the pre-stable prefix). */
const WITHHELD_TYPES = new Set(["m.room_key.withheld", "org.matrix.room_key.withheld"]);

const isObj = (v: unknown): v is Json => typeof v === "object" && v !== null && !Array.isArray(v);
const isStr = (v: unknown): v is string => typeof v === "string";

/** @internal */
export class CryptoEngine {
  private readonly olm: OlmModule;
  private readonly store: CryptoStore;
  private readonly pickleKey: string;
  private readonly log: Logger;
  private readonly now: () => number;
  private readonly cache: GroupSessionCache;
  private readonly utility: Olm.Utility;

  private account: Olm.Account | null = null;
  private accountRecord: AccountRecord | null = null;
  private ids: AccountInfo | null = null;

  /** Signed one-time key count on the server, when known. */
  private otkCount: number | null = null;
  private fallbackNeeded = false;
  private readonly inFlight = new Map<
    string,
    { kind: OutgoingRequest["kind"]; users?: Map<string, number>; share?: { roomId: string; sessionId: string; devices: [string, string][] }; keyRequest?: string; unwedge?: boolean }
  >();
  /** Whether undecryptable events trigger `m.room_key_request`s (set by the forward listener). */
  private keyRequestsEnabled = false;
  /** Devices whose Olm channel is wedged: "claim" a new session, then send them an "m.dummy". */
  private readonly unwedge = new Map<string, "claim" | "claiming" | "dummy">();
  /** Outgoing key requests by request ID, persisted as one value. */
  private keyRequests = new Map<string, OutgoingKeyRequest>();
  private uploadInFlight = false;
  /** Bumped each time a user's device list is reported changed; a query answer only clears dirty if unchanged. */
  private readonly dirtyGeneration = new Map<string, number>();
  private readonly failedClaims = new Map<string, number>();
  /** In-memory mirror of the tracked users (user → dirty), loaded with the account. */
  private tracked = new Map<string, boolean>();
  private readonly deviceByCurve = new Map<string, DeviceRecord | null>();
  private readonly myMembership = new Map<string, string | undefined>();
  /** Timeline side effects waiting to be committed with the sync token. */
  private deferred: Transaction | null = null;

  constructor(opts: EngineOptions) {
    this.olm = opts.olm;
    this.store = opts.store;
    this.pickleKey = opts.pickleKey;
    this.log = opts.logger;
    this.now = opts.now ?? Date.now;
    this.cache = new GroupSessionCache(opts.sessionCacheSize ?? 2000);
    this.utility = new this.olm.Utility();
  }

  // ---------------------------------------------------------------------------------------------
  // account

  /** Device ID of the most recent stored account of `userId`. */
  getStoredDeviceId(userId: string): string | null {
    return this.store.getStoredDeviceId(userId);
  }

  /** Load this device's account, creating it on first use. */
  async loadAccount(userId: string, deviceId: string): Promise<AccountInfo> {
    if (!isStr(userId) || !userId.startsWith("@") || !isStr(deviceId) || deviceId === "") {
      throw new InvalidArgumentError("loadAccount needs a full user ID and a device ID");
    }
    this.release();
    const rec = await this.store.useAccount(userId, deviceId);
    this.tracked = new Map(rec ? this.store.getTrackedUsers().map((t) => [t.userId, t.dirty]) : []);
    this.deviceByCurve.clear();
    this.myMembership.clear();
    const account = new this.olm.Account();
    const tx = this.newTx();
    if (rec) {
      account.unpickle(this.pickleKey, rec.pickle);
      this.accountRecord = rec;
      this.log.info(`loaded Olm account of ${userId}/${deviceId}`);
    } else {
      account.create();
      this.accountRecord = { userId, deviceId, pickle: account.pickle(this.pickleKey), deviceKeysUploaded: false, createdTs: this.now() };
      tx.account = this.accountRecord;
      this.log.info(`created new Olm account for ${userId}/${deviceId}`);
    }
    this.account = account;
    const keys = JSON.parse(account.identity_keys()) as { ed25519: string; curve25519: string };
    this.ids = { userId, deviceId, ed25519: keys.ed25519, curve25519: keys.curve25519 };
    // Outstanding key requests are sent again after a restart.
    this.keyRequests = new Map();
    const stored = rec ? this.store.getValue(KEY_REQUESTS) : null;
    if (stored) {
      for (const r of JSON.parse(stored) as OutgoingKeyRequest[]) this.keyRequests.set(r.requestId, { ...r, state: r.state === "cancel" ? "cancel" : "unsent" });
    }
    // Our own user is always tracked: our other devices are recipients too.
    if (!tx.isTracked(userId)) tx.putTracked({ userId, dirty: true });
    await this.commit(tx);
    return { ...this.ids };
  }

  /** Delete a stored account. Refuses to delete the loaded one. */
  async deleteStoredDevice(userId: string, deviceId: string): Promise<void> {
    if (this.ids && this.ids.userId === userId && this.ids.deviceId === deviceId) {
      throw new InvalidArgumentError("cannot delete the account that is in use");
    }
    await this.store.deleteAccount(userId, deviceId);
  }

  /** Free libolm objects. */
  release(): void {
    this.deferred = null;
    this.cache.clear();
    this.trustCache.clear();
    this.account?.free();
    this.account = null;
    this.ids = null;
    this.inFlight.clear();
    this.uploadInFlight = false;
  }

  private me(): AccountInfo {
    if (!this.ids) throw new EncryptionDisabledError("No account is loaded; log in first.");
    return this.ids;
  }

  private acct(): Olm.Account {
    if (!this.account) throw new EncryptionDisabledError("No account is loaded; log in first.");
    return this.account;
  }

  private saveAccount(tx: Transaction): void {
    const rec = { ...this.accountRecord!, pickle: this.acct().pickle(this.pickleKey) };
    this.accountRecord = rec;
    tx.account = rec;
  }

  /** Our own membership in a room (cached: read per sync for every room). */
  private myMembershipIn(tx: Transaction, roomId: string): string | undefined {
    if (!this.myMembership.has(roomId)) this.myMembership.set(roomId, tx.getMembers(roomId).find((m) => m.userId === this.me().userId)?.membership);
    return this.myMembership.get(roomId);
  }

  private putMember(tx: Transaction, m: { roomId: string; userId: string; membership: string }): void {
    tx.putMember(m);
    if (this.ids && m.userId === this.ids.userId) this.myMembership.set(m.roomId, m.membership);
  }

  private newTx(): Transaction {
    return new Transaction(this.store, this.tracked);
  }

  private async commit(tx: Transaction): Promise<void> {
    const changes = tx.toChanges();
    if (changes) await this.store.saveChanges(changes);
    tx.applyTracked(this.tracked);
    if (tx.wroteDevices) this.deviceByCurve.clear();
  }

  /** The device owning a curve25519 key, cached (cleared whenever devices are written). */
  private deviceForCurve(tx: Transaction, curve: string): DeviceRecord | null {
    if (tx.wroteDevices) return tx.getDeviceByCurve(curve);
    let d = this.deviceByCurve.get(curve);
    if (d === undefined) {
      d = this.store.getDeviceByCurve25519(curve);
      if (this.deviceByCurve.size > 10_000) this.deviceByCurve.clear();
      this.deviceByCurve.set(curve, d);
    }
    return d;
  }

  getSyncToken(): string | null {
    return this.store.getSyncToken();
  }

  // ---------------------------------------------------------------------------------------------
  // signing

  private signJson(obj: Json): Json {
    const { userId, deviceId } = this.me();
    const sig = this.acct().sign(canonicalJson(signablePart(obj)));
    const signatures = isObj(obj.signatures) ? { ...obj.signatures } : {};
    signatures[userId] = { ...(isObj(signatures[userId]) ? signatures[userId] : {}), [`ed25519:${deviceId}`]: sig };
    return { ...obj, signatures };
  }

  /** Check `obj`'s signature by `userId`'s key `ed25519:<keyId>` with the public key `key`. */
  private verifySignature(obj: Json, userId: string, keyId: string, key: string): boolean {
    const sigs = obj.signatures;
    if (!isObj(sigs)) return false;
    const mine = sigs[userId];
    if (!isObj(mine)) return false;
    const sig = mine[`ed25519:${keyId}`];
    if (!isStr(sig)) return false;
    try {
      this.utility.ed25519_verify(key, canonicalJson(signablePart(obj)), sig);
      return true;
    } catch {
      return false;
    }
  }

  // ---------------------------------------------------------------------------------------------
  // outgoing requests

  /** Requests to send now (keys/upload, keys/query). Single flight per kind. */
  async outgoingRequests(): Promise<OutgoingRequest[]> {
    const tx = this.newTx();
    const out: OutgoingRequest[] = [];
    if (!this.uploadInFlight) {
      const body = this.buildKeysUpload(tx);
      if (body) {
        const id = this.newId();
        this.inFlight.set(id, { kind: "keys_upload" });
        this.uploadInFlight = true;
        out.push({ id, kind: "keys_upload", body: JSON.stringify(body) });
      }
    }
    const dirty = [...tx.getTracked()].filter(([, d]) => d).map(([u]) => u);
    const queried = new Set<string>();
    for (const r of this.inFlight.values()) if (r.kind === "keys_query") for (const u of r.users!.keys()) queried.add(u);
    const toQuery = dirty.filter((u) => !queried.has(u));
    if (toQuery.length) out.push(this.buildKeysQuery(toQuery));
    out.push(...this.buildKeyRequestMessages());
    out.push(...this.buildUnwedgeRequests(tx));
    await this.commit(tx);
    return out;
  }

  private buildKeysQuery(users: string[]): OutgoingRequest {
    const id = this.newId();
    const gens = new Map(users.map((u) => [u, this.dirtyGeneration.get(u) ?? 0]));
    this.inFlight.set(id, { kind: "keys_query", users: gens });
    const device_keys: Record<string, string[]> = {};
    for (const u of users) device_keys[u] = [];
    return { id, kind: "keys_query", body: JSON.stringify({ device_keys, timeout: 10_000 }) };
  }

  private otkTarget(): number {
    return Math.floor(this.acct().max_number_of_one_time_keys() / 2);
  }

  private buildKeysUpload(tx: Transaction): Json | null {
    const me = this.me();
    const account = this.acct();
    const body: Json = {};
    let changed = false;
    if (!this.accountRecord!.deviceKeysUploaded) {
      const keys = JSON.parse(account.identity_keys()) as Record<string, string>;
      body.device_keys = this.signJson({
        user_id: me.userId,
        device_id: me.deviceId,
        algorithms: [OLM_ALGORITHM, MEGOLM_ALGORITHM],
        keys: { [`curve25519:${me.deviceId}`]: keys.curve25519, [`ed25519:${me.deviceId}`]: keys.ed25519 },
      });
      this.fallbackNeeded = true;
    }
    let unpublished = Object.entries((JSON.parse(account.one_time_keys()) as { curve25519: Record<string, string> }).curve25519);
    const count = this.otkCount ?? (this.accountRecord!.deviceKeysUploaded ? null : 0);
    if (count !== null && count < this.otkTarget()) {
      const need = this.otkTarget() - count;
      if (unpublished.length < need) {
        account.generate_one_time_keys(need - unpublished.length);
        changed = true;
        unpublished = Object.entries((JSON.parse(account.one_time_keys()) as { curve25519: Record<string, string> }).curve25519);
      }
    }
    if (unpublished.length) {
      const otks: Json = {};
      for (const [id, key] of unpublished) otks[`signed_curve25519:${id}`] = this.signJson({ key });
      body.one_time_keys = otks;
    }
    if (this.fallbackNeeded) {
      let fb = Object.entries((JSON.parse(account.unpublished_fallback_key()) as { curve25519: Record<string, string> }).curve25519 ?? {});
      if (!fb.length) {
        account.generate_fallback_key();
        changed = true;
        fb = Object.entries((JSON.parse(account.unpublished_fallback_key()) as { curve25519: Record<string, string> }).curve25519 ?? {});
      }
      const fallback: Json = {};
      for (const [id, key] of fb) fallback[`signed_curve25519:${id}`] = this.signJson({ key, fallback: true });
      body.fallback_keys = fallback;
    }
    // Keys about to be published are committed before the request leaves.
    if (changed) this.saveAccount(tx);
    return Object.keys(body).length ? body : null;
  }

  /** Report a response to a request from {@link outgoingRequests} or a share/claim step. */
  async markRequestAsSent(id: string, kind: OutgoingRequest["kind"], responseJson: string): Promise<{ identityChanges: string[] }> {
    const identityChanges: string[] = [];
    const req = this.inFlight.get(id);
    this.inFlight.delete(id);
    let response: Json;
    try {
      const parsed: unknown = JSON.parse(responseJson);
      response = isObj(parsed) ? parsed : {};
    } catch {
      response = {};
    }
    const tx = this.newTx();
    switch (kind) {
      case "keys_upload":
        this.uploadInFlight = false;
        this.onKeysUploaded(tx, response);
        break;
      case "keys_query":
        this.onKeysQueried(tx, response, req?.users ?? new Map());
        this.onCrossSigningKeys(tx, response, identityChanges);
        break;
      case "keys_claim":
        this.onKeysClaimed(tx, response, req?.users ?? new Map());
        if (req?.unwedge) for (const k of req.users!.keys()) this.unwedge.set(k, "dummy");
        break;
      case "to_device":
        if (req?.share) this.onRoomKeySent(tx, req.share);
        if (req?.keyRequest) this.onKeyRequestSent(tx, req.keyRequest);
        break;
    }
    await this.commit(tx);
    return { identityChanges };
  }

  /** Report a definitive failure of a request. */
  async markRequestAsFailed(id: string, kind: OutgoingRequest["kind"], errcode: string | null, message: string): Promise<void> {
    const req = this.inFlight.get(id);
    this.inFlight.delete(id);
    const tx = this.newTx();
    if (kind === "keys_upload") {
      this.uploadInFlight = false;
      if (/already exists/i.test(message)) {
        // An earlier upload succeeded but its answer was lost: the keys are on the server.
        this.log.warn("keys/upload: server already has these one-time keys; marking them as published");
        this.onKeysUploaded(tx, {});
      } else {
        this.log.warn(`keys/upload failed (${errcode ?? "network"}); will retry`);
      }
    } else if (kind === "keys_claim" && req?.users) {
      for (const u of req.users.keys()) {
        this.failedClaims.set(u, this.now());
        if (req.unwedge) this.unwedge.delete(u);
      }
    } else {
      this.log.warn(`${kind} request failed (${errcode ?? "network"})`);
    }
    await this.commit(tx);
  }

  private onKeysUploaded(tx: Transaction, response: Json): void {
    const account = this.acct();
    account.mark_keys_as_published();
    this.fallbackNeeded = false;
    this.accountRecord = { ...this.accountRecord!, deviceKeysUploaded: true };
    this.saveAccount(tx);
    const counts = response.one_time_key_counts;
    if (isObj(counts)) {
      const n = counts.signed_curve25519;
      this.otkCount = typeof n === "number" ? n : 0;
    }
  }

  private onKeysQueried(tx: Transaction, response: Json, users: Map<string, number>): void {
    this.trustCache.clear();
    const me = this.me();
    const deviceKeys = isObj(response.device_keys) ? response.device_keys : {};
    const failures = isObj(response.failures) ? response.failures : {};
    if (Object.keys(failures).length) this.log.warn(`keys/query failures for servers: ${Object.keys(failures).join(", ")}`);
    for (const [userId, gen] of users) {
      const devices = deviceKeys[userId];
      if (!isObj(devices)) continue; // server failure or unknown user: stays dirty
      const seen = new Set<string>();
      for (const [deviceId, payload] of Object.entries(devices)) {
        const rec = this.validateDeviceKeys(userId, deviceId, payload);
        if (!rec) continue;
        seen.add(deviceId);
        if (userId === me.userId && deviceId === me.deviceId) {
          if (rec.ed25519 !== me.ed25519 || rec.curve25519 !== me.curve25519) {
            this.log.error("the server lists different identity keys for this very device; ignoring them");
          }
          continue;
        }
        const existing = tx.getDevice(userId, deviceId);
        if (existing) {
          if (existing.ed25519 !== rec.ed25519 || existing.curve25519 !== rec.curve25519) {
            this.log.warn(`device ${deviceId} of ${userId} changed its identity keys; refusing the change and keeping the known keys`);
            continue;
          }
          // Same identity keys: take the newest signatures (cross-signing adds some) and name.
          if (existing.deleted || existing.displayName !== rec.displayName || existing.keysJson !== rec.keysJson) {
            const upd: DeviceRecord = { ...existing, deleted: false, keysJson: rec.keysJson };
            if (rec.displayName !== undefined) upd.displayName = rec.displayName;
            tx.putDevice(upd);
          }
        } else {
          tx.putDevice(rec);
        }
      }
      for (const d of tx.getUserDevices(userId)) {
        if (!seen.has(d.deviceId) && !d.deleted) tx.putDevice({ ...d, deleted: true });
      }
      if (tx.isTracked(userId) && (this.dirtyGeneration.get(userId) ?? 0) === gen) tx.putTracked({ userId, dirty: false });
    }
  }

  private validateDeviceKeys(userId: string, deviceId: string, payload: unknown): DeviceRecord | null {
    const bad = (why: string): null => {
      this.log.warn(`rejected device keys of ${userId}/${deviceId}: ${why}`);
      return null;
    };
    if (!isObj(payload)) return bad("not an object");
    if (payload.user_id !== userId || payload.device_id !== deviceId) return bad("user_id/device_id do not match");
    const keys = payload.keys;
    if (!isObj(keys)) return bad("no keys");
    const ed = keys[`ed25519:${deviceId}`];
    const curve = keys[`curve25519:${deviceId}`];
    if (!isStr(ed) || !isStr(curve)) return bad("missing identity keys");
    if (!this.verifySignature(payload, userId, deviceId, ed)) return bad("bad self-signature");
    const algorithms = Array.isArray(payload.algorithms) ? payload.algorithms.filter(isStr) : [];
    const unsigned = isObj(payload.unsigned) ? payload.unsigned : {};
    const rec: DeviceRecord = {
      userId,
      deviceId,
      ed25519: ed,
      curve25519: curve,
      algorithms,
      verified: false,
      blacklisted: false,
      ignored: false,
      deleted: false,
      keysJson: JSON.stringify(payload),
      firstSeenTs: this.now(),
    };
    if (isStr(unsigned.device_display_name)) rec.displayName = unsigned.device_display_name;
    return rec;
  }

  private onKeysClaimed(tx: Transaction, response: Json, users: Map<string, number>): void {
    const otks = isObj(response.one_time_keys) ? response.one_time_keys : {};
    const claimed = new Set<string>();
    for (const [userId, devices] of Object.entries(otks)) {
      if (!isObj(devices)) continue;
      for (const [deviceId, keyMap] of Object.entries(devices)) {
        if (!isObj(keyMap)) continue;
        const device = tx.getDevice(userId, deviceId);
        if (!device) continue;
        const entry = Object.entries(keyMap).find(([k]) => k.startsWith("signed_curve25519:"));
        if (!entry || !isObj(entry[1]) || !isStr(entry[1].key)) {
          this.log.warn(`keys/claim: no signed_curve25519 key for ${userId}/${deviceId}`);
          continue;
        }
        if (!this.verifySignature(entry[1], userId, deviceId, device.ed25519)) {
          this.log.warn(`keys/claim: bad signature on the one-time key of ${userId}/${deviceId}`);
          continue;
        }
        const session = new this.olm.Session();
        try {
          session.create_outbound(this.acct(), device.curve25519, entry[1].key);
          const now = this.now();
          tx.putOlmSession({ senderKey: device.curve25519, sessionId: session.session_id(), pickle: session.pickle(this.pickleKey), createdTs: now, lastUsedTs: now });
          claimed.add(`${userId}|${deviceId}`);
          this.failedClaims.delete(`${userId}|${deviceId}`);
        } catch (e) {
          this.log.warn(`could not create an Olm session with ${userId}/${deviceId}: ${String(e)}`);
        } finally {
          session.free();
        }
      }
    }
    for (const k of users.keys()) if (!claimed.has(k)) this.failedClaims.set(k, this.now());
  }

  // ---------------------------------------------------------------------------------------------
  // sync

  /** Process the crypto-relevant parts of one sync. The token is committed later. */
  async receiveSyncChanges(input: SyncChangesInput): Promise<SyncChangesResult> {
    const me = this.me();
    const tx = this.newTx();
    const result: SyncChangesResult = emptySyncResult();

    // 1. room state: encryption, history visibility, members
    for (const room of Array.isArray(input.rooms) ? input.rooms : []) {
      if (!isObj(room) || !isStr(room.roomId)) continue;
      this.applyRoomState(tx, room.roomId, Array.isArray(room.stateEvents) ? room.stateEvents : [], result);
      // The section a room comes in (join / invite / leave) is our membership, whatever state it carries.
      if ((room.membership === "join" || room.membership === "invite") && this.myMembershipIn(tx, room.roomId) !== room.membership) {
        this.putMember(tx, { roomId: room.roomId, userId: me.userId, membership: room.membership });
      }
      if (room.membership === "leave") {
        this.putMember(tx, { roomId: room.roomId, userId: me.userId, membership: "leave" });
        if (tx.getOutbound(room.roomId)) tx.deleteOutbound(room.roomId);
      }
    }

    // 2. device lists
    const dl = isObj(input.deviceLists) ? input.deviceLists : {};
    for (const u of Array.isArray(dl.changed) ? dl.changed : []) {
      if (isStr(u) && tx.isTracked(u)) this.markDirty(tx, u);
    }
    for (const u of Array.isArray(dl.left) ? dl.left : []) {
      if (isStr(u) && u !== me.userId && tx.isTracked(u)) tx.untrack(u);
    }

    // 3. one-time keys and fallback key
    if (isObj(input.oneTimeKeyCounts)) {
      const n = input.oneTimeKeyCounts.signed_curve25519;
      this.otkCount = typeof n === "number" && n >= 0 ? n : 0;
    }
    if (Array.isArray(input.unusedFallbackKeyTypes) && this.accountRecord!.deviceKeysUploaded) {
      if (!input.unusedFallbackKeyTypes.includes("signed_curve25519")) {
        if (!this.fallbackNeeded) this.log.info("fallback key was used; rotating it");
        this.fallbackNeeded = true;
      }
    }

    // 4. to-device
    for (const ev of Array.isArray(input.toDevice) ? input.toDevice : []) {
      this.handleToDevice(tx, ev, result);
    }

    // 5. events waiting for the sessions that just arrived (deleted only with the sync token,
    // after the client emitted them)
    this.redecryptPending(tx, result, true);
    await this.commit(tx);
    return result;
  }

  /**
   * Decrypt the stored events waiting for the sessions in `result.roomKeys`. With `deferDeletes`
   * (sync processing), the waiting rows are removed only with the sync token, and the sessions are
   * remembered until then: if the process dies before the client emitted the events, the next
   * sync decrypts them again (the key's to-device message itself will not come back).
   */
  private redecryptPending(tx: Transaction, result: SyncChangesResult, deferDeletes = false): void {
    const keys = result.roomKeys.map((k) => [k.roomId, k.sessionId] as [string, string]);
    if (deferDeletes) {
      for (const [r, sid] of JSON.parse(tx.getValue(UNCONFIRMED_REDECRYPT) ?? "[]") as [string, string][]) {
        if (!keys.some(([a, b]) => a === r && b === sid)) keys.push([r, sid]);
      }
    }
    const touched: [string, string][] = [];
    for (const [roomId, sessionId] of keys) {
      const waiting = this.store.getPendingEvents(roomId, sessionId);
      if (!waiting.length) continue;
      const events = waiting.map((p) => JSON.parse(p.eventJson) as unknown);
      const results = this.decryptBatch(tx, roomId, events, false);
      const ok = results.filter((r) => r.ok);
      if (!ok.length) continue;
      if (deferDeletes) {
        this.deferred ??= this.newTx();
        for (const r of ok) this.deferred.deletePending(roomId, r.eventId);
        touched.push([roomId, sessionId]);
      } else {
        for (const r of ok) tx.deletePending(roomId, r.eventId);
      }
      result.redecrypted.push({ roomId, results: ok });
    }
    if (deferDeletes && (touched.length || tx.getValue(UNCONFIRMED_REDECRYPT))) tx.setValue(UNCONFIRMED_REDECRYPT, touched.length ? JSON.stringify(touched) : null);
  }

  /**
   * Decrypt the encrypted timeline events of every room of one sync in one call. The side effects
   * (replay records, events kept for later, key requests) are committed together with the sync
   * token by {@link commitSyncToken}: one transaction per sync instead of one per room. A crash in
   * between makes the client process the sync again, which recreates them.
   */
  decryptSyncTimelines(rooms: { roomId: string; events: unknown[] }[]): { roomId: string; results: RoomDecryptResult[] }[] {
    this.me();
    const tx = this.deferred ?? this.newTx();
    this.deferred = tx;
    const out: { roomId: string; results: RoomDecryptResult[] }[] = [];
    for (const r of Array.isArray(rooms) ? rooms : []) {
      if (!isObj(r) || !isStr(r.roomId) || !Array.isArray(r.events)) continue;
      out.push({ roomId: r.roomId, results: this.decryptBatch(tx, r.roomId, r.events, true) });
    }
    return out;
  }

  /** Commit the sync token (with the deferred timeline side effects) once the sync is fully handled. */
  async commitSyncToken(token: string): Promise<void> {
    if (!isStr(token)) throw new InvalidArgumentError("sync token must be a string");
    const tx = this.deferred ?? this.newTx();
    this.deferred = null;
    // Key-request state may have moved on since the timelines were decrypted: write the current one.
    if (tx.getValue(KEY_REQUESTS) !== this.store.getValue(KEY_REQUESTS)) this.saveKeyRequests(tx);
    if (tx.getValue(UNCONFIRMED_REDECRYPT)) tx.setValue(UNCONFIRMED_REDECRYPT, null);
    tx.syncToken = token;
    await this.commit(tx);
  }

  private markDirty(tx: Transaction, userId: string): void {
    this.dirtyGeneration.set(userId, (this.dirtyGeneration.get(userId) ?? 0) + 1);
    tx.putTracked({ userId, dirty: true });
  }

  private applyRoomState(tx: Transaction, roomId: string, events: unknown[], result: SyncChangesResult): void {
    let room = tx.getRoom(roomId) ?? { roomId, encryption: null, historyVisibility: null };
    let roomChanged = false;
    const wasEncrypted = room.encryption !== null;
    const memberUsers: { userId: string; membership: string }[] = [];
    for (const ev of events) {
      if (!isObj(ev) || !isStr(ev.type) || !isObj(ev.content) || !isStr(ev.state_key)) continue;
      if (ev.type === "m.room.encryption" && ev.state_key === "") {
        if (room.encryption === null && isStr(ev.content.algorithm)) {
          room = { ...room, encryption: ev.content };
          roomChanged = true;
        } else if (room.encryption !== null && ev.content.algorithm !== room.encryption.algorithm) {
          this.log.warn(`ignoring a change of encryption algorithm in ${roomId}: encryption cannot be turned off or changed`);
        }
      } else if (ev.type === "m.room.history_visibility" && ev.state_key === "" && isStr(ev.content.history_visibility)) {
        room = { ...room, historyVisibility: ev.content.history_visibility };
        roomChanged = true;
      } else if (ev.type === "m.room.member" && ev.state_key.startsWith("@") && isStr(ev.content.membership)) {
        this.putMember(tx, { roomId, userId: ev.state_key, membership: ev.content.membership });
        memberUsers.push({ userId: ev.state_key, membership: ev.content.membership });
      }
    }
    if (roomChanged || !tx.getRoom(roomId)) tx.putRoom(room);
    if (!wasEncrypted && room.encryption !== null) result.encryptedRooms.push({ roomId, encryption: room.encryption });
    // Track every member when the room just became encrypted, else only members whose membership
    // this sync changed (no per-sync scan of big rooms).
    if (room.encryption !== null) this.trackRoomMembers(tx, roomId, wasEncrypted ? memberUsers : null);
  }

  private trackRoomMembers(tx: Transaction, roomId: string, only: { userId: string; membership: string }[] | null = null): void {
    for (const m of only ?? tx.getMembers(roomId)) {
      if ((m.membership === "join" || m.membership === "invite") && !tx.isTracked(m.userId)) this.markDirty(tx, m.userId);
    }
  }

  // ---------------------------------------------------------------------------------------------
  // to-device

  private handleToDevice(tx: Transaction, ev: unknown, result: SyncChangesResult): void {
    if (!isObj(ev) || !isStr(ev.type) || !isStr(ev.sender) || !isObj(ev.content)) {
      result.toDeviceFailures.push({ sender: isObj(ev) && isStr(ev.sender) ? ev.sender : "", type: isObj(ev) && isStr(ev.type) ? ev.type : "", code: "malformed", message: "to-device event without type, sender or content" });
      this.log.warn("dropped a malformed to-device event (reason: malformed)");
      return;
    }
    // Re-processing a sync after a crash must not feed an Olm message to its ratchet twice (it
    // would fail and look wedged). Olm ciphertexts are unique, so their digest identifies them;
    // clear-text messages (key requests) may legitimately repeat and are idempotent anyway.
    if (ev.type === "m.room.encrypted") {
      const digest = createHash("sha256").update(canonicalJsonSafe(ev)).digest("base64");
      if (tx.hasDigest(digest)) {
        this.log.debug(`skipping to-device ${ev.type} from ${ev.sender}: already processed`);
        return;
      }
      tx.addDigest(digest);
    }
    if (WITHHELD_TYPES.has(ev.type)) this.recordWithheld(tx, ev.sender, ev.content);
    if (ev.type === "m.room_key_request") this.handleKeyRequest(ev.sender, ev.content, result);
    if (ev.type !== "m.room.encrypted") {
      result.toDevice.push({ type: ev.type, sender: ev.sender, contentJson: JSON.stringify(ev.content), senderCurve25519: null, encrypted: false });
      return;
    }
    try {
      const { plaintext, senderKey } = this.decryptOlm(tx, ev.sender, ev.content);
      const type = plaintext.type as string;
      const content = plaintext.content as Json;
      if (type === "m.room_key") {
        this.handleRoomKey(tx, senderKey, plaintext, result);
      } else if (type === "m.forwarded_room_key") {
        this.handleForwardedKey(tx, ev.sender, senderKey, content, result);
      } else {
        result.toDevice.push({ type, sender: ev.sender, contentJson: JSON.stringify(content), senderCurve25519: senderKey, encrypted: true });
      }
    } catch (e) {
      const code = e instanceof DecryptFailure ? e.code : "olm_error";
      const message = e instanceof Error ? e.message : String(e);
      this.log.warn(`failed to decrypt a to-device message from ${ev.sender} (reason: ${code}): ${message}`);
      if ((code === "olm_no_session" || code === "olm_decrypt") && isStr(ev.content.sender_key)) this.markWedged(tx, ev.sender, ev.content.sender_key);
      result.toDeviceFailures.push({ sender: ev.sender, type: ev.type, code, message });
    }
  }

  /** Remember that a sender refused (or could not) share a session with us. */
  private recordWithheld(tx: Transaction, sender: string, c: Json): void {
    if (!isStr(c.room_id) || !isStr(c.session_id) || !isStr(c.code) || c.code.length > 100) {
      this.log.warn(`ignoring malformed m.room_key.withheld from ${sender} (reason: malformed)`);
      return;
    }
    tx.setValue(`withheld:${c.room_id}|${c.session_id}`, JSON.stringify({ code: c.code, reason: isStr(c.reason) ? c.reason.slice(0, 500) : null, sender }));
  }

  private decryptOlm(tx: Transaction, sender: string, content: Json): { plaintext: Json; senderKey: string } {
    const me = this.me();
    if (content.algorithm !== OLM_ALGORITHM) throw new DecryptFailure(DecryptionFailureCode.UnknownAlgorithm, `unsupported algorithm ${String(content.algorithm)}`);
    const senderKey = content.sender_key;
    if (!isStr(senderKey) || senderKey.length > 128) throw new DecryptFailure(DecryptionFailureCode.Malformed, "missing sender_key");
    if (!isObj(content.ciphertext)) throw new DecryptFailure(DecryptionFailureCode.Malformed, "missing ciphertext");
    const mine = content.ciphertext[me.curve25519];
    if (!isObj(mine)) throw new DecryptFailure("not_for_us", "this message was not encrypted for this device");
    const type = mine.type;
    const body = mine.body;
    if ((type !== 0 && type !== 1) || !isStr(body) || body.length > MAX_CIPHERTEXT_LENGTH) throw new DecryptFailure(DecryptionFailureCode.Malformed, "bad Olm message type or body");

    const records = tx.getOlmSessions(senderKey).sort((a, b) => b.lastUsedTs - a.lastUsedTs);
    let plaintextStr: string | null = null;
    for (const rec of records) {
      const s = new this.olm.Session();
      try {
        s.unpickle(this.pickleKey, rec.pickle);
        if (type === 0 && !s.matches_inbound_from(senderKey, body)) continue;
        try {
          plaintextStr = s.decrypt(type, body);
        } catch (e) {
          if (type === 0) throw new DecryptFailure("olm_decrypt", `pre-key message matches session ${rec.sessionId} but failed to decrypt: ${String(e)}`);
          continue;
        }
        tx.putOlmSession({ ...rec, pickle: s.pickle(this.pickleKey), lastUsedTs: this.now() });
        break;
      } finally {
        s.free();
      }
    }
    if (plaintextStr === null) {
      if (type === 1) throw new DecryptFailure("olm_no_session", records.length ? "no Olm session could decrypt this message" : "no Olm session with this device");
      const s = new this.olm.Session();
      try {
        try {
          s.create_inbound_from(this.acct(), senderKey, body);
        } catch (e) {
          throw new DecryptFailure("olm_bad_prekey", `could not create an inbound Olm session: ${String(e)}`);
        }
        try {
          plaintextStr = s.decrypt(type, body);
        } catch (e) {
          throw new DecryptFailure("olm_decrypt", `pre-key message failed to decrypt: ${String(e)}`);
        }
        this.acct().remove_one_time_keys(s);
        this.saveAccount(tx);
        const now = this.now();
        tx.putOlmSession({ senderKey, sessionId: s.session_id(), pickle: s.pickle(this.pickleKey), createdTs: now, lastUsedTs: now });
      } finally {
        s.free();
      }
    }
    let plaintext: unknown;
    try {
      plaintext = JSON.parse(plaintextStr);
    } catch {
      throw new DecryptFailure(DecryptionFailureCode.Malformed, "Olm plaintext is not JSON");
    }
    if (!isObj(plaintext) || !isStr(plaintext.type) || !isObj(plaintext.content)) throw new DecryptFailure(DecryptionFailureCode.Malformed, "Olm plaintext lacks type or content");
    if (plaintext.sender !== sender) throw new DecryptFailure(DecryptionFailureCode.SenderMismatch, "plaintext sender differs from the event sender");
    if (plaintext.recipient !== me.userId) throw new DecryptFailure(DecryptionFailureCode.SenderMismatch, "plaintext recipient is not us");
    if (!isObj(plaintext.recipient_keys) || plaintext.recipient_keys.ed25519 !== me.ed25519) throw new DecryptFailure(DecryptionFailureCode.SenderMismatch, "plaintext recipient_keys is not our key");
    if (!isObj(plaintext.keys) || !isStr(plaintext.keys.ed25519)) throw new DecryptFailure(DecryptionFailureCode.Malformed, "plaintext lacks the sender's ed25519 key");
    const device = tx.getDeviceByCurve(senderKey);
    if (device && (device.userId !== sender || device.ed25519 !== plaintext.keys.ed25519)) {
      throw new DecryptFailure(DecryptionFailureCode.SenderMismatch, `keys do not match the known device ${device.userId}/${device.deviceId}`);
    }
    if (!device && tx.isTracked(sender)) {
      // An unknown device of a tracked user: refresh the user's devices so that the claimed keys are
      // checked soon (events stay "unknown_device", never "verified", until then).
      this.markDirty(tx, sender);
    }
    return { plaintext, senderKey };
  }

  private handleRoomKey(tx: Transaction, senderKey: string, plaintext: Json, result: SyncChangesResult): void {
    const c = plaintext.content as Json;
    const claimedEd = (plaintext.keys as Json).ed25519 as string;
    if (c.algorithm !== MEGOLM_ALGORITHM) {
      this.log.warn(`ignoring m.room_key with algorithm ${String(c.algorithm)} (reason: unknown_algorithm)`);
      return;
    }
    if (!isStr(c.room_id) || !isStr(c.session_id) || !isStr(c.session_key) || c.session_key.length > 4096 || c.room_id.length > MAX_ID_LENGTH) {
      this.log.warn("ignoring malformed m.room_key (reason: malformed)");
      return;
    }
    const mine = this.myMembershipIn(tx, c.room_id);
    if (mine !== "join" && mine !== "invite") {
      this.log.warn(`ignoring m.room_key for ${c.room_id}, a room we are not in (reason: unknown_room)`);
      return;
    }
    this.addInboundSession(tx, { roomId: c.room_id, senderKey, sessionId: c.session_id, sessionKey: c.session_key, claimedEd25519: claimedEd, source: "room_key", forwardingChain: [], exported: false }, result);
  }

  /** Store an inbound Megolm session unless we already have it from an earlier index. */
  private addInboundSession(
    tx: Transaction,
    s: { roomId: string; senderKey: string; sessionId: string; sessionKey: string; claimedEd25519: string; source: InboundGroupSessionRecord["source"]; forwardingChain: string[]; exported: boolean },
    result: SyncChangesResult | null,
  ): boolean {
    const session = new this.olm.InboundGroupSession();
    let keep = false;
    try {
      try {
        if (s.exported) session.import_session(s.sessionKey);
        else session.create(s.sessionKey);
      } catch (e) {
        this.log.warn(`rejected room key ${s.sessionId} (reason: malformed): ${String(e)}`);
        return false;
      }
      if (session.session_id() !== s.sessionId) {
        this.log.warn(`rejected room key: session ID mismatch (reason: malformed)`);
        return false;
      }
      const existing = tx.getInbound(s.roomId, s.senderKey, s.sessionId);
      const firstKnownIndex = session.first_known_index();
      if (existing && existing.firstKnownIndex <= firstKnownIndex) {
        this.log.debug(`already have room key ${s.sessionId} from index ${existing.firstKnownIndex}`);
        return false;
      }
      const record: InboundGroupSessionRecord = {
        roomId: s.roomId,
        senderKey: s.senderKey,
        sessionId: s.sessionId,
        pickle: session.pickle(this.pickleKey),
        claimedEd25519: s.claimedEd25519,
        forwardingChain: s.forwardingChain,
        firstKnownIndex,
        source: s.source,
        createdTs: this.now(),
      };
      tx.putInbound(record);
      // A session new to the store has no replay records yet: track them all in memory.
      this.cache.set(GroupSessionCache.key(s.roomId, s.senderKey, s.sessionId), { session, record, seen: new Map(), complete: !existing });
      keep = true;
      result?.roomKeys.push({ roomId: s.roomId, sessionId: s.sessionId, senderKey: s.senderKey });
      return true;
    } finally {
      if (!keep) session.free();
    }
  }

  // ---------------------------------------------------------------------------------------------
  // room decryption

  /** Decrypt a batch of `m.room.encrypted` events of one room. */
  async decryptRoomEvents(roomId: string, events: unknown[]): Promise<RoomDecryptResult[]> {
    this.me();
    const tx = this.newTx();
    const results = this.decryptBatch(tx, roomId, Array.isArray(events) ? events : [], true);
    await this.commit(tx);
    return results;
  }

  private decryptBatch(tx: Transaction, roomId: string, events: unknown[], keepPending: boolean): RoomDecryptResult[] {
    const out: RoomDecryptResult[] = [];
    let pendingBudget = keepPending ? MAX_PENDING_EVENTS - this.store.countPendingEvents() : 0;
    for (const ev of events) {
      const eventId = isObj(ev) && isStr(ev.event_id) ? ev.event_id : "";
      try {
        out.push(this.decryptOne(tx, roomId, ev));
      } catch (e) {
        const code = e instanceof DecryptFailure ? (e.code as DecryptionFailureCodeValue) : DecryptionFailureCode.Malformed;
        const message = e instanceof Error ? e.message : String(e);
        const content = isObj(ev) && isObj(ev.content) ? ev.content : {};
        const sessionId = isStr(content.session_id) ? content.session_id : null;
        const failure: RoomDecryptResult = { ok: false, eventId, code, message, sessionId };
        if (e instanceof DecryptFailure && e.withheldCode) failure.withheldCode = e.withheldCode;
        out.push(failure);
        const mayArrive = code === DecryptionFailureCode.MissingSession || code === DecryptionFailureCode.UnknownIndex || code === DecryptionFailureCode.Withheld;
        if (mayArrive && code !== DecryptionFailureCode.Withheld && sessionId && isStr(content.sender_key) && content.algorithm === MEGOLM_ALGORITHM) {
          this.queueKeyRequest(tx, roomId, content.sender_key, sessionId);
        }
        if (mayArrive && keepPending && sessionId && eventId) {
          if (pendingBudget > 0 && !tx.hasPending(roomId, eventId)) {
            tx.putPending({ roomId, sessionId, eventId, eventJson: JSON.stringify(ev), receivedTs: this.now() });
            pendingBudget--;
          }
        } else if (code !== DecryptionFailureCode.MissingSession) {
          this.log.warn(`could not decrypt ${eventId} in ${roomId} (reason: ${code}): ${message}`);
        }
      }
    }
    return out;
  }

  private loadInbound(tx: Transaction, roomId: string, senderKey: string, sessionId: string): LiveInboundSession | null {
    const key = GroupSessionCache.key(roomId, senderKey, sessionId);
    const live = this.cache.get(key);
    if (live) return live;
    const record = tx.getInbound(roomId, senderKey, sessionId);
    if (!record) return null;
    const session = new this.olm.InboundGroupSession();
    try {
      session.unpickle(this.pickleKey, record.pickle);
    } catch (e) {
      session.free();
      throw new InternalError(`could not unpickle inbound session ${sessionId}: ${String(e)}`);
    }
    const v = { session, record };
    this.cache.set(key, v);
    return v;
  }

  private decryptOne(tx: Transaction, roomId: string, ev: unknown): RoomDecryptResult & { ok: true } {
    const me = this.me();
    if (!isObj(ev) || !isStr(ev.event_id) || !isStr(ev.sender) || !isObj(ev.content)) throw new DecryptFailure(DecryptionFailureCode.Malformed, "event lacks event_id, sender or content");
    const c = ev.content;
    if (c.algorithm !== MEGOLM_ALGORITHM) throw new DecryptFailure(DecryptionFailureCode.UnknownAlgorithm, `unsupported algorithm ${String(c.algorithm)}`);
    if (!isStr(c.ciphertext) || !isStr(c.session_id) || !isStr(c.sender_key) || c.ciphertext.length > MAX_CIPHERTEXT_LENGTH || c.session_id.length > MAX_ID_LENGTH || c.sender_key.length > MAX_ID_LENGTH) {
      throw new DecryptFailure(DecryptionFailureCode.Malformed, "missing ciphertext, session_id or sender_key");
    }
    const live = this.loadInbound(tx, roomId, c.sender_key, c.session_id);
    if (!live) {
      const w = tx.getValue(`withheld:${roomId}|${c.session_id}`);
      if (w) {
        const { code, reason } = JSON.parse(w) as { code: string; reason: string | null };
        throw new DecryptFailure(DecryptionFailureCode.Withheld, `the sender withheld the key: ${code}${reason ? ` (${reason})` : ""}`, code);
      }
      throw new DecryptFailure(DecryptionFailureCode.MissingSession, `no session ${c.session_id} from ${c.sender_key}`);
    }
    let dec: { plaintext: string; message_index: number };
    try {
      dec = live.session.decrypt(c.ciphertext);
    } catch (e) {
      const msg = String(e instanceof Error ? e.message : e);
      if (msg.includes("UNKNOWN_MESSAGE_INDEX")) throw new DecryptFailure(DecryptionFailureCode.UnknownIndex, `unknown message index, first known index ${live.record.firstKnownIndex}`);
      throw new DecryptFailure(DecryptionFailureCode.Malformed, `Megolm decryption failed: ${msg}`);
    }
    let payload: unknown;
    try {
      payload = JSON.parse(dec.plaintext);
    } catch {
      throw new DecryptFailure(DecryptionFailureCode.Malformed, "plaintext is not JSON");
    }
    if (!isObj(payload) || !isStr(payload.type) || !isObj(payload.content)) throw new DecryptFailure(DecryptionFailureCode.Malformed, "plaintext lacks type or content");
    if (payload.room_id !== roomId) throw new DecryptFailure(DecryptionFailureCode.RoomMismatch, `decrypted room_id ${String(payload.room_id)} differs from ${roomId}`);

    // replay detection (persistent)
    const ts = typeof ev.origin_server_ts === "number" ? ev.origin_server_ts : 0;
    const mem = live.seen?.get(dec.message_index);
    const stored = mem ? { eventId: mem.eventId, originServerTs: mem.ts } : live.complete ? null : tx.getReplay(c.sender_key, c.session_id, dec.message_index);
    if (stored) {
      if (stored.eventId !== ev.event_id || stored.originServerTs !== ts) {
        throw new DecryptFailure(DecryptionFailureCode.Replay, `message index ${dec.message_index} of session ${c.session_id} was already used by ${stored.eventId}`);
      }
    } else {
      tx.putReplay({ senderKey: c.sender_key, sessionId: c.session_id, messageIndex: dec.message_index, eventId: ev.event_id, originServerTs: ts });
    }
    (live.seen ??= new Map()).set(dec.message_index, { eventId: stored?.eventId ?? ev.event_id, ts: stored?.originServerTs ?? ts });

    // sender checks and verification status, from the store (same answer after a restart)
    const rec = live.record;
    let verification: RoomDecryptResult extends infer R ? (R extends { ok: true; verification: infer V } ? V : never) : never;
    let senderDeviceId: string | null = isStr(c.device_id) ? c.device_id : null;
    let crossSigned = false;
    if (rec.source === "own" || (c.sender_key === me.curve25519 && rec.claimedEd25519 === me.ed25519)) {
      if (ev.sender !== me.userId) throw new DecryptFailure(DecryptionFailureCode.SenderMismatch, "event from another user uses our own session");
      verification = VerificationStatus.Own;
      senderDeviceId = me.deviceId;
    } else if (rec.source === "forwarded" || rec.source === "imported") {
      verification = VerificationStatus.Unauthenticated;
    } else {
      const device = this.deviceForCurve(tx, c.sender_key);
      if (!device) {
        verification = VerificationStatus.UnknownDevice;
        senderDeviceId = null; // only claimed: not reported until the device is known
      } else {
        if (device.userId !== ev.sender) throw new DecryptFailure(DecryptionFailureCode.SenderMismatch, `session belongs to ${device.userId}, event claims ${ev.sender}`);
        if (device.ed25519 !== rec.claimedEd25519) throw new DecryptFailure(DecryptionFailureCode.SenderMismatch, "the session's claimed ed25519 key differs from the device's key (possible forgery)");
        if (senderDeviceId !== null && senderDeviceId !== device.deviceId) throw new DecryptFailure(DecryptionFailureCode.SenderMismatch, "device_id differs from the device owning sender_key");
        senderDeviceId = device.deviceId;
        const trust = this.deviceTrust(tx, device);
        crossSigned = trust.crossSigned;
        verification = device.verified || trust.crossSigningVerified ? VerificationStatus.Verified : VerificationStatus.Unverified;
      }
    }
    return {
      ok: true,
      eventId: ev.event_id,
      sender: ev.sender,
      originServerTs: ts,
      type: payload.type,
      plaintextJson: dec.plaintext,
      senderCurve25519: c.sender_key,
      claimedEd25519: rec.claimedEd25519,
      senderDeviceId,
      sessionId: c.session_id,
      messageIndex: dec.message_index,
      verification,
      crossSigned,
      forwardingChain: rec.forwardingChain,
    };
  }

  // ---------------------------------------------------------------------------------------------
  // rooms and sending

  async setRoomEncryption(roomId: string, encryption: Json): Promise<void> {
    if (!isStr(encryption.algorithm)) throw new InvalidArgumentError("encryption content needs an algorithm");
    const tx = this.newTx();
    const room = tx.getRoom(roomId) ?? { roomId, encryption: null, historyVisibility: null };
    if (room.encryption === null) tx.putRoom({ ...room, encryption });
    this.trackRoomMembers(tx, roomId);
    await this.commit(tx);
  }

  async setRoomMembers(roomId: string, members: { userId: string; membership: string }[]): Promise<void> {
    const tx = this.newTx();
    const room = tx.getRoom(roomId) ?? { roomId, encryption: null, historyVisibility: null };
    tx.putRoom(room);
    for (const m of members) if (isStr(m.userId) && isStr(m.membership)) this.putMember(tx, { roomId, userId: m.userId, membership: m.membership });
    tx.setValue(`members_loaded:${roomId}`, "1");
    if (room.encryption) this.trackRoomMembers(tx, roomId);
    await this.commit(tx);
  }

  getRoomInfo(roomId: string): { encryption: Json | null; membersKnown: boolean } {
    const room = this.store.getRoom(roomId);
    return { encryption: room?.encryption ?? null, membersKnown: this.store.getValue(`members_loaded:${roomId}`) === "1" };
  }

  private requireMegolmRoom(tx: Transaction, roomId: string): Json {
    const room = tx.getRoom(roomId);
    if (!room || !room.encryption) throw new InvalidArgumentError(`room ${roomId} is not encrypted`);
    if (room.encryption.algorithm !== MEGOLM_ALGORITHM) throw new UnsupportedAlgorithmError(roomId, room.encryption.algorithm);
    return room.encryption;
  }

  /** User IDs whose devices receive the room key: joined members, and invited ones unless history is "joined" only. */
  private recipientUsers(tx: Transaction, roomId: string): string[] {
    const room = tx.getRoom(roomId);
    const withInvited = room?.historyVisibility !== "joined";
    const users = new Set<string>();
    for (const m of tx.getMembers(roomId)) {
      if (m.membership === "join" || (withInvited && m.membership === "invite")) users.add(m.userId);
    }
    users.add(this.me().userId);
    return [...users];
  }

  private recipientDevices(tx: Transaction, roomId: string, verifyDevices: boolean, onlyCrossSigned = false): { devices: DeviceRecord[]; blacklisted: DeviceRecord[]; notCrossSigned: DeviceRecord[] } {
    const notCrossSigned: DeviceRecord[] = [];
    const me = this.me();
    const out: DeviceRecord[] = [];
    const blacklisted: DeviceRecord[] = [];
    const unknown: Record<string, DeviceInfo[]> = {};
    for (const userId of this.recipientUsers(tx, roomId)) {
      for (const d of tx.getUserDevices(userId)) {
        if (d.deleted || (d.userId === me.userId && d.deviceId === me.deviceId)) continue;
        if (d.blacklisted) {
          blacklisted.push(d);
          continue;
        }
        const trust = this.deviceTrust(tx, d);
        if (onlyCrossSigned && !trust.crossSigned) {
          notCrossSigned.push(d);
          continue;
        }
        if (verifyDevices && !d.verified && !d.ignored && !trust.crossSigningVerified) (unknown[userId] ??= []).push(this.deviceInfo(tx, d));
        else out.push(d);
      }
    }
    if (Object.keys(unknown).length) throw new UnknownDevicesError(unknown);
    return { devices: out, blacklisted, notCrossSigned };
  }

  /** Next request needed before sharing the room key: keys/query, then keys/claim; or ready. */
  async prepareRoomKeyShare(roomId: string, verifyDevices: boolean, onlyCrossSigned = false): Promise<PrepareShareStep> {
    const tx = this.newTx();
    this.requireMegolmRoom(tx, roomId);
    const users = this.recipientUsers(tx, roomId);
    for (const u of users) if (!tx.isTracked(u)) this.markDirty(tx, u);
    const dirty = users.filter((u) => tx.isDirty(u));
    let step: PrepareShareStep = { ready: true };
    if (dirty.length) {
      step = { ready: false, request: this.buildKeysQuery(dirty) };
    } else {
      const { devices } = this.recipientDevices(tx, roomId, verifyDevices, onlyCrossSigned);
      const missing: Record<string, Record<string, string>> = {};
      const keys = new Map<string, number>();
      for (const d of devices) {
        const k = `${d.userId}|${d.deviceId}`;
        const failedAt = this.failedClaims.get(k);
        if (failedAt !== undefined && this.now() - failedAt < FAILED_CLAIM_RETRY_MS) continue;
        if (tx.getOlmSessions(d.curve25519).length) continue;
        (missing[d.userId] ??= {})[d.deviceId] = "signed_curve25519";
        keys.set(k, 0);
      }
      if (keys.size) {
        const id = this.newId();
        this.inFlight.set(id, { kind: "keys_claim", users: keys });
        step = { ready: false, request: { id, kind: "keys_claim", body: JSON.stringify({ one_time_keys: missing, timeout: 10_000 }) } };
      }
    }
    await this.commit(tx);
    return step;
  }

  /** Share the room's outbound session with every recipient device that lacks it; rotate first when needed. */
  async shareRoomKey(roomId: string, verifyDevices: boolean, onlyCrossSigned = false): Promise<OutgoingRequest[]> {
    const me = this.me();
    const tx = this.newTx();
    const settings = this.requireMegolmRoom(tx, roomId);
    const { devices, blacklisted, notCrossSigned } = this.recipientDevices(tx, roomId, verifyDevices, onlyCrossSigned);
    const existing = tx.getOutbound(roomId);
    const reason = existing ? this.rotationReason(existing, devices) : "no session";
    if (existing && reason) this.log.info(`rotating the room key of ${roomId}: ${reason}`);
    const outbound = !existing || reason ? this.createOutbound(tx, roomId, settings) : existing;
    const og = new this.olm.OutboundGroupSession();
    let sessionKey: string;
    try {
      og.unpickle(this.pickleKey, outbound.pickle);
      sessionKey = og.session_key();
    } finally {
      og.free();
    }
    const roomKeyContent = { algorithm: MEGOLM_ALGORITHM, room_id: roomId, session_id: outbound.sessionId, session_key: sessionKey };
    const shared = new Map(outbound.sharedWith.map((e) => [`${e.userId}|${e.deviceId}`, e]));
    const messages: { userId: string; deviceId: string; content: Json }[] = [];
    // Devices our policy excludes are told so (m.room_key.withheld), once per session.
    const withheld: { d: DeviceRecord; code: string; reason: string }[] = [];
    const exclude = (list: DeviceRecord[], code: string, reason: string): void => {
      for (const d of list) {
        const k = `${d.userId}|${d.deviceId}`;
        if (shared.get(k)?.withheldCode === code) continue;
        shared.set(k, { userId: d.userId, deviceId: d.deviceId, curve25519: d.curve25519, state: "withheld", withheldCode: code });
        withheld.push({ d, code, reason });
      }
    };
    exclude(blacklisted, "m.blacklisted", "You have been blocked by the sender.");
    exclude(notCrossSigned, "m.unverified", "Your device is not cross-signed by its owner.");
    for (const d of devices) {
      const k = `${d.userId}|${d.deviceId}`;
      if (shared.get(k)?.state === "shared") continue;
      const content = this.encryptOlm(tx, d, "m.room_key", roomKeyContent);
      if (!content) {
        if (shared.get(k)?.withheldCode !== "m.no_olm") withheld.push({ d, code: "m.no_olm", reason: "Unable to establish a secure channel." });
        shared.set(k, { userId: d.userId, deviceId: d.deviceId, curve25519: d.curve25519, state: "withheld", withheldCode: "m.no_olm" });
        continue;
      }
      shared.set(k, { userId: d.userId, deviceId: d.deviceId, curve25519: d.curve25519, state: "pending" });
      messages.push({ userId: d.userId, deviceId: d.deviceId, content });
    }
    tx.putOutbound({ ...outbound, sharedWith: [...shared.values()] });
    const requests: OutgoingRequest[] = [];
    if (withheld.length) {
      const body: Record<string, Record<string, Json>> = {};
      for (const w of withheld) {
        (body[w.d.userId] ??= {})[w.d.deviceId] = { room_id: roomId, algorithm: MEGOLM_ALGORITHM, session_id: outbound.sessionId, sender_key: me.curve25519, code: w.code, reason: w.reason, from_device: me.deviceId };
      }
      const id = this.newId();
      this.inFlight.set(id, { kind: "to_device" });
      requests.push({ id, kind: "to_device", eventType: "m.room_key.withheld", txnId: `${me.deviceId}.${id}`, body: JSON.stringify({ messages: body }) });
    }
    for (let i = 0; i < messages.length; i += TO_DEVICE_CHUNK) {
      const chunk = messages.slice(i, i + TO_DEVICE_CHUNK);
      const body: Record<string, Record<string, Json>> = {};
      for (const m of chunk) (body[m.userId] ??= {})[m.deviceId] = m.content;
      const id = this.newId();
      this.inFlight.set(id, { kind: "to_device", share: { roomId, sessionId: outbound.sessionId, devices: chunk.map((m) => [m.userId, m.deviceId]) } });
      requests.push({ id, kind: "to_device", eventType: "m.room.encrypted", txnId: `${me.deviceId}.${id}`, body: JSON.stringify({ messages: body }) });
    }
    await this.commit(tx);
    return requests;
  }

  private rotationReason(o: OutboundGroupSessionRecord, devices: DeviceRecord[]): string | null {
    if (o.messageCount >= o.rotationPeriodMsgs) return `${o.messageCount} messages sent`;
    if (this.now() - o.createdTs >= o.rotationPeriodMs) return "rotation period elapsed";
    const current = new Map(devices.map((d) => [`${d.userId}|${d.deviceId}`, d.curve25519]));
    for (const e of o.sharedWith) {
      if (e.state === "withheld") continue;
      const curve = current.get(`${e.userId}|${e.deviceId}`);
      if (curve === undefined) return `${e.userId}/${e.deviceId} is no longer a recipient`;
      if (curve !== e.curve25519) return `${e.userId}/${e.deviceId} changed keys`;
    }
    return null;
  }

  private createOutbound(tx: Transaction, roomId: string, settings: Json): OutboundGroupSessionRecord {
    const me = this.me();
    const og = new this.olm.OutboundGroupSession();
    try {
      og.create();
      const msgs = settings.rotation_period_msgs;
      const ms = settings.rotation_period_ms;
      const rec: OutboundGroupSessionRecord = {
        roomId,
        sessionId: og.session_id(),
        pickle: og.pickle(this.pickleKey),
        createdTs: this.now(),
        messageCount: 0,
        rotationPeriodMsgs: typeof msgs === "number" && msgs > 0 ? Math.min(msgs, 10_000) : DEFAULT_ROTATION_MSGS,
        rotationPeriodMs: typeof ms === "number" && ms > 0 ? Math.min(ms, DEFAULT_ROTATION_MS) : DEFAULT_ROTATION_MS,
        sharedWith: [],
      };
      tx.deleteOutbound(roomId);
      tx.putOutbound(rec);
      // Keep an inbound copy so we can read our own messages.
      this.addInboundSession(tx, { roomId, senderKey: me.curve25519, sessionId: rec.sessionId, sessionKey: og.session_key(), claimedEd25519: me.ed25519, source: "own", forwardingChain: [], exported: false }, null);
      return rec;
    } finally {
      og.free();
    }
  }

  /** Olm-encrypt a to-device payload for one device, or null when we have no Olm session with it. */
  private encryptOlm(tx: Transaction, device: DeviceRecord, type: string, content: Json): Json | null {
    const me = this.me();
    const records = tx.getOlmSessions(device.curve25519).sort((a, b) => b.lastUsedTs - a.lastUsedTs);
    const rec = records[0];
    if (!rec) return null;
    const s = new this.olm.Session();
    try {
      s.unpickle(this.pickleKey, rec.pickle);
      const payload = {
        type,
        content,
        sender: me.userId,
        sender_device: me.deviceId,
        keys: { ed25519: me.ed25519 },
        recipient: device.userId,
        recipient_keys: { ed25519: device.ed25519 },
      };
      const msg = s.encrypt(JSON.stringify(payload));
      // The ratchet moved: committed before the message leaves.
      tx.putOlmSession({ ...rec, pickle: s.pickle(this.pickleKey), lastUsedTs: this.now() });
      return { algorithm: OLM_ALGORITHM, sender_key: me.curve25519, ciphertext: { [device.curve25519]: { type: msg.type, body: msg.body } } };
    } finally {
      s.free();
    }
  }

  private onRoomKeySent(tx: Transaction, share: { roomId: string; sessionId: string; devices: [string, string][] }): void {
    const o = tx.getOutbound(share.roomId);
    if (!o || o.sessionId !== share.sessionId) return;
    const sent = new Set(share.devices.map(([u, d]) => `${u}|${d}`));
    const sharedWith: SharedWithEntry[] = o.sharedWith.map((e) => (sent.has(`${e.userId}|${e.deviceId}`) && e.state === "pending" ? { ...e, state: "shared" } : e));
    tx.putOutbound({ ...o, sharedWith });
  }

  async discardRoomKey(roomId: string): Promise<void> {
    const tx = this.newTx();
    if (tx.getOutbound(roomId)) tx.deleteOutbound(roomId);
    for (const [id, r] of this.inFlight) if (r.share?.roomId === roomId) this.inFlight.delete(id);
    await this.commit(tx);
  }

  /** Encrypt one event with the room's fully shared outbound session. */
  async encryptRoomEvent(roomId: string, eventType: string, content: Json): Promise<Json> {
    const me = this.me();
    const tx = this.newTx();
    this.requireMegolmRoom(tx, roomId);
    const o = tx.getOutbound(roomId);
    if (!o) throw new InternalError(`no outbound session for ${roomId}; share the room key first`);
    if (o.sharedWith.some((e) => e.state === "pending")) throw new InternalError(`the room key of ${roomId} is not fully shared yet`);
    const og = new this.olm.OutboundGroupSession();
    let ciphertext: string;
    try {
      og.unpickle(this.pickleKey, o.pickle);
      ciphertext = og.encrypt(JSON.stringify({ type: eventType, content, room_id: roomId }));
      tx.putOutbound({ ...o, pickle: og.pickle(this.pickleKey), messageCount: o.messageCount + 1 });
    } finally {
      og.free();
    }
    await this.commit(tx);
    return { algorithm: MEGOLM_ALGORITHM, sender_key: me.curve25519, ciphertext, session_id: o.sessionId, device_id: me.deviceId };
  }

  // ---------------------------------------------------------------------------------------------
  // cross-signing

  /** Cache of device trust, cleared whenever identities or devices change. */
  private readonly trustCache = new Map<string, { crossSigned: boolean; crossSigningVerified: boolean }>();

  private deviceInfo(tx: Transaction, d: DeviceRecord): DeviceInfo {
    return toDeviceInfo(d, this.deviceTrust(tx, d));
  }

  /** Whether the device is cross-signed by its owner, and whether we trust that owner's identity. */
  private deviceTrust(tx: Transaction, d: DeviceRecord): { crossSigned: boolean; crossSigningVerified: boolean } {
    const key = `${d.userId}|${d.deviceId}`;
    const cached = this.trustCache.get(key);
    if (cached) return cached;
    const identity = loadIdentity(tx, d.userId);
    let crossSigned = false;
    if (identity) {
      let device: unknown;
      try {
        device = JSON.parse(d.keysJson);
      } catch {
        device = null;
      }
      crossSigned = checkDeviceChain(this.olm, { master: identity.master, selfSigning: identity.selfSigning, device, userId: d.userId }).ownerSigned;
    }
    const crossSigningVerified = crossSigned && this.identityTrusted(tx, d.userId, identity);
    const r = { crossSigned, crossSigningVerified };
    this.trustCache.set(key, r);
    return r;
  }

  /** Our own identity is trusted when we hold its private master key; another user's when we verified (signed) it and it has not changed. */
  private identityTrusted(tx: Transaction, userId: string, identity: StoredIdentity | null): boolean {
    if (!identity) return false;
    const parsed = parseCrossSigningKey(identity.master, userId, "master");
    if (!parsed.ok) return false;
    const pin = loadPin(tx, userId);
    if (pin?.changedTo) return false;
    if (userId === this.me().userId) {
      const seeds = loadSeeds(tx, this.pickleKey);
      return seeds !== null && publicKeyFromSeed(this.olm, seeds.master) === parsed.publicKey;
    }
    return loadVerified(tx, userId) === parsed.publicKey;
  }

  /** Record the cross-signing keys of a `/keys/query` answer; pin first-seen master keys and report changes. */
  private onCrossSigningKeys(tx: Transaction, response: Json, changes: string[]): void {
    const masters = isObj(response.master_keys) ? response.master_keys : {};
    const ssks = isObj(response.self_signing_keys) ? response.self_signing_keys : {};
    const usks = isObj(response.user_signing_keys) ? response.user_signing_keys : {};
    for (const [userId, masterObj] of Object.entries(masters)) {
      const master = parseCrossSigningKey(masterObj, userId, "master");
      if (!master.ok) {
        this.log.warn(`ignoring the master key of ${userId}: ${master.reason}`);
        continue;
      }
      const ssk = ssks[userId];
      const usk = userId === this.me().userId ? usks[userId] : undefined;
      saveIdentity(tx, userId, { master: master.raw, selfSigning: isObj(ssk) ? ssk : null, userSigning: isObj(usk) ? usk : null });
      const pin = loadPin(tx, userId);
      if (!pin) savePin(tx, userId, { pinned: master.publicKey, changedTo: null });
      else if (pin.pinned !== master.publicKey && pin.changedTo !== master.publicKey) {
        this.log.warn(`the cross-signing identity of ${userId} changed; not trusting the new one until it is acknowledged`);
        savePin(tx, userId, { ...pin, changedTo: master.publicKey });
        changes.push(userId);
      } else if (pin.pinned === master.publicKey && pin.changedTo) {
        savePin(tx, userId, { pinned: pin.pinned, changedTo: null });
      }
    }
    this.trustCache.clear();
  }

  /** Mark users' device lists (and identities) stale so the next outgoing-requests pass queries them. */
  async refreshUsers(userIds: string[]): Promise<void> {
    const tx = this.newTx();
    // Explicitly asked for: tracked from now on (the server reports changes only for users we share rooms with).
    for (const u of userIds) if (isStr(u) && u.startsWith("@")) this.markDirty(tx, u);
    await this.commit(tx);
  }

  /** A user's cross-signing identity as we know it. */
  getUserIdentity(userId: string): { userId: string; masterKey: string | null; pinnedMasterKey: string | null; changed: boolean; verified: boolean } {
    const tx = this.newTx();
    const identity = loadIdentity(tx, userId);
    const parsed = identity ? parseCrossSigningKey(identity.master, userId, "master") : null;
    const pin = loadPin(tx, userId);
    return {
      userId,
      masterKey: parsed?.ok ? parsed.publicKey : null,
      pinnedMasterKey: pin?.pinned ?? null,
      changed: Boolean(pin?.changedTo),
      verified: this.identityTrusted(tx, userId, identity),
    };
  }

  /** Accept a changed identity of `userId` (after checking it out of band): the new master key becomes the pinned one. */
  async acknowledgeIdentityChange(userId: string): Promise<void> {
    const tx = this.newTx();
    const pin = loadPin(tx, userId);
    if (pin?.changedTo) {
      savePin(tx, userId, { pinned: pin.changedTo, changedTo: null });
      saveVerified(tx, userId, null);
    }
    this.trustCache.clear();
    await this.commit(tx);
  }

  private deviceSigner(): { deviceId: string; signWithDevice: (c: string) => string } {
    const me = this.me();
    return { deviceId: me.deviceId, signWithDevice: (c: string) => this.acct().sign(c) };
  }

  /** Our own device keys object, signed by this device (what the server publishes). */
  private ownDeviceKeys(): Json {
    const me = this.me();
    return this.signJson({
      user_id: me.userId,
      device_id: me.deviceId,
      algorithms: [OLM_ALGORITHM, MEGOLM_ALGORITHM],
      keys: { [`curve25519:${me.deviceId}`]: me.curve25519, [`ed25519:${me.deviceId}`]: me.ed25519 },
    });
  }

  /** Encrypt the three private keys for secret storage under a new key (recovery key or passphrase). */
  private async secretStorageFor(seeds: CrossSigningSeeds, passphrase?: string): Promise<{ recoveryKey: string; keyId: string; keyDescription: Json; secrets: Record<string, Json> }> {
    let privateKey: Uint8Array;
    let description: Json;
    if (passphrase) {
      const salt = randomBytes(24).toString("base64url");
      const iterations = 500_000;
      privateKey = await deriveKeyFromPassphrase(passphrase, salt, iterations);
      description = makeKeyDescription(privateKey, { passphrase: { salt, iterations } }) as Json;
    } else {
      privateKey = generateRecoveryKey().privateKey;
      description = makeKeyDescription(privateKey) as Json;
    }
    const keyId = newSecretStorageKeyId();
    const b64 = (u: Uint8Array): string => Buffer.from(u).toString("base64").replace(/=+$/, "");
    const secrets: Record<string, Json> = {};
    for (const [name, seed] of [
      ["m.cross_signing.master", seeds.master],
      ["m.cross_signing.self_signing", seeds.selfSigning],
      ["m.cross_signing.user_signing", seeds.userSigning],
    ] as const) {
      secrets[name] = { encrypted: { [keyId]: encryptSecret(b64(seed), privateKey, name) } };
    }
    const recoveryKey = encodeRecoveryKey(privateKey);
    privateKey.fill(0);
    return { recoveryKey, keyId, keyDescription: description, secrets };
  }

  /**
   * Create the three cross-signing keys (committed before anything leaves), sign this device with
   * the self-signing key, and encrypt the private keys for secret storage.
   */
  async bootstrapCrossSigning(opts: { passphrase?: string } = {}): Promise<{
    deviceSigningUpload: Json;
    signatureUpload: Json;
    recoveryKey: string;
    secretStorage: { keyId: string; keyDescription: Json; secrets: Record<string, Json> };
  }> {
    const me = this.me();
    const tx = this.newTx();
    const keys = generateCrossSigningKeys(this.olm, me.userId, this.deviceSigner());
    const seeds = { master: keys.master.seed, selfSigning: keys.selfSigning.seed, userSigning: keys.userSigning.seed };
    saveSeeds(tx, this.pickleKey, seeds);
    const signatureUpload = signDevice(this.olm, this.ownDeviceKeys(), me.userId, keys.selfSigning.seed, keys.selfSigning.publicKey);
    const ss = await this.secretStorageFor(seeds, opts.passphrase);
    // Our new identity is the pinned one.
    savePin(tx, me.userId, { pinned: keys.master.publicKey, changedTo: null });
    saveIdentity(tx, me.userId, { master: keys.master.object, selfSigning: keys.selfSigning.object, userSigning: keys.userSigning.object });
    this.markDirty(tx, me.userId);
    this.trustCache.clear();
    await this.commit(tx);
    return {
      deviceSigningUpload: deviceSigningUploadBody(keys) as unknown as Json,
      signatureUpload: signatureUpload as Json,
      recoveryKey: ss.recoveryKey,
      secretStorage: { keyId: ss.keyId, keyDescription: ss.keyDescription, secrets: ss.secrets },
    };
  }

  /**
   * Restore the cross-signing keys from secret storage on another device of the same user: decrypt
   * them with the recovery key or passphrase, check them against the published keys, store them
   * and sign this device. Throws (changing nothing) on a wrong key or mismatching secrets.
   */
  async restoreCrossSigning(input: { keyDescription: Json; keyId: string; secrets: Record<string, unknown>; recoveryKey?: string; passphrase?: string }): Promise<{ signatureUpload: Json }> {
    const me = this.me();
    const tx = this.newTx();
    const d = input.keyDescription;
    let privateKey: Uint8Array;
    if (input.recoveryKey) privateKey = decodeRecoveryKey(input.recoveryKey);
    else if (input.passphrase) {
      const pp = isObj(d.passphrase) ? d.passphrase : null;
      if (!pp || !isStr(pp.salt) || typeof pp.iterations !== "number") throw new SecretStorageError("bad_format", "this secret storage key has no passphrase");
      privateKey = await deriveKeyFromPassphrase(input.passphrase, pp.salt, pp.iterations, typeof pp.bits === "number" ? pp.bits : 256);
    } else throw new InvalidArgumentError("a recovery key or a passphrase is needed");
    try {
      if (!checkKey(privateKey, d)) throw new SecretStorageError("bad_mac", "the recovery key or passphrase does not match the secret storage key");
      const seedOf = (name: string): Uint8Array => {
        const s = input.secrets[name];
        const enc = isObj(s) && isObj(s.encrypted) ? s.encrypted[input.keyId] : undefined;
        if (!isObj(enc)) throw new SecretStorageError("bad_format", `secret ${name} is not stored under key ${input.keyId}`);
        const b = Buffer.from(decryptSecret(enc as never, privateKey, name), "base64");
        if (b.length !== 32) throw new SecretStorageError("bad_format", `secret ${name} is not a 32-byte key`);
        return new Uint8Array(b);
      };
      const seeds = { master: seedOf("m.cross_signing.master"), selfSigning: seedOf("m.cross_signing.self_signing"), userSigning: seedOf("m.cross_signing.user_signing") };
      const keys = crossSigningKeysFromSeeds(this.olm, me.userId, seeds);
      const published = loadIdentity(tx, me.userId);
      const pub = published ? parseCrossSigningKey(published.master, me.userId, "master") : null;
      const pubSsk = published?.selfSigning ? parseCrossSigningKey(published.selfSigning, me.userId, "self_signing") : null;
      if (!pub?.ok || pub.publicKey !== keys.master.publicKey || !pubSsk?.ok || pubSsk.publicKey !== keys.selfSigning.publicKey) {
        throw new SecretStorageError("bad_format", "the stored cross-signing keys do not match the keys published for this user");
      }
      saveSeeds(tx, this.pickleKey, seeds);
      const pin = loadPin(tx, me.userId);
      if (!pin || pin.pinned !== keys.master.publicKey) savePin(tx, me.userId, { pinned: keys.master.publicKey, changedTo: null });
      const signatureUpload = mergeSignatureUploads(
        signDevice(this.olm, this.ownDeviceKeys(), me.userId, keys.selfSigning.seed, keys.selfSigning.publicKey),
        // The device vouches for the master key too (as the creating device did).
        { [me.userId]: { [keys.master.publicKey]: { ...keys.master.object, signatures: { [me.userId]: { [`ed25519:${me.deviceId}`]: this.acct().sign(canonicalJson(signablePart(keys.master.object))) } } } } },
      );
      this.markDirty(tx, me.userId);
      this.trustCache.clear();
      await this.commit(tx);
      return { signatureUpload: signatureUpload as Json };
    } finally {
      privateKey.fill(0);
    }
  }

  /** Sign another user's master key with our user-signing key (after verifying them out of band). */
  async verifyUser(userId: string): Promise<{ signatureUpload: Json }> {
    const me = this.me();
    const tx = this.newTx();
    const seeds = loadSeeds(tx, this.pickleKey);
    if (!seeds) throw new InvalidArgumentError("this device has no cross-signing keys: bootstrap or restore cross-signing first");
    const identity = loadIdentity(tx, userId);
    if (!identity) throw new InvalidArgumentError(`no cross-signing identity is known for ${userId}`);
    const pin = loadPin(tx, userId);
    if (pin?.changedTo) throw new InvalidArgumentError(`the identity of ${userId} changed; acknowledge the change first`);
    const parsed = parseCrossSigningKey(identity.master, userId, "master");
    if (!parsed.ok) throw new InvalidArgumentError(`the master key of ${userId} is invalid: ${parsed.reason}`);
    const upload = signUserMaster(this.olm, identity.master, me.userId, seeds.userSigning, publicKeyFromSeed(this.olm, seeds.userSigning));
    saveVerified(tx, userId, parsed.publicKey);
    this.trustCache.clear();
    await this.commit(tx);
    return { signatureUpload: upload as Json };
  }

  // ---------------------------------------------------------------------------------------------
  // unwedging Olm sessions

  /** An Olm message from this device failed: start a new session and send it an m.dummy, at most once per device per hour. */
  private markWedged(tx: Transaction, sender: string, senderKey: string): void {
    const device = tx.getDeviceByCurve(senderKey);
    if (!device || device.userId !== sender || device.deleted) return;
    const key = `unwedged:${senderKey}`;
    const last = Number(tx.getValue(key) ?? 0);
    if (this.now() - last < UNWEDGE_INTERVAL_MS) return;
    tx.setValue(key, String(this.now()));
    this.unwedge.set(`${device.userId}|${device.deviceId}`, "claim");
    this.log.info(`Olm session with ${device.userId}/${device.deviceId} looks wedged; creating a new one`);
  }

  private buildUnwedgeRequests(tx: Transaction): OutgoingRequest[] {
    const me = this.me();
    const out: OutgoingRequest[] = [];
    const claim: Record<string, Record<string, string>> = {};
    const users = new Map<string, number>();
    const dummies: Record<string, Record<string, Json>> = {};
    let anyDummy = false;
    for (const [k, state] of this.unwedge) {
      const i = k.lastIndexOf("|");
      const userId = k.slice(0, i);
      const deviceId = k.slice(i + 1);
      const device = tx.getDevice(userId, deviceId);
      if (!device) {
        this.unwedge.delete(k);
        continue;
      }
      if (state === "claim") {
        (claim[userId] ??= {})[deviceId] = "signed_curve25519";
        users.set(k, 0);
        this.unwedge.set(k, "claiming");
      } else if (state === "dummy") {
        this.unwedge.delete(k);
        const content = this.encryptOlm(tx, device, "m.dummy", {});
        if (content) {
          (dummies[userId] ??= {})[deviceId] = content;
          anyDummy = true;
        }
      }
    }
    if (users.size) {
      const id = this.newId();
      this.inFlight.set(id, { kind: "keys_claim", users, unwedge: true });
      out.push({ id, kind: "keys_claim", body: JSON.stringify({ one_time_keys: claim, timeout: 10_000 }) });
    }
    if (anyDummy) {
      const id = this.newId();
      this.inFlight.set(id, { kind: "to_device" });
      out.push({ id, kind: "to_device", eventType: "m.room.encrypted", txnId: `${me.deviceId}.${id}`, body: JSON.stringify({ messages: dummies }) });
    }
    return out;
  }

  // ---------------------------------------------------------------------------------------------
  // key sharing among our own devices (m.room_key_request / m.forwarded_room_key)

  /** Turn automatic key requests on (the application added a key-forward listener) or off. */
  setKeyRequestsEnabled(enabled: boolean): void {
    this.keyRequestsEnabled = enabled;
  }

  private saveKeyRequests(tx: Transaction): void {
    tx.setValue(KEY_REQUESTS, JSON.stringify([...this.keyRequests.values()]));
  }

  /** Ask our other devices for a session, at most once per session. */
  private queueKeyRequest(tx: Transaction, roomId: string, senderKey: string, sessionId: string): void {
    if (!this.keyRequestsEnabled || this.keyRequests.size >= MAX_KEY_REQUESTS) return;
    for (const r of this.keyRequests.values()) if (r.roomId === roomId && r.senderKey === senderKey && r.sessionId === sessionId) return;
    const requestId = this.newId();
    this.keyRequests.set(requestId, { requestId, roomId, senderKey, sessionId, state: "unsent" });
    this.saveKeyRequests(tx);
  }

  private buildKeyRequestMessages(): OutgoingRequest[] {
    const me = this.me();
    const out: OutgoingRequest[] = [];
    const inFlight = new Set([...this.inFlight.values()].map((r) => r.keyRequest).filter(isStr));
    for (const r of this.keyRequests.values()) {
      if (r.state === "sent" || inFlight.has(r.requestId)) continue;
      const content: Json =
        r.state === "cancel"
          ? { action: "request_cancellation", request_id: r.requestId, requesting_device_id: me.deviceId }
          : { action: "request", request_id: r.requestId, requesting_device_id: me.deviceId, body: { algorithm: MEGOLM_ALGORITHM, room_id: r.roomId, sender_key: r.senderKey, session_id: r.sessionId } };
      const id = this.newId();
      this.inFlight.set(id, { kind: "to_device", keyRequest: r.requestId });
      out.push({ id, kind: "to_device", eventType: "m.room_key_request", txnId: `${me.deviceId}.${id}`, body: JSON.stringify({ messages: { [me.userId]: { "*": content } } }) });
    }
    return out;
  }

  private onKeyRequestSent(tx: Transaction, requestId: string): void {
    const r = this.keyRequests.get(requestId);
    if (!r) return;
    if (r.state === "cancel") this.keyRequests.delete(requestId);
    else r.state = "sent";
    this.saveKeyRequests(tx);
  }

  /** An `m.room_key_request` from one of our own other devices: collected for the application. */
  private handleKeyRequest(sender: string, c: Json, result: SyncChangesResult): void {
    const me = this.me();
    const deviceId = c.requesting_device_id;
    const requestId = c.request_id;
    if (sender !== me.userId || !isStr(deviceId) || !isStr(requestId) || deviceId === me.deviceId) {
      this.log.debug(`ignoring a key request from ${sender}/${String(deviceId)} (not another device of ours)`);
      return;
    }
    if (c.action === "request_cancellation" || c.action === "cancel_request") {
      result.keyRequests = result.keyRequests.filter((r) => !(r.deviceId === deviceId && r.requestId === requestId));
      result.keyRequestCancellations.push(`${deviceId}|${requestId}`);
      return;
    }
    const b = c.body;
    if (c.action !== "request" || !isObj(b) || b.algorithm !== MEGOLM_ALGORITHM || !isStr(b.room_id) || !isStr(b.sender_key) || !isStr(b.session_id)) {
      this.log.warn(`ignoring a malformed key request from ${deviceId} (reason: malformed)`);
      return;
    }
    if (!this.store.getInboundGroupSession(b.room_id, b.sender_key, b.session_id)) {
      this.log.debug(`key request ${requestId} from ${deviceId}: we do not have session ${b.session_id}`);
      return;
    }
    if (result.keyRequests.some((r) => r.deviceId === deviceId && r.requestId === requestId)) return;
    result.keyRequests.push({ requestId, deviceId, roomId: b.room_id, senderKey: b.sender_key, sessionId: b.session_id });
  }

  /** keys/claim for own devices we are about to answer and have no Olm session with. */
  prepareKeyForwarding(deviceIds: string[]): OutgoingRequest | null {
    const me = this.me();
    const missing: Record<string, string> = {};
    const keys = new Map<string, number>();
    for (const id of deviceIds) {
      const d = this.store.getDevice(me.userId, id);
      if (!d || d.deleted || d.blacklisted || this.store.getOlmSessions(d.curve25519).length) continue;
      missing[id] = "signed_curve25519";
      keys.set(`${me.userId}|${id}`, 0);
    }
    if (!keys.size) return null;
    const id = this.newId();
    this.inFlight.set(id, { kind: "keys_claim", users: keys });
    return { id, kind: "keys_claim", body: JSON.stringify({ one_time_keys: { [me.userId]: missing }, timeout: 10_000 }) };
  }

  /** Answer approved requests from our own devices with Olm-encrypted `m.forwarded_room_key`s. Blacklisted devices are never answered. */
  async answerKeyRequests(requests: IncomingKeyRequest[]): Promise<OutgoingRequest[]> {
    const me = this.me();
    const tx = this.newTx();
    const messages: Record<string, Json> = {};
    for (const r of requests) {
      const device = tx.getDevice(me.userId, r.deviceId);
      if (!device || device.deleted || device.blacklisted || r.deviceId === me.deviceId) {
        this.log.warn(`not answering key request ${r.requestId}: device ${r.deviceId} is unknown, deleted or blacklisted`);
        continue;
      }
      const rec = tx.getInbound(r.roomId, r.senderKey, r.sessionId);
      if (!rec) continue;
      const s = new this.olm.InboundGroupSession();
      let sessionKey: string;
      try {
        s.unpickle(this.pickleKey, rec.pickle);
        sessionKey = s.export_session(s.first_known_index());
      } finally {
        s.free();
      }
      const content = this.encryptOlm(tx, device, "m.forwarded_room_key", {
        algorithm: MEGOLM_ALGORITHM,
        room_id: rec.roomId,
        sender_key: rec.senderKey,
        sender_claimed_ed25519_key: rec.claimedEd25519,
        session_id: rec.sessionId,
        session_key: sessionKey,
        forwarding_curve25519_key_chain: rec.forwardingChain,
      });
      if (!content) {
        this.log.warn(`not answering key request ${r.requestId}: no Olm session with ${r.deviceId}`);
        continue;
      }
      // One message per device per request batch: later ones for the same device go in the next batch.
      if (messages[r.deviceId]) continue;
      messages[r.deviceId] = content;
    }
    await this.commit(tx);
    if (!Object.keys(messages).length) return [];
    const id = this.newId();
    this.inFlight.set(id, { kind: "to_device" });
    return [{ id, kind: "to_device", eventType: "m.room.encrypted", txnId: `${me.deviceId}.${id}`, body: JSON.stringify({ messages: { [me.userId]: messages } }) }];
  }

  /** A forwarded key: accepted only from our own verified-by-Olm devices, and only if we asked for it. */
  private handleForwardedKey(tx: Transaction, sender: string, olmSenderKey: string, c: Json, result: SyncChangesResult): void {
    const me = this.me();
    const device = tx.getDeviceByCurve(olmSenderKey);
    if (sender !== me.userId || !device || device.userId !== me.userId || device.blacklisted) {
      this.log.warn(`ignoring m.forwarded_room_key from ${sender} (reason: not one of our known devices)`);
      return;
    }
    if (c.algorithm !== MEGOLM_ALGORITHM || !isStr(c.room_id) || !isStr(c.sender_key) || !isStr(c.session_id) || !isStr(c.session_key) || !isStr(c.sender_claimed_ed25519_key)) {
      this.log.warn("ignoring malformed m.forwarded_room_key (reason: malformed)");
      return;
    }
    const req = [...this.keyRequests.values()].find((r) => r.state !== "cancel" && r.roomId === c.room_id && r.senderKey === c.sender_key && r.sessionId === c.session_id);
    if (!req) {
      this.log.warn(`ignoring m.forwarded_room_key for session ${c.session_id} that we did not request`);
      return;
    }
    const chain = Array.isArray(c.forwarding_curve25519_key_chain) ? c.forwarding_curve25519_key_chain.filter(isStr) : [];
    const added = this.addInboundSession(
      tx,
      { roomId: c.room_id, senderKey: c.sender_key, sessionId: c.session_id, sessionKey: c.session_key, claimedEd25519: c.sender_claimed_ed25519_key, source: "forwarded", forwardingChain: [...chain, olmSenderKey], exported: true },
      result,
    );
    if (!added && !tx.getInbound(c.room_id, c.sender_key, c.session_id)) return; // bad key: keep the request outstanding
    req.state = "cancel";
    this.saveKeyRequests(tx);
    result.forwardedKeys.push({ roomId: c.room_id, sessionId: c.session_id });
  }

  // ---------------------------------------------------------------------------------------------
  // key export / import (the spec's session export objects)

  /** One page of inbound sessions in the key-export format, each exported at its first known index. */
  exportRoomKeysPage(limit: number, after?: string): { keys: Json[]; next: string | null; total: number } {
    this.me();
    const records = this.store.listInboundGroupSessions(limit, after);
    const keys: Json[] = [];
    for (const r of records) {
      const s = new this.olm.InboundGroupSession();
      try {
        s.unpickle(this.pickleKey, r.pickle);
        keys.push({
          algorithm: MEGOLM_ALGORITHM,
          room_id: r.roomId,
          sender_key: r.senderKey,
          sender_claimed_keys: { ed25519: r.claimedEd25519 },
          session_id: r.sessionId,
          session_key: s.export_session(s.first_known_index()),
          forwarding_curve25519_key_chain: r.forwardingChain,
        });
      } finally {
        s.free();
      }
    }
    const last = records[records.length - 1];
    const next = records.length === limit && last ? `${last.roomId}|${last.senderKey}|${last.sessionId}` : null;
    return { keys, next, total: this.store.countInboundGroupSessions() };
  }

  /**
   * Import sessions from a key export (one transaction per call: callers pass batches). Imported
   * sessions are marked unauthenticated; an existing session is replaced only by one that starts
   * at an earlier index. Events waiting for these sessions are decrypted and returned.
   */
  async importRoomKeys(keys: unknown[]): Promise<{ imported: number; skipped: number; redecrypted: { roomId: string; results: RoomDecryptResult[] }[] }> {
    this.me();
    const tx = this.newTx();
    const result: SyncChangesResult = emptySyncResult();
    let imported = 0;
    let skipped = 0;
    for (const k of keys) {
      const ok =
        isObj(k) &&
        k.algorithm === MEGOLM_ALGORITHM &&
        isStr(k.room_id) &&
        isStr(k.sender_key) &&
        isStr(k.session_id) &&
        isStr(k.session_key) &&
        isObj(k.sender_claimed_keys) &&
        isStr(k.sender_claimed_keys.ed25519) &&
        this.addInboundSession(
          tx,
          {
            roomId: k.room_id,
            senderKey: k.sender_key,
            sessionId: k.session_id,
            sessionKey: k.session_key,
            claimedEd25519: k.sender_claimed_keys.ed25519,
            source: "imported",
            forwardingChain: Array.isArray(k.forwarding_curve25519_key_chain) ? k.forwarding_curve25519_key_chain.filter(isStr) : [],
            exported: true,
          },
          result,
        );
      if (ok) imported++;
      else skipped++;
    }
    this.redecryptPending(tx, result);
    await this.commit(tx);
    return { imported, skipped, redecrypted: result.redecrypted };
  }

  // ---------------------------------------------------------------------------------------------
  // devices

  getDevices(userId: string): DeviceInfo[] {
    const tx = this.newTx();
    return this.store.getUserDevices(userId).map((d) => this.deviceInfo(tx, d));
  }

  async setDeviceFlags(userId: string, deviceId: string, flags: { verified?: boolean; blacklisted?: boolean; ignored?: boolean }): Promise<DeviceInfo> {
    const tx = this.newTx();
    const d = tx.getDevice(userId, deviceId);
    if (!d || !d.ed25519) throw new UnknownDeviceKeysError(userId, deviceId);
    const upd: DeviceRecord = { ...d };
    if (typeof flags.verified === "boolean") upd.verified = flags.verified;
    if (typeof flags.blacklisted === "boolean") upd.blacklisted = flags.blacklisted;
    if (typeof flags.ignored === "boolean") upd.ignored = flags.ignored;
    tx.putDevice(upd);
    await this.commit(tx);
    return this.deviceInfo(tx, upd);
  }

  identity(): AccountInfo {
    return { ...this.me() };
  }

  private newId(): string {
    return randomBytes(9).toString("base64url");
  }
}

function emptySyncResult(): SyncChangesResult {
  return { toDevice: [], toDeviceFailures: [], roomKeys: [], redecrypted: [], encryptedRooms: [], keyRequests: [], keyRequestCancellations: [], forwardedKeys: [] };
}

/** At most one unwedging per device per hour. */
const UNWEDGE_INTERVAL_MS = 3600 * 1000;
/** Value key of the sessions whose waiting events were decrypted but not yet confirmed by a sync token. */
const UNCONFIRMED_REDECRYPT = "unconfirmed_redecrypt";
/** Value key of the outgoing key requests. */
const KEY_REQUESTS = "outgoing_key_requests";
/** Cap on outstanding outgoing key requests. */
const MAX_KEY_REQUESTS = 1000;

/** An `m.room_key_request` we send to our own devices. @internal */
interface OutgoingKeyRequest {
  requestId: string;
  roomId: string;
  senderKey: string;
  sessionId: string;
  state: "unsent" | "sent" | "cancel";
}

function toDeviceInfo(d: DeviceRecord, trust: { crossSigned: boolean; crossSigningVerified: boolean }): DeviceInfo {
  return {
    ...trust,
    userId: d.userId,
    deviceId: d.deviceId,
    displayName: d.displayName ?? null,
    ed25519: d.ed25519,
    curve25519: d.curve25519,
    verified: d.verified,
    blacklisted: d.blacklisted,
    ignored: d.ignored,
    deleted: d.deleted,
  };
}

function canonicalJsonSafe(v: unknown): string {
  try {
    return canonicalJson(v);
  } catch {
    return JSON.stringify(v);
  }
}

