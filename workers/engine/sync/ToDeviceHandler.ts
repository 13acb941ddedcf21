/**
 * To-device events of a sync: duplicates skipped (a re-processed sync must not feed an Olm
 * message to its ratchet twice), Olm decryption, and dispatch: room keys (provenance bound here),
 * forwarded keys, key requests, withheld notices; everything else goes to the application.
 * @internal
 */
import { createHash } from "node:crypto";
import { MEGOLM_ALGORITHM, type SyncChangesResult } from "../../../src/protocol/api.js";
import { canonicalJson } from "../canonicalJson.js";
import { DecryptFailure, MAX_ID_LENGTH } from "../DecryptFailure.js";
import { isObj, isStr, type EngineContext, type Json } from "../EngineContext.js";
import type { KeySharing } from "../gossiping/KeySharing.js";
import type { SecretSharing } from "../gossiping/SecretSharing.js";
import type { DeviceTracker } from "../identities/DeviceTracker.js";
import type { InboundSessions } from "../megolm/InboundSessions.js";
import { WITHHELD_TYPES, type WithheldNotices } from "../megolm/WithheldNotices.js";
import type { OlmDecrypted, OlmSessions } from "../olm/OlmSessions.js";
import type { SessionClaims } from "../olm/SessionClaims.js";
import type { RoomState } from "../rooms/RoomState.js";
import type { Transaction } from "../Transaction.js";

/** @internal */
export class ToDeviceHandler {
  constructor(
    private readonly ctx: EngineContext,
    private readonly olm: OlmSessions,
    private readonly claims: SessionClaims,
    private readonly devices: DeviceTracker,
    private readonly rooms: RoomState,
    private readonly inbound: InboundSessions,
    private readonly withheld: WithheldNotices,
    private readonly keySharing: KeySharing,
    private readonly secrets: SecretSharing,
  ) {}

  /** Handle one to-device event of a sync; failures are logged and reported in `result`, never thrown. */
  handle(tx: Transaction, ev: unknown, result: SyncChangesResult): void {
    const { ctx } = this;
    if (!isObj(ev) || !isStr(ev.type) || !isStr(ev.sender) || !isObj(ev.content)) {
      result.toDeviceFailures.push({ sender: isObj(ev) && isStr(ev.sender) ? ev.sender : "", type: isObj(ev) && isStr(ev.type) ? ev.type : "", code: "malformed", message: "to-device event without type, sender or content" });
      ctx.log.warn("dropped a malformed to-device event (reason: malformed)");
      return;
    }
    // Re-processing a sync after a crash must not feed an Olm message to its ratchet twice (it
    // would fail and look wedged). Olm ciphertexts are unique, so their digest identifies them;
    // clear-text messages (key requests) may legitimately repeat and are idempotent anyway.
    if (ev.type === "m.room.encrypted") {
      const digest = createHash("sha256").update(canonicalJsonSafe(ev)).digest("base64");
      if (tx.hasDigest(digest)) {
        ctx.log.debug(`skipping to-device ${ev.type} from ${ev.sender}: already processed`);
        return;
      }
      tx.addDigest(digest);
    }
    if (WITHHELD_TYPES.has(ev.type)) this.withheld.record(tx, ev.sender, ev.content);
    if (ev.type === "m.room_key_request") this.keySharing.onIncomingRequest(ev.sender, ev.content, result);
    if (ev.type === "m.secret.request") this.secrets.onRequest(ev.sender, ev.content, result);
    if (ev.type !== "m.room.encrypted") {
      result.toDevice.push({ type: ev.type, sender: ev.sender, contentJson: JSON.stringify(ev.content), senderCurve25519: null, encrypted: false });
      return;
    }
    try {
      const decrypted = this.olm.decrypt(tx, ev.sender, ev.content);
      const { plaintext, senderKey, device } = decrypted;
      const type = plaintext.type as string;
      const content = plaintext.content as Json;
      if (type === "m.room_key") {
        this.onRoomKey(tx, ev.sender, decrypted, result);
      } else if (type === "m.forwarded_room_key") {
        this.keySharing.onForwardedKey(tx, ev.sender, device, senderKey, content, result);
      } else if (type === "m.secret.send") {
        this.secrets.onSend(tx, ev.sender, device, content, result);
      } else {
        result.toDevice.push({ type, sender: ev.sender, contentJson: JSON.stringify(content), senderCurve25519: senderKey, encrypted: true });
      }
    } catch (e) {
      const code = e instanceof DecryptFailure ? e.code : "olm_error";
      const message = e instanceof Error ? e.message : String(e);
      ctx.log.warn(`failed to decrypt a to-device message from ${ev.sender} (reason: ${code}): ${message}`);
      if ((code === "olm_no_session" || code === "olm_decrypt") && isStr(ev.content.sender_key)) {
        this.claims.markWedged(tx, this.devices.deviceByKey(tx, ev.sender, ev.content.sender_key));
      }
      result.toDeviceFailures.push({ sender: ev.sender, type: ev.type, code, message });
    }
  }

  /**
   * An `m.room_key` over Olm: stored with its provenance bound now (the authenticated Olm sender,
   * the channel's curve25519 key, the claimed ed25519 key, and the sender's device when known).
   */
  private onRoomKey(tx: Transaction, sender: string, d: OlmDecrypted, result: SyncChangesResult): void {
    const { ctx } = this;
    const c = d.plaintext.content as Json;
    const claimedEd = (d.plaintext.keys as Json).ed25519 as string;
    if (c.algorithm !== MEGOLM_ALGORITHM) {
      ctx.log.warn(`ignoring m.room_key with algorithm ${String(c.algorithm)} (reason: unknown_algorithm)`);
      return;
    }
    if (!isStr(c.room_id) || !isStr(c.session_id) || !isStr(c.session_key) || c.session_key.length > 4096 || c.room_id.length > MAX_ID_LENGTH) {
      ctx.log.warn("ignoring malformed m.room_key (reason: malformed)");
      return;
    }
    const mine = this.rooms.myMembershipIn(tx, c.room_id);
    if (mine !== "join" && mine !== "invite") {
      ctx.log.warn(`ignoring m.room_key for ${c.room_id}, a room we are not in (reason: unknown_room)`);
      return;
    }
    const added = this.inbound.add(tx, {
      roomId: c.room_id,
      senderKey: d.senderKey,
      sessionId: c.session_id,
      sessionKey: c.session_key,
      exported: false,
      claimedEd25519: claimedEd,
      forwardingChain: [],
      senderData: { kind: "olm", userId: sender, deviceId: d.device?.deviceId ?? null, curve25519: d.senderKey, ed25519: claimedEd },
    });
    if (added) result.roomKeys.push({ roomId: c.room_id, sessionId: c.session_id, senderKey: d.senderKey });
  }
}

function canonicalJsonSafe(v: unknown): string {
  try {
    return canonicalJson(v);
  } catch {
    return JSON.stringify(v);
  }
}
