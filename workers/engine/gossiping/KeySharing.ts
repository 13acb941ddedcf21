/**
 * Room keys shared among our own devices: `m.room_key_request`s we send for sessions we lack
 * (persisted, re-sent after a restart, cancelled once answered), requests from our other devices
 * (collected for the application, answered only when it approves), and `m.forwarded_room_key`s
 * we accept (only ones we asked for, only from our own verified devices).
 * @internal
 */
import { MEGOLM_ALGORITHM, type IncomingKeyRequest, type OutgoingRequest, type SyncChangesResult } from "../../../src/protocol/api.js";
import type { DeviceRecord } from "../../../src/protocol/store.js";
import { isObj, isStr, type EngineContext, type Json } from "../EngineContext.js";
import type { UserIdentities } from "../identities/UserIdentities.js";
import type { InboundSessions } from "../megolm/InboundSessions.js";
import type { OlmSessions } from "../olm/OlmSessions.js";
import type { SessionClaims } from "../olm/SessionClaims.js";
import type { Transaction } from "../Transaction.js";

/** Value key of the outgoing key requests. @internal */
export const KEY_REQUESTS = "outgoing_key_requests";
/** Cap on outstanding outgoing key requests. */
const MAX_KEY_REQUESTS = 1000;

/** An `m.room_key_request` we send to our own devices. @internal */
interface OutgoingKeyRequest {
  requestId: string;
  roomId: string;
  senderKey: string;
  sessionId: string;
  /**
   * `sender` of the event that needed the key: the user the session is claimed to belong to. A
   * forwarded answer records it in its provenance, and the session then decrypts only that user's
   * events. Absent on requests stored before it was recorded.
   */
  sender?: string;
  state: "unsent" | "sent" | "cancel";
}

/** Reason codes of a refused `m.forwarded_room_key` (logged and reported in `toDeviceFailures`). @internal */
export const ForwardRefusal = {
  /** Not from one of our own known devices (another user, or a device we do not know). */
  NotOwnDevice: "forward_not_own_device",
  /** From one of our devices that is blacklisted, or neither verified locally nor by our cross-signing. */
  UnverifiedDevice: "forward_unverified_device",
  /** We have no outstanding request for that session (never asked, answered or cancelled). */
  Unrequested: "forward_unrequested",
  Malformed: "malformed",
} as const;

/** @internal */
export class KeySharing {
  /** Whether undecryptable events trigger `m.room_key_request`s (set by the forward listener). */
  private enabled = false;
  /** Outgoing key requests by request ID, persisted as one value. */
  private requests = new Map<string, OutgoingKeyRequest>();
  /** `room \0 sender key \0 session` of every outstanding request (one lookup per undecryptable event). */
  private readonly requested = new Set<string>();
  /** Requests were queued since the state was last written (see {@link KeySharing.saveQueued}). */
  private unsaved = false;

  constructor(
    private readonly ctx: EngineContext,
    private readonly inbound: InboundSessions,
    private readonly olm: OlmSessions,
    private readonly claims: SessionClaims,
    private readonly identities: UserIdentities,
  ) {}

  /** Load the outstanding requests of the account just loaded; unanswered ones are sent again. */
  load(existingAccount: boolean): void {
    this.requests = new Map();
    this.requested.clear();
    this.unsaved = false;
    const stored = existingAccount ? this.ctx.store.getValue(KEY_REQUESTS) : null;
    if (stored) {
      for (const r of JSON.parse(stored) as OutgoingKeyRequest[]) this.requests.set(r.requestId, { ...r, state: r.state === "cancel" ? "cancel" : "unsent" });
    }
  }

  /** Turn automatic key requests on (the application added a key-forward listener) or off. */
  setEnabled(enabled: boolean): void {
    this.enabled = enabled;
  }

  /** Write the current request state into `tx`. */
  save(tx: Transaction): void {
    this.unsaved = false;
    tx.setValue(KEY_REQUESTS, JSON.stringify([...this.requests.values()]));
  }

  /**
   * Write the request state into `tx` if requests were queued since it was last written. Queuing
   * does not write (a sync with a missing key in each of 1,000 rooms would serialise the list
   * 1,000 times): every engine call that decrypts room events calls this once before its commit.
   */
  saveQueued(tx: Transaction): void {
    if (this.unsaved) this.save(tx);
  }

  /** Write the request state into `tx` if it moved on since `tx` last saw it (sync token commits). */
  saveIfChanged(tx: Transaction): void {
    if (this.unsaved || tx.getValue(KEY_REQUESTS) !== this.ctx.store.getValue(KEY_REQUESTS)) this.save(tx);
  }

