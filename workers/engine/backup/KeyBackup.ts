/**
 * Server-side key backup (`m.megolm_backup.v1.curve25519-aes-sha2`): the backup key we hold
 * (sealed in the store), the version we upload to, its trust, the upload batches (each session
 * marked backed up only once the server confirmed its batch) and the restore of backed-up
 * sessions (provenance `backup`, never better than `unauthenticated`).
 *
 * Trust rule: a version is trusted only if its `auth_data.public_key` is the public key of the
 * private key we hold, or `auth_data` carries a valid signature of our trusted master key or of
 * one of our own verified devices (this one included). An untrusted version is refused.
 * @internal
 */
import { InvalidArgumentError } from "../../../src/protocol/errors.js";
import type { InboundGroupSessionRecord } from "../../../src/protocol/store.js";
import { MEGOLM_ALGORITHM, type KeyBackupKeySource, type KeyBackupTrust } from "../../../src/protocol/api.js";
import type { AccountKeys } from "../account/AccountKeys.js";
import { isObj, isStr, type EngineContext, type Json } from "../EngineContext.js";
import { parseCrossSigningKey, publicKeyFromSeed, signJsonWithSeed } from "../identities/crossSigning.js";
import { loadIdentity, loadSeeds, sealValue, unsealValue } from "../identities/CrossSigningStore.js";
import type { UserIdentities } from "../identities/UserIdentities.js";
import type { InboundSessions } from "../megolm/InboundSessions.js";
import { decodeRecoveryKey, decryptStoredSecret, encryptSecret, openSecretStorageKey } from "../secrets/secretStorage.js";
import type { Transaction } from "../Transaction.js";
import {
  authDataSignable,
  authDataSignedBy,
  BACKUP_ALGORITHM_V1,
  BACKUP_SECRET_NAME,
  backupKeyFromBase64,
  backupKeyToBase64,
  backupPublicKey,
  decryptSessionData,
  encryptSessionData,
  generateBackupKey,
  KeyBackupError,
  versionPublicKey,
} from "./backupCrypto.js";

/** The backup private key we hold (sealed), with its public key. */
const KEY = "backup:key";
/** The version we upload to: `{ version, publicKey }`, or unset (backup off). */
const ACTIVE = "backup:active";

/** A batch handed out for upload, matched by ID when the server confirmed it. */
interface InFlightBatch {
  version: string;
  sessions: { roomId: string; senderKey: string; sessionId: string; firstKnownIndex: number }[];
}

/** @internal */
export class KeyBackup {
  private readonly inFlight = new Map<string, InFlightBatch>();

  constructor(
    private readonly ctx: EngineContext,
    private readonly account: AccountKeys,
    private readonly identities: UserIdentities,
    private readonly inbound: InboundSessions,
  ) {}

  /** Forget batches handed out (the account is released; their sessions are handed out again). */
  release(): void {
    this.inFlight.clear();
  }

  /** The private key we hold and its public key, or null. */
  private heldKey(tx: Transaction): { privateKey: Uint8Array; publicKey: string } | null {
    const o = unsealValue(tx, KEY, this.ctx.pickleKey, "backup key") as { k: string; p: string } | null;
    return o ? { privateKey: backupKeyFromBase64(o.k), publicKey: o.p } : null;
  }

  private saveKey(tx: Transaction, privateKey: Uint8Array): string {
    const publicKey = backupPublicKey(this.ctx.olm, privateKey);
    sealValue(tx, KEY, this.ctx.pickleKey, { k: backupKeyToBase64(privateKey), p: publicKey });
    return publicKey;
  }

  /** The backup private key we hold, unpadded base64 (the `m.megolm_backup.v1` secret), or null. */
  heldKeyBase64(tx: Transaction): string | null {
    const held = this.heldKey(tx);
    if (!held) return null;
    const b64 = backupKeyToBase64(held.privateKey);
    held.privateKey.fill(0);
    return b64;
  }

  /** Hold the backup private key `b64` (sent by one of our verified devices); `bad_key` when malformed. */
  holdKey(tx: Transaction, b64: string): void {
    const privateKey = backupKeyFromBase64(b64);
    try {
      this.saveKey(tx, privateKey);
    } finally {
      privateKey.fill(0);
    }
  }

