/**
 * Outbound Megolm sessions, one per room: who receives the key (policy: blacklisted, unverified,
 * not cross-signed), rotation, sharing over Olm with withheld notices for excluded devices, and
 * encrypting room events.
 *
 * Locking rule (the caller's duty, DESIGN §3): per room, `prepareShare` → `share` → `encrypt`
 * run in order under the room's lock; different rooms may interleave.
 * @internal
 */
import { MEGOLM_ALGORITHM, type DeviceInfo, type OutgoingRequest, type PrepareShareStep } from "../../../src/protocol/api.js";
import { InternalError, UnknownDevicesError, VerifiedUserChangedIdentityError } from "../../../src/protocol/errors.js";
import type { DeviceRecord, OutboundGroupSessionRecord, SharedWithEntry } from "../../../src/protocol/store.js";
import type { EngineContext, Json } from "../EngineContext.js";
import type { DeviceTracker } from "../identities/DeviceTracker.js";
import type { UserIdentities } from "../identities/UserIdentities.js";
import type { OlmSessions } from "../olm/OlmSessions.js";
import type { SessionClaims } from "../olm/SessionClaims.js";
import type { RoomState } from "../rooms/RoomState.js";
import type { Transaction } from "../Transaction.js";
import type { InboundSessions } from "./InboundSessions.js";
import { OutboundRatchets } from "./OutboundRatchets.js";

/** Default rotation: 100 messages or one week (spec defaults for `m.room.encryption`). */
const DEFAULT_ROTATION_MSGS = 100;
const DEFAULT_ROTATION_MS = 7 * 24 * 3600 * 1000;
/** Messages per `/sendToDevice` request. */
const TO_DEVICE_CHUNK = 250;

/** Recipient devices of a room by what our policy does with them. */
interface Recipients {
  devices: DeviceRecord[];
  blacklisted: DeviceRecord[];
  notCrossSigned: DeviceRecord[];
}

/** @internal */
export class OutboundSessions {
  /** The sessions' ratchets in memory, and their in-use marks (see OutboundRatchets). */
  private readonly ratchets: OutboundRatchets;

  constructor(
    private readonly ctx: EngineContext,
    private readonly rooms: RoomState,
    private readonly devices: DeviceTracker,
    private readonly identities: UserIdentities,
    private readonly olm: OlmSessions,
    private readonly claims: SessionClaims,
    private readonly inbound: InboundSessions,
  ) {
    this.ratchets = new OutboundRatchets(ctx);
  }

  /** A new engine lifetime (an account was loaded): a new in-use mark, no live ratchet. */
  reset(): void {
    this.ratchets.reset();
  }

  /** Free the live ratchets without writing them (their sessions are discarded at the next read). */
  release(): void {
    this.ratchets.release();
  }

  /**
   * Clean close (or account switch): commit the current ratchet of every session in use, unmarked,
   * in one transaction (none in use: no write). On failure the marks stay, and the next engine
   * discards those sessions: a new share, never a reused index.
   */
  async writeRatchets(): Promise<void> {
    if (!this.ctx.hasAccount) return;
    const tx = this.ctx.newTx();
    const n = this.ratchets.flush(tx);
    try {
      await this.ctx.commit(tx);
      if (n) this.ctx.log.debug(`outbound ratchets of ${n} room(s) written`);
    } catch (e) {
      this.ctx.log.warn(`could not write the outbound ratchets: ${e instanceof Error ? e.message : String(e)}`);
    }
  }

