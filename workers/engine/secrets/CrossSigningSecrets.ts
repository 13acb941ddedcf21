/**
 * Our own cross-signing keys and their copy in secret storage: bootstrap (create the three keys,
 * sign this device, encrypt the private keys under a new recovery key or passphrase; they become
 * our identity only once the server accepted their upload) and restore
 * (decrypt them on another device of the same user and check them against the published keys).
 * @internal
 */
import { randomBytes } from "node:crypto";
import type { CrossSigningBootstrap } from "../../../src/protocol/api.js";
import { InvalidArgumentError } from "../../../src/protocol/errors.js";
import type { AccountKeys } from "../account/AccountKeys.js";
import { canonicalJson, signablePart } from "../canonicalJson.js";
import { isObj, isStr, type EngineContext, type Json } from "../EngineContext.js";
import type { DeviceTracker } from "../identities/DeviceTracker.js";
import type { UserIdentities } from "../identities/UserIdentities.js";
import {
  crossSigningKeysFromSeeds,
  deviceSigningUploadBody,
  generateCrossSigningKeys,
  mergeSignatureUploads,
  parseCrossSigningKey,
  signDevice,
  type CrossSigningKeySet,
  type CrossSigningSeeds,
  type DeviceSigner,
} from "../identities/crossSigning.js";
import { hasPendingSeeds, loadIdentity, loadPendingSeeds, loadPin, saveIdentity, savePendingSeeds, savePin, saveSeeds } from "../identities/CrossSigningStore.js";
import type { Transaction } from "../Transaction.js";
import { decryptStoredSecret, deriveKeyFromPassphrase, encodeRecoveryKey, encryptSecret, generateRecoveryKey, makeKeyDescription, newSecretStorageKeyId, openSecretStorageKey, SecretStorageError } from "./secretStorage.js";

/** The secret names of the three cross-signing private keys. */
const SECRET_NAMES = ["m.cross_signing.master", "m.cross_signing.self_signing", "m.cross_signing.user_signing"] as const;

/** @internal */
export class CrossSigningSecrets {
  constructor(
    private readonly ctx: EngineContext,
    private readonly account: AccountKeys,
    private readonly devices: DeviceTracker,
    private readonly identities: UserIdentities,
  ) {}

  /**
   * Create three new cross-signing keys, sign this device with the new self-signing key, and
   * encrypt the private keys for secret storage. Nothing of our identity changes: the keys are
   * only kept (sealed, into `tx`, which the caller commits before the upload leaves) as a pending
   * bootstrap, replacing any earlier one. They become our identity with {@link commitPrepared}
   * once the server accepted the upload (or when `/keys/query` shows them published, see
   * {@link adoptIfPublished}); {@link discardPrepared} forgets them.
   */
  async prepare(tx: Transaction, opts: { passphrase?: string }): Promise<CrossSigningBootstrap> {
    const { ctx } = this;
    const me = ctx.me();
    const keys = generateCrossSigningKeys(ctx.olm, me.userId, this.deviceSigner());
    const seeds = { master: keys.master.seed, selfSigning: keys.selfSigning.seed, userSigning: keys.userSigning.seed };
    const signatureUpload = signDevice(ctx.olm, this.account.deviceKeys(), me.userId, keys.selfSigning.seed, keys.selfSigning.publicKey);
    const ss = await this.secretStorageFor(seeds, opts.passphrase);
    savePendingSeeds(tx, ctx.pickleKey, seeds);
    return {
      masterKey: keys.master.publicKey,
      deviceSigningUpload: deviceSigningUploadBody(keys) as unknown as Json,
      signatureUpload: signatureUpload as Json,
      recoveryKey: ss.recoveryKey,
      secretStorage: { keyId: ss.keyId, keyDescription: ss.keyDescription, secrets: ss.secrets },
    };
  }

  /**
   * The server accepted the upload of the prepared keys whose master public key is `masterKey`:
   * they become our identity (private keys, pinned master key, published identity). Throws,
   * changing nothing, when no such bootstrap is pending.
   */
  commitPrepared(tx: Transaction, masterKey: string): void {
    const seeds = loadPendingSeeds(tx, this.ctx.pickleKey);
    const keys = seeds ? crossSigningKeysFromSeeds(this.ctx.olm, this.ctx.me().userId, seeds, this.deviceSigner()) : null;
    if (!seeds || !keys || keys.master.publicKey !== masterKey) {
      throw new InvalidArgumentError("no prepared cross-signing keys with this master key (bootstrap again)", { masterKey });
    }
    this.adopt(tx, seeds, keys);
  }

  /** Forget a pending bootstrap (its upload failed); our identity stays as it was. */
  discardPrepared(tx: Transaction): void {
    if (hasPendingSeeds(tx)) savePendingSeeds(tx, this.ctx.pickleKey, null);
  }

