/**
 * Olm sessions with other devices: to-device encryption and decryption, and new outbound sessions
 * from claimed one-time keys.
 * @internal
 */
import { DecryptionFailureCode, OLM_ALGORITHM } from "../../../src/protocol/api.js";
import type { DeviceRecord } from "../../../src/protocol/store.js";
import type { AccountKeys } from "../account/AccountKeys.js";
import { DecryptFailure, MAX_CIPHERTEXT_LENGTH } from "../DecryptFailure.js";
import { isObj, isStr, type EngineContext, type Json } from "../EngineContext.js";
import type { DeviceTracker } from "../identities/DeviceTracker.js";
import type { Transaction } from "../Transaction.js";

/** A decrypted Olm message and what was authenticated about its sender. @internal */
export interface OlmDecrypted {
  /** The plaintext: `type`, `content`, `sender`, `keys.ed25519` checked to be present. */
  plaintext: Json;
  /** The Olm channel's curve25519 key (authenticated by the ratchet). */
  senderKey: string;
  /** The authenticated sender's device owning `senderKey`, when known (looked up by user AND key). */
  device: DeviceRecord | null;
}

/** @internal */
export class OlmSessions {
  constructor(
    private readonly ctx: EngineContext,
    private readonly account: AccountKeys,
    private readonly devices: DeviceTracker,
  ) {}

  /** Whether we have any Olm session with the device owning `curve25519`. */
  hasSession(tx: Transaction, curve25519: string): boolean {
    return tx.getOlmSessions(curve25519).length > 0;
  }

  /**
   * Decrypt an `m.room.encrypted` to-device event from `sender`. Checks the plaintext's sender,
   * recipient and recipient keys, and that the sender's known device with this key (if any)
   * claims the same ed25519 key. Throws {@link DecryptFailure} with a reason code.
   */
  decrypt(tx: Transaction, sender: string, content: Json): OlmDecrypted {
    const { ctx } = this;
    const me = ctx.me();
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
      const s = new ctx.olm.Session();
      try {
        s.unpickle(ctx.pickleKey, rec.pickle);
        if (type === 0 && !s.matches_inbound_from(senderKey, body)) continue;
        try {
          plaintextStr = s.decrypt(type, body);
        } catch (e) {
          if (type === 0) throw new DecryptFailure("olm_decrypt", `pre-key message matches session ${rec.sessionId} but failed to decrypt: ${String(e)}`);
          continue;
        }
        tx.putOlmSession({ ...rec, pickle: s.pickle(ctx.pickleKey), lastUsedTs: ctx.now() });
        break;
      } finally {
        s.free();
      }
    }
    if (plaintextStr === null) {
      if (type === 1) throw new DecryptFailure("olm_no_session", records.length ? "no Olm session could decrypt this message" : "no Olm session with this device");
      const s = new ctx.olm.Session();
      try {
        try {
          s.create_inbound_from(this.account.olmAccount(), senderKey, body);
        } catch (e) {
          throw new DecryptFailure("olm_bad_prekey", `could not create an inbound Olm session: ${String(e)}`);
        }
        try {
          plaintextStr = s.decrypt(type, body);
        } catch (e) {
          throw new DecryptFailure("olm_decrypt", `pre-key message failed to decrypt: ${String(e)}`);
        }
        this.account.olmAccount().remove_one_time_keys(s);
        this.account.save(tx);
        const now = ctx.now();
        tx.putOlmSession({ senderKey, sessionId: s.session_id(), pickle: s.pickle(ctx.pickleKey), createdTs: now, lastUsedTs: now });
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
    // Looked up among the sender's own devices: a device of another user that copies this key
    // is no evidence about this sender.
    const device = this.devices.deviceByKey(tx, sender, senderKey);
    if (device && device.ed25519 !== plaintext.keys.ed25519) {
      throw new DecryptFailure(DecryptionFailureCode.SenderMismatch, `keys do not match the known device ${device.userId}/${device.deviceId}`);
    }
    if (!device && tx.isTracked(sender)) {
      // An unknown device of a tracked user: refresh the user's devices so that the claimed keys are
      // checked soon (events stay "unknown_device", never "verified", until then).
      this.devices.markDirty(tx, sender);
    }
    return { plaintext, senderKey, device };
  }

  /**
   * Olm-encrypt a to-device payload for one device, or null when we have no Olm session with it.
   * The advanced ratchet is written into `tx`, which the caller commits before the message leaves.
   */
  encrypt(tx: Transaction, device: DeviceRecord, type: string, content: Json): Json | null {
    const { ctx } = this;
    const me = ctx.me();
    const records = tx.getOlmSessions(device.curve25519).sort((a, b) => b.lastUsedTs - a.lastUsedTs);
    const rec = records[0];
    if (!rec) return null;
    const s = new ctx.olm.Session();
    try {
      s.unpickle(ctx.pickleKey, rec.pickle);
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
      tx.putOlmSession({ ...rec, pickle: s.pickle(ctx.pickleKey), lastUsedTs: ctx.now() });
      return { algorithm: OLM_ALGORITHM, sender_key: me.curve25519, ciphertext: { [device.curve25519]: { type: msg.type, body: msg.body } } };
    } finally {
      s.free();
    }
  }

  /**
   * Open outbound Olm sessions from a `/keys/claim` answer (each one-time key's signature checked
   * against the device's ed25519 key). Returns the `user|device` keys that got a session.
   */
  createFromClaim(tx: Transaction, response: Json): Set<string> {
    const { ctx } = this;
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
          ctx.log.warn(`keys/claim: no signed_curve25519 key for ${userId}/${deviceId}`);
          continue;
        }
        if (!this.account.verifySignature(entry[1], userId, deviceId, device.ed25519)) {
          ctx.log.warn(`keys/claim: bad signature on the one-time key of ${userId}/${deviceId}`);
          continue;
        }
        const session = new ctx.olm.Session();
        try {
          session.create_outbound(this.account.olmAccount(), device.curve25519, entry[1].key);
          const now = ctx.now();
          tx.putOlmSession({ senderKey: device.curve25519, sessionId: session.session_id(), pickle: session.pickle(ctx.pickleKey), createdTs: now, lastUsedTs: now });
          claimed.add(`${userId}|${deviceId}`);
        } catch (e) {
          ctx.log.warn(`could not create an Olm session with ${userId}/${deviceId}: ${String(e)}`);
        } finally {
          session.free();
        }
      }
    }
    return claimed;
  }
}