  /**
   * Recipient devices of the room. With `verifyDevices`, throws {@link UnknownDevicesError}
   * listing devices that are neither verified (locally or by cross-signing), ignored nor
   * blacklisted; throws {@link VerifiedUserChangedIdentityError} when a user we verified changed
   * their identity (nothing is shared or sent until that is acknowledged).
   */
  private recipients(tx: Transaction, roomId: string, verifyDevices: boolean, onlyCrossSigned: boolean): Recipients {
    const me = this.ctx.me();
    const notCrossSigned: DeviceRecord[] = [];
    const out: DeviceRecord[] = [];
    const blacklisted: DeviceRecord[] = [];
    const unknown: Record<string, DeviceInfo[]> = {};
    const users = this.rooms.recipientUsers(tx, roomId);
    const changed = this.identities.verifiedIdentityChanges(tx, users);
    if (changed.length) throw new VerifiedUserChangedIdentityError(changed);
    for (const userId of users) {
      for (const d of tx.getUserDevices(userId)) {
        if (d.deleted || (d.userId === me.userId && d.deviceId === me.deviceId)) continue;
        if (d.blacklisted) {
          blacklisted.push(d);
          continue;
        }
        const trust = this.identities.deviceTrust(tx, d);
        if (onlyCrossSigned && !trust.crossSigned) {
          notCrossSigned.push(d);
          continue;
        }
        if (verifyDevices && !d.verified && !d.ignored && !trust.crossSigningVerified) (unknown[userId] ??= []).push(this.identities.deviceInfo(tx, d));
        else out.push(d);
      }
    }
    if (Object.keys(unknown).length) throw new UnknownDevicesError(unknown);
    return { devices: out, blacklisted, notCrossSigned };
  }

  /** Next request needed before sharing the room key: keys/query, then keys/claim; or ready. */
  prepareShare(tx: Transaction, roomId: string, verifyDevices: boolean, onlyCrossSigned: boolean): PrepareShareStep {
    this.rooms.requireMegolm(tx, roomId);
    const users = this.rooms.recipientUsers(tx, roomId);
    for (const u of users) if (!tx.isTracked(u)) this.devices.markDirty(tx, u);
    const dirty = users.filter((u) => this.devices.needsQuery(tx, u));
    if (dirty.length) return { ready: false, request: this.devices.buildKeysQuery(dirty) };
    const { devices } = this.recipients(tx, roomId, verifyDevices, onlyCrossSigned);
    const claim = this.claims.claimFor(tx, devices);
    return claim ? { ready: false, request: claim } : { ready: true };
  }

  /** Share the room's outbound session with every recipient device that lacks it; rotate first when needed. */
  share(tx: Transaction, roomId: string, verifyDevices: boolean, onlyCrossSigned: boolean): OutgoingRequest[] {
    const { ctx } = this;
    const me = ctx.me();
    const settings = this.rooms.requireMegolm(tx, roomId);
    const { devices, blacklisted, notCrossSigned } = this.recipients(tx, roomId, verifyDevices, onlyCrossSigned);
    const existing = this.ratchets.current(tx, roomId);
    const reason = existing ? this.rotationReason(existing, devices) : "no session";
    if (existing && reason) ctx.log.info(`rotating the room key of ${roomId}: ${reason}`);
    const outbound = !existing || reason ? this.create(tx, roomId, settings) : existing;
    // At the ratchet's current index: a device added now cannot read what was sent before.
    const sessionKey = this.ratchets.sessionKey(outbound);
    const roomKeyContent = { algorithm: MEGOLM_ALGORITHM, room_id: roomId, session_id: outbound.sessionId, session_key: sessionKey };
    const shared = new Map(outbound.sharedWith.map((e) => [`${e.userId}|${e.deviceId}`, e]));
    const messages: { userId: string; deviceId: string; content: Json }[] = [];
    // Devices our policy excludes are told so (m.room_key.withheld), once per session.
    const withheld: { d: DeviceRecord; code: string; reason: string }[] = [];
    const exclude = (list: DeviceRecord[], code: string, why: string): void => {
      for (const d of list) {
        const k = `${d.userId}|${d.deviceId}`;
        if (shared.get(k)?.withheldCode === code) continue;
        shared.set(k, { userId: d.userId, deviceId: d.deviceId, curve25519: d.curve25519, state: "withheld", withheldCode: code });
        withheld.push({ d, code, reason: why });
      }
    };
    exclude(blacklisted, "m.blacklisted", "You have been blocked by the sender.");
    exclude(notCrossSigned, "m.unverified", "Your device is not cross-signed by its owner.");
    for (const d of devices) {
      const k = `${d.userId}|${d.deviceId}`;
      if (shared.get(k)?.state === "shared") continue;
      const content = this.olm.encrypt(tx, d, "m.room_key", roomKeyContent);
      if (!content) {
        if (shared.get(k)?.withheldCode !== "m.no_olm") withheld.push({ d, code: "m.no_olm", reason: "Unable to establish a secure channel." });
        shared.set(k, { userId: d.userId, deviceId: d.deviceId, curve25519: d.curve25519, state: "withheld", withheldCode: "m.no_olm" });
        continue;
      }
      shared.set(k, { userId: d.userId, deviceId: d.deviceId, curve25519: d.curve25519, state: "pending" });
      messages.push({ userId: d.userId, deviceId: d.deviceId, content });
    }
    // Written only when something changed (a share round with nothing to send costs no commit).
    if (outbound !== existing || messages.length || withheld.length) tx.putOutbound(this.ratchets.record(outbound, { sharedWith: [...shared.values()] }));
    const requests: OutgoingRequest[] = [];
    if (withheld.length) {
      const body: Record<string, Record<string, Json>> = {};
      for (const w of withheld) {
        (body[w.d.userId] ??= {})[w.d.deviceId] = { room_id: roomId, algorithm: MEGOLM_ALGORITHM, session_id: outbound.sessionId, sender_key: me.curve25519, code: w.code, reason: w.reason, from_device: me.deviceId };
      }
      const id = ctx.addInFlight({ kind: "to_device" });
      requests.push({ id, kind: "to_device", eventType: "m.room_key.withheld", txnId: ctx.txnId(id), body: JSON.stringify({ messages: body }) });
    }
    for (let i = 0; i < messages.length; i += TO_DEVICE_CHUNK) {
      const chunk = messages.slice(i, i + TO_DEVICE_CHUNK);
      const body: Record<string, Record<string, Json>> = {};
      for (const m of chunk) (body[m.userId] ??= {})[m.deviceId] = m.content;
      const id = ctx.addInFlight({ kind: "to_device", share: { roomId, sessionId: outbound.sessionId, devices: chunk.map((m) => [m.userId, m.deviceId]) } });
      requests.push({ id, kind: "to_device", eventType: "m.room.encrypted", txnId: ctx.txnId(id), body: JSON.stringify({ messages: body }) });
    }
    return requests;
  }