  /** The version we upload to, or null. */
  active(tx: Transaction): { version: string; publicKey: string } | null {
    const v = tx.getValue(ACTIVE);
    return v ? (JSON.parse(v) as { version: string; publicKey: string }) : null;
  }

  /** The trust of `info` (when given), the version we upload to, and how many sessions it lacks. */
  status(tx: Transaction, info: unknown): { trust: KeyBackupTrust | null; active: string | null; remaining: number } {
    const active = this.active(tx)?.version ?? null;
    return { trust: info ? this.trust(tx, info) : null, active, remaining: active ? this.ctx.store.countInboundGroupSessionsToBackUp(active) : 0 };
  }

  /**
   * How far `info` (a `GET /room_keys/version` answer) is trusted: by the key we hold, a
   * signature of our trusted master key, or of one of our verified devices. Throws
   * `unsupported_algorithm` / `bad_format` for a version we cannot use at all.
   */
  trust(tx: Transaction, info: unknown): KeyBackupTrust {
    const publicKey = versionPublicKey(info);
    const authData = (info as Json).auth_data as Json;
    const me = this.ctx.me();
    const held = this.heldKey(tx);
    const matchesKey = held?.publicKey === publicKey;
    let signedByMaster = false;
    const own = loadIdentity(tx, me.userId);
    const master = own ? parseCrossSigningKey(own.master, me.userId, "master") : null;
    if (own && master?.ok && this.identities.identityTrusted(tx, me.userId, own)) {
      signedByMaster = authDataSignedBy(this.ctx.olm, authData, me.userId, master.publicKey, master.publicKey);
    }
    const signedByDevices: string[] = [];
    const sigs = isObj(authData.signatures) && isObj(authData.signatures[me.userId]) ? (authData.signatures[me.userId] as Json) : {};
    for (const keyId of Object.keys(sigs)) {
      if (!keyId.startsWith("ed25519:")) continue;
      const deviceId = keyId.slice("ed25519:".length);
      let ed25519: string | null = null;
      if (deviceId === me.deviceId) ed25519 = me.ed25519;
      else {
        const d = tx.getDevice(me.userId, deviceId);
        const info = d && !d.deleted ? this.identities.deviceInfo(tx, d) : null;
        if (info && (info.verified || info.crossSigningVerified)) ed25519 = info.ed25519;
      }
      if (ed25519 && authDataSignedBy(this.ctx.olm, authData, me.userId, deviceId, ed25519)) signedByDevices.push(deviceId);
    }
    return { version: isStr((info as Json).version) ? ((info as Json).version as string) : null, publicKey, matchesKey, signedByMaster, signedByDevices, trusted: matchesKey || signedByMaster || signedByDevices.length > 0 };
  }

  /**
   * A new backup key (held from now on, committed before the version is created) and the signed
   * `auth_data` of a new version: signed by this device, and by our master key when we hold it.
   * With secret storage input, also the key's `m.megolm_backup.v1` secret-storage content.
   */
  async create(tx: Transaction, ss?: { keyDescription: Json; keyId: string; recoveryKey?: string; passphrase?: string }): Promise<{ algorithm: string; authData: Json; secret: Json | null }> {
    const me = this.ctx.me();
    const privateKey = generateBackupKey();
    try {
      let secret: Json | null = null;
      if (ss) {
        const ssKey = await openSecretStorageKey(ss.keyDescription, ss);
        try {
          secret = { encrypted: { [ss.keyId]: encryptSecret(backupKeyToBase64(privateKey), ssKey, BACKUP_SECRET_NAME) } };
        } finally {
          ssKey.fill(0);
        }
      }
      const publicKey = this.saveKey(tx, privateKey);
      let authData: Json = { public_key: publicKey };
      const seeds = loadSeeds(tx, this.ctx.pickleKey);
      if (seeds) {
        const masterPub = publicKeyFromSeed(this.ctx.olm, seeds.master);
        authData = signJsonWithSeed(this.ctx.olm, authData, me.userId, seeds.master, masterPub);
      }
      const sig = this.account.sign(authDataSignable(authData));
      const sigs: Json = isObj(authData.signatures) ? authData.signatures : {};
      const mine: Json = isObj(sigs[me.userId]) ? (sigs[me.userId] as Json) : {};
      authData = { ...authData, signatures: { ...sigs, [me.userId]: { ...mine, [`ed25519:${me.deviceId}`]: sig } } };
      return { algorithm: BACKUP_ALGORITHM_V1, authData, secret };
    } finally {
      privateKey.fill(0);
    }
  }