  /**
   * Ask our other devices for a session, at most once per session. `sender` is the `sender` of the
   * event that needs it (the first one asking wins): the answer will decrypt only that user's events.
   */
  queueRequest(roomId: string, senderKey: string, sessionId: string, sender: string): void {
    if (!this.enabled || this.requests.size >= MAX_KEY_REQUESTS) return;
    if (this.requested.size !== this.requests.size) this.reindex();
    const key = `${roomId}\u0000${senderKey}\u0000${sessionId}`;
    if (this.requested.has(key)) return;
    const requestId = this.ctx.newId();
    this.requests.set(requestId, { requestId, roomId, senderKey, sessionId, sender, state: "unsent" });
    this.requested.add(key);
    this.unsaved = true;
  }

  /** Rebuild {@link KeySharing.requested} from the requests (after requests were answered or loaded). */
  private reindex(): void {
    this.requested.clear();
    for (const r of this.requests.values()) this.requested.add(`${r.roomId}\u0000${r.senderKey}\u0000${r.sessionId}`);
  }

  /** The `m.room_key_request` (and cancellation) messages not yet sent nor in flight. */
  buildRequestMessages(): OutgoingRequest[] {
    const { ctx } = this;
    const me = ctx.me();
    const out: OutgoingRequest[] = [];
    const inFlight = new Set([...ctx.inFlight.values()].map((r) => r.keyRequest).filter(isStr));
    for (const r of this.requests.values()) {
      if (r.state === "sent" || inFlight.has(r.requestId)) continue;
      const content: Json =
        r.state === "cancel"
          ? { action: "request_cancellation", request_id: r.requestId, requesting_device_id: me.deviceId }
          : { action: "request", request_id: r.requestId, requesting_device_id: me.deviceId, body: { algorithm: MEGOLM_ALGORITHM, room_id: r.roomId, sender_key: r.senderKey, session_id: r.sessionId } };
      const id = ctx.addInFlight({ kind: "to_device", keyRequest: r.requestId });
      out.push({ id, kind: "to_device", eventType: "m.room_key_request", txnId: ctx.txnId(id), body: JSON.stringify({ messages: { [me.userId]: { "*": content } } }) });
    }
    return out;
  }

  /** A request (or its cancellation) reached the server. */
  onRequestSent(tx: Transaction, requestId: string): void {
    const r = this.requests.get(requestId);
    if (!r) return;
    if (r.state === "cancel") this.requests.delete(requestId);
    else r.state = "sent";
    this.save(tx);
  }

  /** An `m.room_key_request` from one of our own other devices: collected for the application. */
  onIncomingRequest(sender: string, c: Json, result: SyncChangesResult): void {
    const { ctx } = this;
    const me = ctx.me();
    const deviceId = c.requesting_device_id;
    const requestId = c.request_id;
    if (sender !== me.userId || !isStr(deviceId) || !isStr(requestId) || deviceId === me.deviceId) {
      ctx.log.debug(`ignoring a key request from ${sender}/${String(deviceId)} (not another device of ours)`);
      return;
    }
    if (c.action === "request_cancellation" || c.action === "cancel_request") {
      result.keyRequests = result.keyRequests.filter((r) => !(r.deviceId === deviceId && r.requestId === requestId));
      result.keyRequestCancellations.push(`${deviceId}|${requestId}`);
      return;
    }
    const b = c.body;
    if (c.action !== "request" || !isObj(b) || b.algorithm !== MEGOLM_ALGORITHM || !isStr(b.room_id) || !isStr(b.sender_key) || !isStr(b.session_id)) {
      ctx.log.warn(`ignoring a malformed key request from ${deviceId} (reason: malformed)`);
      return;
    }
    if (!ctx.store.getInboundGroupSession(b.room_id, b.sender_key, b.session_id)) {
      ctx.log.debug(`key request ${requestId} from ${deviceId}: we do not have session ${b.session_id}`);
      return;
    }
    if (result.keyRequests.some((r) => r.deviceId === deviceId && r.requestId === requestId)) return;
    result.keyRequests.push({ requestId, deviceId, roomId: b.room_id, senderKey: b.sender_key, sessionId: b.session_id });
  }

  /** keys/claim for own devices we are about to answer and have no Olm session with. */
  prepareForwarding(tx: Transaction, deviceIds: string[]): OutgoingRequest | null {
    const me = this.ctx.me();
    const devices: DeviceRecord[] = [];
    for (const id of deviceIds) {
      const d = tx.getDevice(me.userId, id);
      if (d && !d.deleted && !d.blacklisted) devices.push(d);
    }
    return this.claims.claimFor(tx, devices, false);
  }

