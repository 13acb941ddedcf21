/**
 * The Olm account of this device: identity keys, signing, one-time and fallback keys, and the
 * bookkeeping of what is published on the server (`/keys/upload`).
 * @internal
 */
import type Olm from "@matrix-org/olm";
import { MEGOLM_ALGORITHM, OLM_ALGORITHM, type AccountInfo } from "../../../src/protocol/api.js";
import { EncryptionDisabledError } from "../../../src/protocol/errors.js";
import type { AccountRecord } from "../../../src/protocol/store.js";
import { canonicalJson, signablePart } from "../canonicalJson.js";
import { isObj, isStr, type EngineContext, type Json } from "../EngineContext.js";
import type { Transaction } from "../Transaction.js";

/** @internal */
export class AccountKeys {
  private account: Olm.Account | null = null;
  private record: AccountRecord | null = null;
  /** Signed one-time key count on the server, when known (from a sync or an upload answer). */
  private otkCount: number | null = null;
  /**
   * Upper bound of the one-time keys the server holds for us: the count of the last upload answer
   * (claims only lower it), or that plus what we published when the answer was lost. A sync's
   * count may have been computed before our last upload; new keys are generated only while this
   * bound plus the unpublished keys stays within what libolm keeps (it silently drops the oldest
   * private keys beyond its maximum, and peers that claimed those could never reach us).
   */
  private publishedBound: number | null = null;
  /** One-time keys in the upload that is out. */
  private uploadingOtks = 0;
  private fallbackNeeded = false;
  /** A `/keys/upload` is out: at most one at a time. */
  private uploadInFlight = false;

  constructor(private readonly ctx: EngineContext) {}

  /**
   * Unpickle the stored account or create a new one (written into `tx`), and set our identity on
   * the context. Returns whether the account already existed.
   */
  load(tx: Transaction, userId: string, deviceId: string, rec: AccountRecord | null): boolean {
    const { ctx } = this;
    const account = new ctx.olm.Account();
    if (rec) {
      account.unpickle(ctx.pickleKey, rec.pickle);
      this.record = rec;
      ctx.log.info(`loaded Olm account of ${userId}/${deviceId}`);
    } else {
      account.create();
      this.record = { userId, deviceId, pickle: account.pickle(ctx.pickleKey), deviceKeysUploaded: false, createdTs: ctx.now() };
      tx.account = this.record;
      ctx.log.info(`created new Olm account for ${userId}/${deviceId}`);
    }
    this.account = account;
    const keys = JSON.parse(account.identity_keys()) as { ed25519: string; curve25519: string };
    const ids: AccountInfo = { userId, deviceId, ed25519: keys.ed25519, curve25519: keys.curve25519 };
    ctx.setIdentity(ids);
    return rec !== null;
  }

  /** Free the libolm account and forget the upload state. */
  release(): void {
    this.account?.free();
    this.account = null;
    this.ctx.setIdentity(null);
    this.uploadInFlight = false;
  }

  /** The live libolm account; throws when none is loaded. */
  olmAccount(): Olm.Account {
    if (!this.account) throw new EncryptionDisabledError("No account is loaded; log in first.");
    return this.account;
  }

  /** Write the account's current pickle into `tx` (after its keys changed). */
  save(tx: Transaction): void {
    const rec = { ...this.record!, pickle: this.olmAccount().pickle(this.ctx.pickleKey) };
    this.record = rec;
    tx.account = rec;
  }

  /** Whether the server accepted our signed device keys. */
  get deviceKeysUploaded(): boolean {
    return this.record?.deviceKeysUploaded === true;
  }

  /** Sign a canonical-JSON string with our ed25519 key. */
  sign(message: string): string {
    return this.olmAccount().sign(message);
  }

  /** `obj` with our device's signature added. */
  signJson(obj: Json): Json {
    const { userId, deviceId } = this.ctx.me();
    const sig = this.sign(canonicalJson(signablePart(obj)));
    const signatures = isObj(obj.signatures) ? { ...obj.signatures } : {};
    signatures[userId] = { ...(isObj(signatures[userId]) ? signatures[userId] : {}), [`ed25519:${deviceId}`]: sig };
    return { ...obj, signatures };
  }

  /** Our own device keys object, signed by this device (what the server publishes). */
  deviceKeys(): Json {
    const me = this.ctx.me();
    return this.signJson({
      user_id: me.userId,
      device_id: me.deviceId,
      algorithms: [OLM_ALGORITHM, MEGOLM_ALGORITHM],
      keys: { [`curve25519:${me.deviceId}`]: me.curve25519, [`ed25519:${me.deviceId}`]: me.ed25519 },
    });
  }