  /**
   * Take the backup private key from `source` (secret storage opened with the recovery key or
   * passphrase, or the backup key itself in recovery-key or base64 form) and hold it. Throws
   * `bad_key`, holding nothing new, when it is not the key of `info`.
   */
  async unlock(tx: Transaction, info: unknown, source: KeyBackupKeySource): Promise<void> {
    this.ctx.me();
    const publicKey = versionPublicKey(info);
    let privateKey: Uint8Array;
    if ("backupKey" in source) privateKey = parseBackupKey(source.backupKey);
    else {
      const s = source.secretStorage;
      const ssKey = await openSecretStorageKey(s.keyDescription, s);
      try {
        privateKey = backupKeyFromBase64(decryptStoredSecret(s.secret, s.keyId, ssKey, BACKUP_SECRET_NAME));
      } finally {
        ssKey.fill(0);
      }
    }
    try {
      if (backupPublicKey(this.ctx.olm, privateKey) !== publicKey) throw new KeyBackupError("bad_key", "this key is not the key of the backup version");
      this.saveKey(tx, privateKey);
    } finally {
      privateKey.fill(0);
    }
  }

  /** Upload to `info`'s version from now on; refuses (`untrusted`) a version we do not trust. */
  activate(tx: Transaction, info: unknown): KeyBackupTrust {
    const t = this.trust(tx, info);
    if (!t.version) throw new KeyBackupError("bad_format", "the backup version has no version");
    if (!t.trusted) throw new KeyBackupError("untrusted", `backup version ${t.version} is not signed by our identity or a verified device of ours, and its key is not ours`, { version: t.version });
    tx.setValue(ACTIVE, JSON.stringify({ version: t.version, publicKey: t.publicKey }));
    return t;
  }

  /** Stop uploading (the version is gone, or was replaced on the server). Sessions keep their marks. */
  deactivate(tx: Transaction): void {
    tx.setValue(ACTIVE, null);
    this.inFlight.clear();
  }

  /**
   * The next batch of at most `limit` sessions not yet confirmed in the active version, as the
   * body of `PUT /room_keys/keys?version=`; null when backup is off or nothing is left.
   */
  nextBatch(tx: Transaction, limit: number): { id: string; version: string; body: Json; remaining: number } | null {
    this.ctx.me();
    const active = this.active(tx);
    if (!active) return null;
    const records = this.ctx.store.listInboundGroupSessionsToBackUp(active.version, Math.max(1, Math.min(1000, Math.floor(limit))));
    if (!records.length) return null;
    const rooms: Record<string, { sessions: Record<string, Json> }> = {};
    for (const r of records) (rooms[r.roomId] ??= { sessions: {} }).sessions[r.sessionId] = this.backupData(r, active.publicKey);
    const id = this.ctx.newId();
    this.inFlight.set(id, { version: active.version, sessions: records.map((r) => ({ roomId: r.roomId, senderKey: r.senderKey, sessionId: r.sessionId, firstKnownIndex: r.firstKnownIndex })) });
    return { id, version: active.version, body: { rooms }, remaining: this.ctx.store.countInboundGroupSessionsToBackUp(active.version) };
  }

  /** One session as `KeyBackupData`: the exported key encrypted to the backup public key. */
  private backupData(r: InboundGroupSessionRecord, publicKey: string): Json {
    const verified = r.senderData?.kind === "own" || r.senderData?.kind === "olm";
    const plaintext = {
      algorithm: MEGOLM_ALGORITHM,
      sender_key: r.senderKey,
      sender_claimed_keys: { ed25519: r.claimedEd25519 },
      forwarding_curve25519_key_chain: r.forwardingChain,
      session_key: this.inbound.exportKey(r),
    };
    return { first_message_index: r.firstKnownIndex, forwarded_count: r.forwardingChain.length, is_verified: verified, session_data: encryptSessionData(this.ctx.olm, publicKey, plaintext) };
  }