  /** Answer approved requests from our own devices with Olm-encrypted `m.forwarded_room_key`s. Blacklisted devices are never answered. */
  answer(tx: Transaction, requests: IncomingKeyRequest[]): OutgoingRequest[] {
    const { ctx } = this;
    const me = ctx.me();
    const messages: Record<string, Json> = {};
    for (const r of requests) {
      const device = tx.getDevice(me.userId, r.deviceId);
      if (!device || device.deleted || device.blacklisted || r.deviceId === me.deviceId) {
        ctx.log.warn(`not answering key request ${r.requestId}: device ${r.deviceId} is unknown, deleted or blacklisted`);
        continue;
      }
      const rec = tx.getInbound(r.roomId, r.senderKey, r.sessionId);
      if (!rec) continue;
      const content = this.olm.encrypt(tx, device, "m.forwarded_room_key", {
        algorithm: MEGOLM_ALGORITHM,
        room_id: rec.roomId,
        sender_key: rec.senderKey,
        sender_claimed_ed25519_key: rec.claimedEd25519,
        session_id: rec.sessionId,
        session_key: this.inbound.exportKey(rec),
        forwarding_curve25519_key_chain: rec.forwardingChain,
      });
      if (!content) {
        ctx.log.warn(`not answering key request ${r.requestId}: no Olm session with ${r.deviceId}`);
        continue;
      }
      // One message per device per request batch: later ones for the same device go in the next batch.
      if (messages[r.deviceId]) continue;
      messages[r.deviceId] = content;
    }
    if (!Object.keys(messages).length) return [];
    const id = ctx.addInFlight({ kind: "to_device" });
    return [{ id, kind: "to_device", eventType: "m.room.encrypted", txnId: ctx.txnId(id), body: JSON.stringify({ messages: { [me.userId]: messages } }) }];
  }

  /**
   * A forwarded key, Olm-decrypted from `sender`'s `device` (looked up by user and key): accepted
   * only from our own devices that are verified (locally, or cross-signed under our own trusted
   * identity) and not blacklisted, and only if we have an outstanding request for exactly that
   * room, sender key and session. A refusal is logged and reported in `result.toDeviceFailures`
   * with a {@link ForwardRefusal} code; nothing is stored. The provenance records the forwarder
   * and the user the request was for; events on it are never better than `unauthenticated`.
   */
  onForwardedKey(tx: Transaction, sender: string, device: DeviceRecord | null, olmSenderKey: string, c: Json, result: SyncChangesResult): void {
    const { ctx } = this;
    const me = ctx.me();
    const refuse = (code: string, message: string): void => {
      ctx.log.warn(`ignoring m.forwarded_room_key from ${sender}/${device?.deviceId ?? "?"} (reason: ${code}): ${message}`);
      result.toDeviceFailures.push({ sender, type: "m.forwarded_room_key", code, message });
    };
    if (sender !== me.userId || !device || device.userId !== me.userId) return refuse(ForwardRefusal.NotOwnDevice, "not one of our known devices");
    if (device.blacklisted || !(device.verified || this.identities.deviceTrust(tx, device).crossSigningVerified)) {
      return refuse(ForwardRefusal.UnverifiedDevice, "the forwarding device is blacklisted or not verified");
    }
    if (c.algorithm !== MEGOLM_ALGORITHM || !isStr(c.room_id) || !isStr(c.sender_key) || !isStr(c.session_id) || !isStr(c.session_key) || !isStr(c.sender_claimed_ed25519_key)) {
      return refuse(ForwardRefusal.Malformed, "missing or invalid fields");
    }
    const req = [...this.requests.values()].find((r) => r.state !== "cancel" && r.roomId === c.room_id && r.senderKey === c.sender_key && r.sessionId === c.session_id);
    if (!req) return refuse(ForwardRefusal.Unrequested, `session ${c.session_id} is one we did not request (or no longer wait for)`);
    const chain = Array.isArray(c.forwarding_curve25519_key_chain) ? c.forwarding_curve25519_key_chain.filter(isStr) : [];
    const added = this.inbound.add(tx, {
      roomId: c.room_id,
      senderKey: c.sender_key,
      sessionId: c.session_id,
      sessionKey: c.session_key,
      exported: true,
      claimedEd25519: c.sender_claimed_ed25519_key,
      forwardingChain: [...chain, olmSenderKey],
      senderData: { kind: "forwarded", userId: sender, deviceId: device.deviceId, curve25519: olmSenderKey, ...(req.sender !== undefined ? { claimedSender: req.sender } : {}) },
    });
    if (added) result.roomKeys.push({ roomId: c.room_id, sessionId: c.session_id, senderKey: c.sender_key });
    if (!added && !tx.getInbound(c.room_id, c.sender_key, c.session_id)) return; // bad key: keep the request outstanding
    req.state = "cancel";
    this.save(tx);
    result.forwardedKeys.push({ roomId: c.room_id, sessionId: c.session_id });
  }
}