  private rotationReason(o: OutboundGroupSessionRecord, devices: DeviceRecord[]): string | null {
    if (o.messageCount >= o.rotationPeriodMsgs) return `${o.messageCount} messages sent`;
    if (this.ctx.now() - o.createdTs >= o.rotationPeriodMs) return "rotation period elapsed";
    const current = new Map(devices.map((d) => [`${d.userId}|${d.deviceId}`, d.curve25519]));
    for (const e of o.sharedWith) {
      if (e.state === "withheld") continue;
      const curve = current.get(`${e.userId}|${e.deviceId}`);
      if (curve === undefined) return `${e.userId}/${e.deviceId} is no longer a recipient`;
      if (curve !== e.curve25519) return `${e.userId}/${e.deviceId} changed keys`;
    }
    return null;
  }

  private create(tx: Transaction, roomId: string, settings: Json): OutboundGroupSessionRecord {
    const { ctx } = this;
    const me = ctx.me();
    const og = new ctx.olm.OutboundGroupSession();
    let adopted = false;
    try {
      og.create();
      const msgs = settings.rotation_period_msgs;
      const ms = settings.rotation_period_ms;
      const rec: OutboundGroupSessionRecord = {
        roomId,
        sessionId: og.session_id(),
        pickle: og.pickle(ctx.pickleKey),
        createdTs: ctx.now(),
        messageCount: 0,
        rotationPeriodMsgs: typeof msgs === "number" && msgs > 0 ? Math.min(msgs, 10_000) : DEFAULT_ROTATION_MSGS,
        rotationPeriodMs: typeof ms === "number" && ms > 0 ? Math.min(ms, DEFAULT_ROTATION_MS) : DEFAULT_ROTATION_MS,
        sharedWith: [],
        // Marked from the start: this engine's ratchet of it lives in memory (OutboundRatchets).
        inUseBy: this.ratchets.mark,
      };
      tx.deleteOutbound(roomId);
      tx.putOutbound(rec);
      // Keep an inbound copy so we can read our own messages: the only session labelled "own".
      this.inbound.add(tx, { roomId, senderKey: me.curve25519, sessionId: rec.sessionId, sessionKey: og.session_key(), exported: false, claimedEd25519: me.ed25519, forwardingChain: [], senderData: { kind: "own" } });
      this.ratchets.adopt(roomId, rec.sessionId, og);
      adopted = true;
      return rec;
    } finally {
      if (!adopted) og.free();
    }
  }