  /**
   * The server confirmed batch `id`: mark its sessions backed up in its version, unless the
   * session was replaced meanwhile (a better copy arrived: it goes in a later batch). Returns the
   * sessions marked; 0 for a batch this engine does not know (handed out before a restart).
   */
  batchSent(tx: Transaction, id: string): number {
    const batch = this.inFlight.get(id);
    this.inFlight.delete(id);
    if (!batch) return 0;
    let marked = 0;
    for (const s of batch.sessions) {
      const rec = tx.getInbound(s.roomId, s.senderKey, s.sessionId);
      if (!rec || rec.firstKnownIndex !== s.firstKnownIndex || rec.backedUpVersion === batch.version) continue;
      tx.putInbound({ ...rec, backedUpVersion: batch.version });
      marked++;
    }
    return marked;
  }

  /** The upload of batch `id` failed: its sessions stay unmarked and go out again. */
  batchFailed(id: string): void {
    this.inFlight.delete(id);
  }

  /**
   * Decrypt the sessions of a `GET /room_keys/keys` answer (`{ rooms: { <room>: { sessions } } }`)
   * of version `info` with the key we hold and store them (provenance `backup`). A session that
   * does not decrypt or is malformed is counted in `failed` and logged with its reason; the key
   * must be the version's (`bad_key` otherwise, nothing stored).
   */
  importSessions(tx: Transaction, info: unknown, keys: unknown): { stored: { roomId: string; sessionId: string; senderKey: string }[]; failed: number } {
    this.ctx.me();
    const publicKey = versionPublicKey(info);
    const version = isObj(info) && isStr(info.version) ? info.version : null;
    if (!version) throw new KeyBackupError("bad_format", "the backup version has no version");
    const held = this.heldKey(tx);
    if (!held || held.publicKey !== publicKey) throw new KeyBackupError("bad_key", "we hold no key for this backup version (restore with the recovery key)");
    const rooms = isObj(keys) && isObj(keys.rooms) ? keys.rooms : {};
    const backedUp = this.active(tx)?.version === version ? version : undefined;
    const stored: { roomId: string; sessionId: string; senderKey: string }[] = [];
    let failed = 0;
    try {
      for (const [roomId, room] of Object.entries(rooms)) {
        const sessions = isObj(room) && isObj(room.sessions) ? room.sessions : {};
        for (const [sessionId, data] of Object.entries(sessions)) {
          let s: Json;
          try {
            s = decryptSessionData(this.ctx.olm, held.privateKey, isObj(data) ? data.session_data : null);
          } catch (e) {
            this.ctx.log.warn(`backed-up session ${sessionId} not restored (reason: ${e instanceof KeyBackupError ? e.reason : "malformed"})`);
            failed++;
            continue;
          }
          const ok =
            s.algorithm === MEGOLM_ALGORITHM &&
            isStr(s.sender_key) &&
            isStr(s.session_key) &&
            isObj(s.sender_claimed_keys) &&
            isStr(s.sender_claimed_keys.ed25519) &&
            this.inbound.add(tx, {
              roomId,
              senderKey: s.sender_key,
              sessionId,
              sessionKey: s.session_key,
              exported: true,
              claimedEd25519: s.sender_claimed_keys.ed25519,
              forwardingChain: Array.isArray(s.forwarding_curve25519_key_chain) ? s.forwarding_curve25519_key_chain.filter(isStr) : [],
              senderData: { kind: "backup", version },
              ...(backedUp ? { backedUpVersion: backedUp } : {}),
            });
          if (ok) stored.push({ roomId, sessionId, senderKey: s.sender_key as string });
          else if (!(isStr(s.sender_key) && tx.getInbound(roomId, s.sender_key, sessionId))) {
            this.ctx.log.warn(`backed-up session ${sessionId} not restored (reason: malformed)`);
            failed++;
          }
        }
      }
    } finally {
      held.privateKey.fill(0);
    }
    return { stored, failed };
  }
}

/** A backup key given by the user: the recovery-key text form (base58, spaces) or unpadded base64. */
function parseBackupKey(text: string): Uint8Array {
  if (!isStr(text)) throw new InvalidArgumentError("the backup key must be a string");
  const compact = text.replace(/\s+/g, "");
  // 43 (44 padded) characters of base64, or 48 of base58 for the recovery-key form.
  return compact.length <= 44 ? backupKeyFromBase64(compact) : decodeRecoveryKey(text);
}