  /**
   * Repair after a crash between the server accepting a bootstrap upload and
   * {@link commitPrepared}: when a `/keys/query` answer publishes our pending master key, the
   * pending keys become our identity (before the answer is checked against our pin, so that is
   * no "identity change"). Call before `UserIdentities.onKeysQueried`.
   */
  adoptIfPublished(tx: Transaction, response: Json): void {
    const me = this.ctx.me();
    const masters = isObj(response.master_keys) ? response.master_keys : {};
    if (!(me.userId in masters) || !hasPendingSeeds(tx)) return;
    const published = parseCrossSigningKey(masters[me.userId], me.userId, "master");
    const seeds = loadPendingSeeds(tx, this.ctx.pickleKey);
    if (!published.ok || !seeds) return;
    const keys = crossSigningKeysFromSeeds(this.ctx.olm, me.userId, seeds, this.deviceSigner());
    if (keys.master.publicKey !== published.publicKey) return;
    this.ctx.log.info("our pending cross-signing keys are published: adopting them");
    this.adopt(tx, seeds, keys);
  }

  /** Make `keys` our identity: private keys, pin, published identity; the pending bootstrap is gone. */
  private adopt(tx: Transaction, seeds: CrossSigningSeeds, keys: CrossSigningKeySet): void {
    const { ctx } = this;
    const me = ctx.me();
    saveSeeds(tx, ctx.pickleKey, seeds);
    savePendingSeeds(tx, ctx.pickleKey, null);
    // Our new identity is the pinned one.
    savePin(tx, me.userId, { pinned: keys.master.publicKey, changedTo: null });
    saveIdentity(tx, me.userId, { master: keys.master.object, selfSigning: keys.selfSigning.object, userSigning: keys.userSigning.object });
    this.devices.markDirty(tx, me.userId);
    this.identities.invalidate();
  }

  /** This device as the signer of our master key. */
  private deviceSigner(): DeviceSigner {
    return { deviceId: this.ctx.me().deviceId, signWithDevice: (c: string) => this.account.sign(c) };
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
    const bySecret = { "m.cross_signing.master": seeds.master, "m.cross_signing.self_signing": seeds.selfSigning, "m.cross_signing.user_signing": seeds.userSigning };
    for (const name of SECRET_NAMES) secrets[name] = { encrypted: { [keyId]: encryptSecret(b64(bySecret[name]), privateKey, name) } };
    const recoveryKey = encodeRecoveryKey(privateKey);
    privateKey.fill(0);
    return { recoveryKey, keyId, keyDescription: description, secrets };
  }

  /**
   * Hold `seeds` (from secret storage, or sent by one of our verified devices) as our private
   * cross-signing keys if their master and self-signing public keys are the ones published for us
   * (into `tx`, pinning the master key). Returns the keys, or null (nothing written) when they
   * do not match.
   */
  adoptPublished(tx: Transaction, seeds: CrossSigningSeeds): CrossSigningKeySet | null {
    const { ctx } = this;
    const me = ctx.me();
    const keys = crossSigningKeysFromSeeds(ctx.olm, me.userId, seeds);
    const published = loadIdentity(tx, me.userId);
    const pub = published ? parseCrossSigningKey(published.master, me.userId, "master") : null;
    const pubSsk = published?.selfSigning ? parseCrossSigningKey(published.selfSigning, me.userId, "self_signing") : null;
    if (!pub?.ok || pub.publicKey !== keys.master.publicKey || !pubSsk?.ok || pubSsk.publicKey !== keys.selfSigning.publicKey) return null;
    saveSeeds(tx, ctx.pickleKey, seeds);
    const pin = loadPin(tx, me.userId);
    if (!pin || pin.pinned !== keys.master.publicKey) savePin(tx, me.userId, { pinned: keys.master.publicKey, changedTo: null });
    this.devices.markDirty(tx, me.userId);
    this.identities.invalidate();
    return keys;
  }

  /**
   * Restore the cross-signing keys from secret storage: decrypt them with the recovery key or
   * passphrase, check them against the published keys, store them (into `tx`) and sign this
   * device. Throws, writing nothing, on a wrong key or mismatching secrets.
   */
  async restore(tx: Transaction, input: { keyDescription: Json; keyId: string; secrets: Record<string, unknown>; recoveryKey?: string; passphrase?: string }): Promise<{ signatureUpload: Json }> {
    const { ctx } = this;
    const me = ctx.me();
    const privateKey = await openSecretStorageKey(input.keyDescription, input);
    try {
      const seedOf = (name: string): Uint8Array => {
        const b = Buffer.from(decryptStoredSecret(input.secrets[name], input.keyId, privateKey, name), "base64");
        if (b.length !== 32) throw new SecretStorageError("bad_format", `secret ${name} is not a 32-byte key`);
        return new Uint8Array(b);
      };
      const seeds = { master: seedOf("m.cross_signing.master"), selfSigning: seedOf("m.cross_signing.self_signing"), userSigning: seedOf("m.cross_signing.user_signing") };
      const keys = this.adoptPublished(tx, seeds);
      if (!keys) throw new SecretStorageError("bad_format", "the stored cross-signing keys do not match the keys published for this user");
      const signatureUpload = mergeSignatureUploads(
        signDevice(ctx.olm, this.account.deviceKeys(), me.userId, keys.selfSigning.seed, keys.selfSigning.publicKey),
        // The device vouches for the master key too (as the creating device did).
        { [me.userId]: { [keys.master.publicKey]: { ...keys.master.object, signatures: { [me.userId]: { [`ed25519:${me.deviceId}`]: this.account.sign(canonicalJson(signablePart(keys.master.object))) } } } } },
      );
      return { signatureUpload: signatureUpload as Json };
    } finally {
      privateKey.fill(0);
    }
  }
}
