/**
 * Secret sharing among our own devices (`m.secret.request` / `m.secret.send`): answering requests
 * for the cross-signing private keys and the backup key from our own *verified* devices (over
 * Olm), and asking our verified devices for the secrets we lack, accepting only answers to our
 * requests, Olm-encrypted, from our own verified devices. Never other users, never unverified
 * devices.
 * @internal
 */
import type { IncomingSecretRequest, OutgoingRequest, SyncChangesResult } from "../../../src/protocol/api.js";
import type { DeviceRecord } from "../../../src/protocol/store.js";
import type { KeyBackup } from "../backup/KeyBackup.js";
import { isObj, isStr, type EngineContext, type Json } from "../EngineContext.js";
import { loadSeeds, sealValue, unsealValue } from "../identities/CrossSigningStore.js";
import type { UserIdentities } from "../identities/UserIdentities.js";
import type { OlmSessions } from "../olm/OlmSessions.js";
import type { CrossSigningSecrets } from "../secrets/CrossSigningSecrets.js";
import type { Transaction } from "../Transaction.js";

const MASTER = "m.cross_signing.master";
const SELF_SIGNING = "m.cross_signing.self_signing";
const USER_SIGNING = "m.cross_signing.user_signing";
const BACKUP = "m.megolm_backup.v1";
/** The secrets we share and ask for. */
export const SHARED_SECRETS: readonly string[] = [MASTER, SELF_SIGNING, USER_SIGNING, BACKUP];
/** Our outstanding requests: request ID → secret name. */
const REQUESTS = "secrets:requests";
/** Cross-signing seeds received so far (sealed with the pickle key), until all three are there. */
const RECEIVED = "secrets:received";

/** @internal */
export class SecretSharing {
  constructor(
    private readonly ctx: EngineContext,
    private readonly olm: OlmSessions,
    private readonly identities: UserIdentities,
    private readonly crossSigning: CrossSigningSecrets,
    private readonly backup: KeyBackup,
  ) {}

  /** One of our own devices, known, not deleted or blacklisted, and verified (locally or by our cross-signing). */
  private verifiedOwn(tx: Transaction, userId: string, deviceId: string | null | undefined): DeviceRecord | null {
    const me = this.ctx.me();
    if (userId !== me.userId || !deviceId || deviceId === me.deviceId) return null;
    const d = tx.getDevice(me.userId, deviceId);
    if (!d || d.deleted || d.blacklisted) return null;
    return d.verified || this.identities.deviceTrust(tx, d).crossSigningVerified ? d : null;
  }

  /** An `m.secret.request` (clear or Olm) from `sender`: requests from our own other devices are reported for answering; anything else is logged and dropped. */
  onRequest(sender: string, c: Json, result: SyncChangesResult): void {
    const me = this.ctx.me();
    if (c.action !== "request" || !isStr(c.name) || !isStr(c.request_id) || !isStr(c.requesting_device_id)) return;
    if (sender !== me.userId || c.requesting_device_id === me.deviceId) {
      this.ctx.log.info(`ignoring m.secret.request for ${c.name} from ${sender} (reason: not_own_device)`);
      return;
    }
    if (!SHARED_SECRETS.includes(c.name)) return;
    if (result.secretRequests.some((r) => r.requestId === c.request_id && r.deviceId === c.requesting_device_id)) return;
    result.secretRequests.push({ deviceId: c.requesting_device_id, requestId: c.request_id, name: c.name });
  }

  /** The value of a secret we hold, or null. */
  private secretValue(tx: Transaction, name: string): string | null {
    if (name === BACKUP) return this.backup.heldKeyBase64(tx);
    const seeds = loadSeeds(tx, this.ctx.pickleKey);
    const seed = !seeds ? null : name === MASTER ? seeds.master : name === SELF_SIGNING ? seeds.selfSigning : name === USER_SIGNING ? seeds.userSigning : null;
    return seed ? Buffer.from(seed).toString("base64").replace(/=+$/, "") : null;
  }

