/**
 * Cross-signing identities of users: master keys pinned on first sight (changes reported, not
 * trusted until acknowledged), the chain master → self-signing → device, our verification of
 * other users (master signed by our user-signing key), and the trust of a device that follows.
 * @internal
 */
import type { DeviceInfo, UserIdentityInfo } from "../../../src/protocol/api.js";
import { InvalidArgumentError } from "../../../src/protocol/errors.js";
import type { DeviceRecord } from "../../../src/protocol/store.js";
import { isObj, type EngineContext, type Json } from "../EngineContext.js";
import type { Transaction } from "../Transaction.js";
import { checkDeviceChain, parseCrossSigningKey, publicKeyFromSeed, signUserMaster, verifyJsonSignature } from "./crossSigning.js";
import { loadIdentity, loadPin, loadSeeds, loadVerified, saveIdentity, savePin, saveVerified, type StoredIdentity } from "./CrossSigningStore.js";

/** What cross-signing says of one device. @internal */
export interface DeviceTrust {
  /** The device is signed by its owner's self-signing key, which the owner's master key signed. */
  crossSigned: boolean;
  /** …and we trust that owner's master key (our own: we hold its private key; another user's: we verified it). */
  crossSigningVerified: boolean;
}

/** @internal */
export class UserIdentities {
  /** Device trust by `user|device`, cleared whenever identities or devices change. */
  private readonly trustCache = new Map<string, DeviceTrust>();

  constructor(private readonly ctx: EngineContext) {
    ctx.onCommit((tx) => {
      if (tx.wroteDevices) this.trustCache.clear();
    });
  }

  /** Drop cached trust (identities, pins, seeds or devices changed). */
  invalidate(): void {
    this.trustCache.clear();
  }

