/**
 * `/keys/claim` requests and what follows from them: Olm sessions for devices we must reach, a
 * back-off for devices whose claim returned nothing, and unwedging (a new session plus an
 * `m.dummy` for a device whose Olm channel broke).
 *
 * Locking rule (the caller's duty, DESIGN §3): claims are single flight on the main thread; a
 * claim request handed out here must be answered (sent or failed) before the next one is asked for.
 * @internal
 */
import type { OutgoingRequest } from "../../../src/protocol/api.js";
import type { DeviceRecord } from "../../../src/protocol/store.js";
import type { EngineContext, Json } from "../EngineContext.js";
import type { Transaction } from "../Transaction.js";
import type { OlmSessions } from "./OlmSessions.js";

/** Do not claim again for a device whose claim returned no key for this long. */
const FAILED_CLAIM_RETRY_MS = 60 * 1000;
/** At most one unwedging per device per hour. */
const UNWEDGE_INTERVAL_MS = 3600 * 1000;
/**
 * Value key of the devices whose unwedging is not done yet (`user|device` list): a restarted
 * engine starts their repair again (the claim and m.dummy of the previous instance may be lost).
 */
const UNWEDGE_QUEUE = "unwedge_queue";

/** @internal */
export class SessionClaims {
  /** `user|device` → when its last claim returned no usable key. */
  private readonly failedClaims = new Map<string, number>();
  /**
   * Devices whose Olm channel is wedged: "claim" a new session, then send them an "m.dummy".
   * `sessionsBefore`: the IDs of the device's Olm sessions when it was found wedged; a session not
   * among them was made since (by a room-key share's claim) and is the new one, no claim needed.
   */
  private readonly unwedge = new Map<string, { state: "claim" | "claiming" | "dummy"; sessionsBefore: Set<string> }>();

  constructor(
    private readonly ctx: EngineContext,
    private readonly sessions: OlmSessions,
  ) {}

  /** Forget in-memory claim state (account released). */
  release(): void {
    this.unwedge.clear();
  }

  /** Resume the unwedging left unfinished by the previous engine instance (account loaded). */
  load(tx: Transaction): void {
    const queued: unknown = JSON.parse(tx.getValue(UNWEDGE_QUEUE) ?? "[]");
    for (const k of Array.isArray(queued) ? queued : []) {
      if (typeof k !== "string") continue;
      const i = k.lastIndexOf("|");
      const device = tx.getDevice(k.slice(0, i), k.slice(i + 1));
      // Sessions made before the restart may be the lost repair's: claim anew unless one appears later.
      const sessionsBefore = new Set(device ? tx.getOlmSessions(device.curve25519).map((r) => r.sessionId) : []);
      this.unwedge.set(k, { state: "claim", sessionsBefore });
    }
  }

  /** Write the devices still being unwedged into `tx`. */
  private saveQueue(tx: Transaction): void {
    const keys = JSON.stringify([...this.unwedge.keys()]);
    if ((tx.getValue(UNWEDGE_QUEUE) ?? "[]") !== keys) tx.setValue(UNWEDGE_QUEUE, this.unwedge.size ? keys : null);
  }

  /**
   * A `/keys/claim` for the devices among `devices` we have no Olm session with (skipping those
   * whose claim recently returned nothing, unless `backOff` is false), or null when none is needed.
   */
  claimFor(tx: Transaction, devices: DeviceRecord[], backOff = true): OutgoingRequest | null {
    const missing: Record<string, Record<string, string>> = {};
    const keys = new Map<string, number>();
    for (const d of devices) {
      const k = `${d.userId}|${d.deviceId}`;
      const failedAt = this.failedClaims.get(k);
      if (backOff && failedAt !== undefined && this.ctx.now() - failedAt < FAILED_CLAIM_RETRY_MS) continue;
      if (this.sessions.hasSession(tx, d.curve25519)) continue;
      (missing[d.userId] ??= {})[d.deviceId] = "signed_curve25519";
      keys.set(k, 0);
    }
    if (!keys.size) return null;
    const id = this.ctx.addInFlight({ kind: "keys_claim", users: keys });
    return { id, kind: "keys_claim", body: JSON.stringify({ one_time_keys: missing, timeout: 10_000 }) };
  }