  /** The one-time key count and unused fallback key types a sync reported. */
  onSyncCounts(oneTimeKeyCounts: unknown, unusedFallbackKeyTypes: unknown): void {
    if (isObj(oneTimeKeyCounts)) {
      const n = oneTimeKeyCounts.signed_curve25519;
      this.otkCount = typeof n === "number" && n >= 0 ? n : 0;
      if (this.publishedBound !== null && this.otkCount > this.publishedBound) this.publishedBound = this.otkCount;
    }
    if (Array.isArray(unusedFallbackKeyTypes) && this.deviceKeysUploaded) {
      if (!unusedFallbackKeyTypes.includes("signed_curve25519")) {
        if (!this.fallbackNeeded) this.ctx.log.info("fallback key was used; rotating it");
        this.fallbackNeeded = true;
      }
    }
  }

  private otkTarget(): number {
    return Math.floor(this.olmAccount().max_number_of_one_time_keys() / 2);
  }

  /**
   * The `/keys/upload` request, if anything is to be published and no upload is out. Keys about
   * to be published are written into `tx`, which the caller commits before the request leaves.
   */
  buildUploadRequest(tx: Transaction): { id: string; body: Json } | null {
    if (this.uploadInFlight) return null;
    const body = this.buildUploadBody(tx);
    if (!body) return null;
    this.uploadInFlight = true;
    return { id: this.ctx.addInFlight({ kind: "keys_upload" }), body };
  }

  private buildUploadBody(tx: Transaction): Json | null {
    const account = this.olmAccount();
    const body: Json = {};
    let changed = false;
    if (!this.record!.deviceKeysUploaded) {
      body.device_keys = this.deviceKeys();
      this.fallbackNeeded = true;
    }
    let unpublished = Object.entries((JSON.parse(account.one_time_keys()) as { curve25519: Record<string, string> }).curve25519);
    const count = this.otkCount ?? (this.record!.deviceKeysUploaded ? null : 0);
    if (count !== null && count < this.otkTarget()) {
      const need = this.otkTarget() - count;
      const room = account.max_number_of_one_time_keys() - Math.max(count, this.publishedBound ?? 0) - unpublished.length;
      const generate = Math.min(need - unpublished.length, room);
      if (generate > 0) {
        account.generate_one_time_keys(generate);
        changed = true;
        unpublished = Object.entries((JSON.parse(account.one_time_keys()) as { curve25519: Record<string, string> }).curve25519);
      }
    }
    this.uploadingOtks = unpublished.length;
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
    if (changed) this.save(tx);
    return Object.keys(body).length ? body : null;
  }

  /** The server accepted an upload (or already had its keys): mark them published. */
  onUploaded(tx: Transaction, response: Json): void {
    this.uploadInFlight = false;
    const account = this.olmAccount();
    account.mark_keys_as_published();
    this.fallbackNeeded = false;
    this.record = { ...this.record!, deviceKeysUploaded: true };
    this.save(tx);
    const counts = response.one_time_key_counts;
    if (isObj(counts)) {
      const n = counts.signed_curve25519;
      this.otkCount = typeof n === "number" ? n : 0;
      this.publishedBound = this.otkCount;
    } else if (this.publishedBound !== null) {
      this.publishedBound += this.uploadingOtks;
    }
    this.uploadingOtks = 0;
  }

  /** An upload failed; "already exists" means an earlier one succeeded and its answer was lost. */
  onUploadFailed(tx: Transaction, errcode: string | null, message: string): void {
    this.uploadInFlight = false;
    if (/already exists/i.test(message)) {
      this.ctx.log.warn("keys/upload: server already has these one-time keys; marking them as published");
      this.onUploaded(tx, {});
    } else {
      this.ctx.log.warn(`keys/upload failed (${errcode ?? "network"}); will retry`);
    }
  }

  /** Check `obj`'s signature by `userId`'s key `ed25519:<keyId>` with the public key `key`. */
  verifySignature(obj: Json, userId: string, keyId: string, key: string): boolean {
    const sigs = obj.signatures;
    if (!isObj(sigs)) return false;
    const mine = sigs[userId];
    if (!isObj(mine)) return false;
    const sig = mine[`ed25519:${keyId}`];
    if (!isStr(sig)) return false;
    try {
      this.ctx.utility.ed25519_verify(key, canonicalJson(signablePart(obj)), sig);
      return true;
    } catch {
      return false;
    }
  }
}