  /** Whether the device is cross-signed by its owner, and whether we trust that owner's identity. */
  deviceTrust(tx: Transaction, d: DeviceRecord): DeviceTrust {
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
      crossSigned = checkDeviceChain(this.ctx.olm, { master: identity.master, selfSigning: identity.selfSigning, device, userId: d.userId }).ownerSigned;
    }
    const crossSigningVerified = crossSigned && this.identityTrusted(tx, d.userId, identity);
    const r = { crossSigned, crossSigningVerified };
    this.trustCache.set(key, r);
    return r;
  }

  /** The public view of a device record, with its cross-signing trust. */
  deviceInfo(tx: Transaction, d: DeviceRecord): DeviceInfo {
    return {
      ...this.deviceTrust(tx, d),
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

  /** Our own identity is trusted when we hold its private master key; another user's when we verified (signed) it and it has not changed. */
  identityTrusted(tx: Transaction, userId: string, identity: StoredIdentity | null): boolean {
    if (!identity) return false;
    const parsed = parseCrossSigningKey(identity.master, userId, "master");
    if (!parsed.ok) return false;
    const pin = loadPin(tx, userId);
    if (pin?.changedTo) return false;
    if (userId === this.ctx.me().userId) {
      const seeds = loadSeeds(tx, this.ctx.pickleKey);
      if (seeds !== null && publicKeyFromSeed(this.ctx.olm, seeds.master) === parsed.publicKey) return true;
      // Without the private keys: our master key verified by SAS with another of our devices.
    }
    return loadVerified(tx, userId) === parsed.publicKey;
  }

  /**
   * Whether another user's master key object carries a valid signature of our user-signing key,
   * which our trusted master key signed: the chain our other devices (or we, earlier) uploaded
   * when verifying that user, as the server returns it in `/keys/query`.
   */
  private signedByOurUserSigningKey(tx: Transaction, masterObj: unknown): boolean {
    const me = this.ctx.me().userId;
    const own = loadIdentity(tx, me);
    if (!own?.userSigning || !this.identityTrusted(tx, me, own)) return false;
    const ownMaster = parseCrossSigningKey(own.master, me, "master");
    const usk = parseCrossSigningKey(own.userSigning, me, "user_signing");
    if (!ownMaster.ok || !usk.ok) return false;
    if (!verifyJsonSignature(this.ctx.olm, own.userSigning, me, ownMaster.publicKey, ownMaster.publicKey)) return false;
    return verifyJsonSignature(this.ctx.olm, masterObj, me, usk.publicKey, usk.publicKey);
  }

  /**
   * Users among `userIds` whose identity we had verified and that changed since: sending to them
   * stops until the change is acknowledged (or they are verified again).
   */
  verifiedIdentityChanges(tx: Transaction, userIds: string[]): string[] {
    return userIds.filter((u) => {
      const pin = loadPin(tx, u);
      return pin?.changedTo != null && loadVerified(tx, u) === pin.pinned;
    });
  }

  /** Record the cross-signing keys of a `/keys/query` answer; pin first-seen master keys and push the users whose identity changed. */
  onKeysQueried(tx: Transaction, response: Json, changes: string[]): void {
    const masters = isObj(response.master_keys) ? response.master_keys : {};
    const ssks = isObj(response.self_signing_keys) ? response.self_signing_keys : {};
    const usks = isObj(response.user_signing_keys) ? response.user_signing_keys : {};
    // Our own identity first: another user's trust is read through our user-signing key.
    const me = this.ctx.me().userId;
    const entries = Object.entries(masters).sort(([a], [b]) => (a === me ? -1 : b === me ? 1 : 0));
    for (const [userId, masterObj] of entries) {
      const master = parseCrossSigningKey(masterObj, userId, "master");
      if (!master.ok) {
        this.ctx.log.warn(`ignoring the master key of ${userId}: ${master.reason}`);
        continue;
      }
      const ssk = ssks[userId];
      const usk = userId === this.ctx.me().userId ? usks[userId] : undefined;
      saveIdentity(tx, userId, { master: master.raw, selfSigning: isObj(ssk) ? ssk : null, userSigning: isObj(usk) ? usk : null });
      const pin = loadPin(tx, userId);
      if (!pin) savePin(tx, userId, { pinned: master.publicKey, changedTo: null });
      else if (pin.pinned !== master.publicKey && pin.changedTo !== master.publicKey) {
        this.ctx.log.warn(`the cross-signing identity of ${userId} changed; not trusting the new one until it is acknowledged`);
        savePin(tx, userId, { ...pin, changedTo: master.publicKey });
        changes.push(userId);
      } else if (pin.pinned === master.publicKey && pin.changedTo) {
        savePin(tx, userId, { pinned: pin.pinned, changedTo: null });
      }
      // A user one of our devices verified (their master key signed by our user-signing key) is
      // verified here too; remembered, so that a later change of their identity blocks sending.
      if (userId !== me && !loadPin(tx, userId)?.changedTo && loadVerified(tx, userId) !== master.publicKey && this.signedByOurUserSigningKey(tx, master.raw)) {
        saveVerified(tx, userId, master.publicKey);
        this.ctx.log.info(`${userId} is verified through our user-signing key`);
      }
    }
    this.trustCache.clear();
  }

  /** A user's cross-signing identity as we know it. */
  getUserIdentity(tx: Transaction, userId: string): UserIdentityInfo {
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

  /** Accept a changed identity of `userId`: the new master key becomes the pinned one, and our verification of the old one lapses. */
  acknowledgeIdentityChange(tx: Transaction, userId: string): void {
    const pin = loadPin(tx, userId);
    if (pin?.changedTo) {
      savePin(tx, userId, { pinned: pin.changedTo, changedTo: null });
      saveVerified(tx, userId, null);
    }
    this.trustCache.clear();
  }

  /** Sign another user's master key with our user-signing key; returns the `/keys/signatures/upload` body. */
  verifyUser(tx: Transaction, userId: string): Json {
    const me = this.ctx.me();
    const seeds = loadSeeds(tx, this.ctx.pickleKey);
    if (!seeds) throw new InvalidArgumentError("this device has no cross-signing keys: bootstrap or restore cross-signing first");
    const identity = loadIdentity(tx, userId);
    if (!identity) throw new InvalidArgumentError(`no cross-signing identity is known for ${userId}`);
    const pin = loadPin(tx, userId);
    if (pin?.changedTo) throw new InvalidArgumentError(`the identity of ${userId} changed; acknowledge the change first`);
    const parsed = parseCrossSigningKey(identity.master, userId, "master");
    if (!parsed.ok) throw new InvalidArgumentError(`the master key of ${userId} is invalid: ${parsed.reason}`);
    const upload = signUserMaster(this.ctx.olm, identity.master, me.userId, seeds.userSigning, publicKeyFromSeed(this.ctx.olm, seeds.userSigning));
    saveVerified(tx, userId, parsed.publicKey);
    this.trustCache.clear();
    return upload as Json;
  }
}