  /** Open sessions from a claim answer; devices that got none are backed off (and leave unwedging). */
  onClaimed(tx: Transaction, response: Json, users: Map<string, number>, unwedge: boolean): void {
    const claimed = this.sessions.createFromClaim(tx, response);
    for (const k of claimed) this.failedClaims.delete(k);
    for (const k of users.keys()) if (!claimed.has(k)) this.failedClaims.set(k, this.ctx.now());
    if (unwedge) {
      for (const k of users.keys()) {
        const w = this.unwedge.get(k);
        if (w) w.state = "dummy";
      }
    }
  }

  /** A claim failed outright: back off every device it covered. */
  onClaimFailed(tx: Transaction, users: Map<string, number>, unwedge: boolean): void {
    for (const u of users.keys()) {
      this.failedClaims.set(u, this.ctx.now());
      if (unwedge) this.unwedge.delete(u);
    }
    if (unwedge) this.saveQueue(tx);
  }

  /**
   * An Olm message from `sender`'s device with `senderKey` failed: start a new session and send it
   * an m.dummy, at most once per device per hour (the time is persisted in `tx`).
   */
  markWedged(tx: Transaction, device: DeviceRecord | null): void {
    if (!device || device.deleted) return;
    const key = `unwedged:${device.curve25519}`;
    const last = Number(tx.getValue(key) ?? 0);
    if (this.ctx.now() - last < UNWEDGE_INTERVAL_MS) return;
    tx.setValue(key, String(this.ctx.now()));
    const sessionsBefore = new Set(tx.getOlmSessions(device.curve25519).map((r) => r.sessionId));
    this.unwedge.set(`${device.userId}|${device.deviceId}`, { state: "claim", sessionsBefore });
    this.saveQueue(tx);
    this.ctx.log.info(`Olm session with ${device.userId}/${device.deviceId} looks wedged; creating a new one`);
  }

  /**
   * The claim and `m.dummy` requests of devices being unwedged (the dummies' ratchets written into
   * `tx`). A device that got a new Olm session since it was found wedged (a room-key share claimed
   * one) is not claimed for again: it gets its `m.dummy` on that session.
   *
   * Locking rule: under the main thread's claim lock (like every claim), so a claim for the same
   * device by a room-key share is answered before this looks at the device's sessions.
   */
  buildUnwedgeRequests(tx: Transaction): OutgoingRequest[] {
    const out: OutgoingRequest[] = [];
    const claim: Record<string, Record<string, string>> = {};
    const users = new Map<string, number>();
    const dummies: Record<string, Record<string, Json>> = {};
    let anyDummy = false;
    for (const [k, w] of this.unwedge) {
      const i = k.lastIndexOf("|");
      const userId = k.slice(0, i);
      const deviceId = k.slice(i + 1);
      const device = tx.getDevice(userId, deviceId);
      if (!device) {
        this.unwedge.delete(k);
        continue;
      }
      if (w.state === "claim" && tx.getOlmSessions(device.curve25519).some((r) => !w.sessionsBefore.has(r.sessionId))) w.state = "dummy";
      if (w.state === "claim") {
        (claim[userId] ??= {})[deviceId] = "signed_curve25519";
        users.set(k, 0);
        w.state = "claiming";
      } else if (w.state === "dummy") {
        this.unwedge.delete(k);
        const content = this.sessions.encrypt(tx, device, "m.dummy", {});
        if (content) {
          (dummies[userId] ??= {})[deviceId] = content;
          anyDummy = true;
        }
      }
    }
    if (users.size) {
      const id = this.ctx.addInFlight({ kind: "keys_claim", users, unwedge: true });
      out.push({ id, kind: "keys_claim", body: JSON.stringify({ one_time_keys: claim, timeout: 10_000 }) });
    }
    // Devices whose m.dummy is built leave the queue with the ratchet it advanced (same commit).
    this.saveQueue(tx);
    if (anyDummy) {
      const id = this.ctx.addInFlight({ kind: "to_device" });
      out.push({ id, kind: "to_device", eventType: "m.room.encrypted", txnId: this.ctx.txnId(id), body: JSON.stringify({ messages: dummies }) });
    }
    return out;
  }
}