  /**
   * Olm-encrypted `m.secret.send`s answering `requests`, only to our own verified devices (checked
   * now, not when the request arrived) and only for secrets we hold. A refusal is logged with its
   * reason (`unverified_device`, `not_held`, `no_olm_session`).
   */
  answer(tx: Transaction, requests: IncomingSecretRequest[]): OutgoingRequest[] {
    const { ctx } = this;
    const me = ctx.me();
    const out: OutgoingRequest[] = [];
    for (const r of requests) {
      const device = this.verifiedOwn(tx, me.userId, r.deviceId);
      if (!device) {
        ctx.log.warn(`not sharing ${r.name} with ${r.deviceId} (reason: unverified_device)`);
        continue;
      }
      const secret = SHARED_SECRETS.includes(r.name) ? this.secretValue(tx, r.name) : null;
      if (!secret) {
        ctx.log.info(`not sharing ${r.name} with ${r.deviceId} (reason: not_held)`);
        continue;
      }
      const content = this.olm.encrypt(tx, device, "m.secret.send", { request_id: r.requestId, secret });
      if (!content) {
        ctx.log.warn(`not sharing ${r.name} with ${r.deviceId} (reason: no_olm_session)`);
        continue;
      }
      const id = ctx.addInFlight({ kind: "to_device" });
      out.push({ id, kind: "to_device", eventType: "m.room.encrypted", txnId: ctx.txnId(id), body: JSON.stringify({ messages: { [me.userId]: { [device.deviceId]: content } } }) });
    }
    return out;
  }

  private outstanding(tx: Transaction): Record<string, string> {
    const v = tx.getValue(REQUESTS);
    return v ? (JSON.parse(v) as Record<string, string>) : {};
  }

  /**
   * `m.secret.request`s (clear, as the spec sends them) for the secrets we lack, to our own
   * verified devices; the request IDs are committed before they leave. Empty when we lack none
   * or have no verified device to ask.
   */
  request(tx: Transaction): OutgoingRequest[] {
    const { ctx } = this;
    const me = ctx.me();
    const targets = tx.getUserDevices(me.userId).filter((d) => this.verifiedOwn(tx, me.userId, d.deviceId));
    const missing = SHARED_SECRETS.filter((n) => this.secretValue(tx, n) === null);
    if (!targets.length || !missing.length) return [];
    const pending = this.outstanding(tx);
    const out: OutgoingRequest[] = [];
    for (const name of missing) {
      const requestId = ctx.newId();
      pending[requestId] = name;
      const content = { name, action: "request", requesting_device_id: me.deviceId, request_id: requestId };
      const id = ctx.addInFlight({ kind: "to_device" });
      out.push({ id, kind: "to_device", eventType: "m.secret.request", txnId: ctx.txnId(id), body: JSON.stringify({ messages: { [me.userId]: Object.fromEntries(targets.map((d) => [d.deviceId, content])) } }) });
    }
    tx.setValue(REQUESTS, JSON.stringify(pending));
    return out;
  }

  /**
   * An Olm-decrypted `m.secret.send` from `sender`'s `device`: accepted only from our own
   * verified devices and only for a request of ours. The backup key is held at once; the three
   * cross-signing keys once all arrived and match our published identity. Refusals are reported
   * in `result.toDeviceFailures` (`secret_unverified_device`, `secret_unrequested`, `secret_mismatch`).
   */
  onSend(tx: Transaction, sender: string, device: DeviceRecord | null, c: Json, result: SyncChangesResult): void {
    const refuse = (code: string, message: string): void => {
      this.ctx.log.warn(`ignoring m.secret.send from ${sender}/${device?.deviceId ?? "?"} (reason: ${code}): ${message}`);
      result.toDeviceFailures.push({ sender, type: "m.secret.send", code, message });
    };
    if (!device || !this.verifiedOwn(tx, sender, device.deviceId)) return refuse("secret_unverified_device", "not one of our own verified devices");
    const pending = this.outstanding(tx);
    const name = isStr(c.request_id) ? pending[c.request_id] : undefined;
    if (!name || !isStr(c.secret)) return refuse("secret_unrequested", "not an answer to a request of ours");
    for (const [id, n] of Object.entries(pending)) if (n === name) delete pending[id];
    tx.setValue(REQUESTS, JSON.stringify(pending));
    try {
      if (name === BACKUP) this.backup.holdKey(tx, c.secret);
      else {
        const got = { ...this.received(tx), [name]: c.secret };
        if (got[MASTER] && got[SELF_SIGNING] && got[USER_SIGNING]) {
          const seed = (n: string): Uint8Array => new Uint8Array(Buffer.from(got[n]!, "base64"));
          if (!this.crossSigning.adoptPublished(tx, { master: seed(MASTER), selfSigning: seed(SELF_SIGNING), userSigning: seed(USER_SIGNING) })) {
            tx.setValue(RECEIVED, null);
            return refuse("secret_mismatch", "the cross-signing keys sent do not match our published identity");
          }
          tx.setValue(RECEIVED, null);
        } else sealValue(tx, RECEIVED, this.ctx.pickleKey, got);
      }
    } catch (e) {
      return refuse("secret_mismatch", e instanceof Error ? e.message : String(e));
    }
    result.secretsReceived.push(name);
  }

  private received(tx: Transaction): Record<string, string> {
    return (unsealValue(tx, RECEIVED, this.ctx.pickleKey, "received secrets") as Record<string, string> | null) ?? {};
  }
}