  /** A room-key chunk reached the server: its devices move from pending to shared. */
  onShareSent(tx: Transaction, share: { roomId: string; sessionId: string; devices: [string, string][] }): void {
    const o = this.ratchets.current(tx, share.roomId);
    if (!o || o.sessionId !== share.sessionId) return;
    const sent = new Set(share.devices.map(([u, d]) => `${u}|${d}`));
    const sharedWith: SharedWithEntry[] = o.sharedWith.map((e) => (sent.has(`${e.userId}|${e.deviceId}`) && e.state === "pending" ? { ...e, state: "shared" } : e));
    tx.putOutbound(this.ratchets.record(o, { sharedWith }));
  }

  /** Discard the room's outbound session (sharing failed): the next send starts a new one. */
  discard(tx: Transaction, roomId: string): void {
    if (tx.getOutbound(roomId)) tx.deleteOutbound(roomId);
    for (const [id, r] of this.ctx.inFlight) if (r.share?.roomId === roomId) this.ctx.inFlight.delete(id);
  }

  /**
   * Encrypt at once when nothing has to happen first (the send's fast path, one worker call): every
   * recipient's device list is fresh, the room's session exists, needs no rotation, and reached
   * every current recipient device (excluded devices got their withheld notice). Returns null when
   * the caller must query, claim or share first. Recipient policy errors are thrown as on the slow
   * path (`UnknownDevicesError`, `VerifiedUserChangedIdentityError`).
   */
  encryptIfShared(tx: Transaction, roomId: string, eventType: string, content: Json, verifyDevices: boolean, onlyCrossSigned: boolean): Json | null {
    this.rooms.requireMegolm(tx, roomId);
    if (this.rooms.recipientUsers(tx, roomId).some((u) => this.devices.needsQuery(tx, u))) return null;
    const o = this.ratchets.current(tx, roomId);
    if (!o || o.sharedWith.some((e) => e.state === "pending")) return null;
    const { devices, blacklisted, notCrossSigned } = this.recipients(tx, roomId, verifyDevices, onlyCrossSigned);
    if (this.rotationReason(o, devices)) return null;
    const shared = new Map(o.sharedWith.map((e) => [`${e.userId}|${e.deviceId}`, e]));
    const has = (d: DeviceRecord, ok: (e: SharedWithEntry) => boolean): boolean => {
      const e = shared.get(`${d.userId}|${d.deviceId}`);
      return e !== undefined && e.curve25519 === d.curve25519 && ok(e);
    };
    if (!devices.every((d) => has(d, (e) => e.state === "shared"))) return null;
    if (!blacklisted.every((d) => has(d, (e) => e.withheldCode === "m.blacklisted"))) return null;
    if (!notCrossSigned.every((d) => has(d, (e) => e.withheldCode === "m.unverified"))) return null;
    return this.encrypt(tx, roomId, eventType, content);
  }

  /**
   * Encrypt one event with the room's fully shared outbound session. The ratchet advances in
   * memory; `tx` gets a write only at the session's first use in this engine's lifetime (its
   * in-use mark, committed before the ciphertext leaves; see OutboundRatchets).
   */
  encrypt(tx: Transaction, roomId: string, eventType: string, content: Json): Json {
    const { ctx } = this;
    const me = ctx.me();
    this.rooms.requireMegolm(tx, roomId);
    const o = this.ratchets.current(tx, roomId);
    if (!o) throw new InternalError(`no outbound session for ${roomId}; share the room key first`);
    if (o.sharedWith.some((e) => e.state === "pending")) throw new InternalError(`the room key of ${roomId} is not fully shared yet`);
    const ciphertext = this.ratchets.encrypt(tx, o, JSON.stringify({ type: eventType, content, room_id: roomId }));
    return { algorithm: MEGOLM_ALGORITHM, sender_key: me.curve25519, ciphertext, session_id: o.sessionId, device_id: me.deviceId };
  }
}
