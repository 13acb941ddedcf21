/**
 * The engine's side of interactive verification: feeds the {@link VerificationMachine} the keys
 * we hold (signed device keys, the master keys we know) and applies what a finished SAS verified.
 *
 * What a verified SAS changes (the trust decision of this component):
 * - one of our own devices: signed with our self-signing key when we hold it (uploaded, so every
 *   one of our devices sees it), and marked verified locally;
 * - another user whose master key the MAC covered: their master key signed with our user-signing
 *   key when we hold it (the same as `verifyUser`), and the device marked verified locally;
 * - without cross-signing keys, the device is marked verified locally only.
 * @internal
 */
import type { VerificationActionResult } from "../../../src/protocol/verification.js";
import { loadIdentity, loadPin, loadSeeds, saveVerified } from "../identities/CrossSigningStore.js";
import { mergeSignatureUploads, parseCrossSigningKey, publicKeyFromSeed, signDevice, type SignatureUploadBody } from "../identities/crossSigning.js";
import type { DeviceTracker } from "../identities/DeviceTracker.js";
import type { UserIdentities } from "../identities/UserIdentities.js";
import type { EngineContext, Json } from "../EngineContext.js";
import type { Transaction } from "../Transaction.js";
import { VerificationMachine, type VerificationOutput, type IncomingVerificationContext } from "./VerificationMachine.js";

/** @internal */
export class Verifications {
  readonly machine: VerificationMachine;
  /** Flows whose verified keys were applied already. */
  private readonly applied = new Set<string>();

  constructor(
    private readonly ctx: EngineContext,
    private readonly devices: DeviceTracker,
    private readonly identities: UserIdentities,
  ) {
    this.machine = new VerificationMachine(ctx.olm, ctx.utility, () => ctx.me(), {
      deviceEd25519: (userId, deviceId) => {
        const d = ctx.newTx().getDevice(userId, deviceId);
        return d && !d.deleted && d.ed25519 ? d.ed25519 : null;
      },
      masterKey: (userId) => {
        const tx = ctx.newTx();
        const identity = loadIdentity(tx, userId);
        const parsed = identity ? parseCrossSigningKey(identity.master, userId, "master") : null;
        if (!parsed?.ok) return null;
        // A master key that changed since we pinned it is not verified by a SAS until acknowledged.
        if (loadPin(tx, userId)?.changedTo) return null;
        return parsed.publicKey;
      },
    }, ctx.log, ctx.now);
  }

  /** A verification event of `sender` (to-device, or in a room): the machine's answer, with trust applied. */
  handle(tx: Transaction, sender: string, type: string, content: unknown, where: IncomingVerificationContext): VerificationActionResult {
    // Make sure we have the other user's current device keys before the MAC check.
    if (!tx.isTracked(sender)) this.devices.markDirty(tx, sender);
    return this.apply(tx, this.machine.handle(sender, type, content, where));
  }

  /** Apply what flows that just passed the MAC check verified, and wrap the output. */
  apply(tx: Transaction, out: VerificationOutput): VerificationActionResult {
    const uploads: SignatureUploadBody[] = [];
    for (const u of out.updates) {
      if (!u.verified || this.applied.has(u.flowId)) continue;
      this.applied.add(u.flowId);
      const upload = this.trust(tx, u.verified);
      if (upload) uploads.push(upload);
    }
    return { messages: out.messages, updates: out.updates, signatureUpload: uploads.length ? (mergeSignatureUploads(...uploads) as Json) : null };
  }

  private trust(tx: Transaction, v: { userId: string; deviceId: string | null; masterKey: string | null }): SignatureUploadBody | null {
    const me = this.ctx.me();
    const seeds = loadSeeds(tx, this.ctx.pickleKey);
    const uploads: SignatureUploadBody[] = [];
    if (v.deviceId) {
      const d = tx.getDevice(v.userId, v.deviceId);
      if (d) {
        tx.putDevice({ ...d, verified: true });
        if (v.userId === me.userId && seeds) {
          uploads.push(signDevice(this.ctx.olm, JSON.parse(d.keysJson), me.userId, seeds.selfSigning, publicKeyFromSeed(this.ctx.olm, seeds.selfSigning)));
        }
      }
    }
    if (v.masterKey) {
      // The master key the MAC covered is the one we verified (ours: verified by another of our
      // devices; theirs: signed with our user-signing key when we hold it, so all our devices agree).
      if (v.userId !== me.userId && seeds) uploads.push(this.identities.verifyUser(tx, v.userId) as SignatureUploadBody);
      else saveVerified(tx, v.userId, v.masterKey);
    }
    this.identities.invalidate();
    this.ctx.log.info(`SAS verified ${v.userId}${v.deviceId ? `/${v.deviceId}` : ""}${v.masterKey ? " and their master key" : ""}`);
    return uploads.length ? mergeSignatureUploads(...uploads) : null;
  }
}
