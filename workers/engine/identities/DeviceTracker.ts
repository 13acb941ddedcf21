/**
 * Device tracking: which users we track and whose lists are stale, `/keys/query` requests and
 * their answers (self-signature checks, refused key changes), and device lookups, always by user
 * AND key.
 * @internal
 */
import type { OutgoingRequest } from "../../../src/protocol/api.js";
import { UnknownDeviceKeysError } from "../../../src/protocol/errors.js";
import type { DeviceRecord } from "../../../src/protocol/store.js";
import type { AccountKeys } from "../account/AccountKeys.js";
import { isObj, isStr, type EngineContext, type Json } from "../EngineContext.js";
import type { Transaction } from "../Transaction.js";

/** Cap on the device-lookup cache before it is dropped. */
const LOOKUP_CACHE_MAX = 10_000;

/** How long a user a `/keys/query` answer left out is not asked for again. */
export const FAILED_QUERY_RETRY_MS = 60_000;

/** @internal */
export class DeviceTracker {
  /** Bumped each time a user's device list is reported changed; a query answer only clears dirty if unchanged. */
  private readonly dirtyGeneration = new Map<string, number>();
  /** `user\0curve25519` → device (or null), cleared whenever devices are written. */
  private readonly byUserAndKey = new Map<string, DeviceRecord | null>();
  /**
   * Users a `/keys/query` answer left out (their server failed, or no such user) → when. They stay
   * stale but are not asked for again until {@link FAILED_QUERY_RETRY_MS} passed or their list is
   * reported changed, so a send does not query them over and over.
   */
  private readonly failedQueries = new Map<string, number>();

  constructor(
    private readonly ctx: EngineContext,
    private readonly account: AccountKeys,
  ) {
    ctx.onCommit((tx) => {
      if (tx.wroteDevices) this.byUserAndKey.clear();
    });
  }

  /** Load the tracked users of the account that was just loaded (an empty mirror for a new one). */
  load(existingAccount: boolean): void {
    this.ctx.tracked = new Map(existingAccount ? this.ctx.store.getTrackedUsers().map((t) => [t.userId, t.dirty]) : []);
    this.byUserAndKey.clear();
  }

  /** Mark a user's device list stale (tracking the user from now on). */
  markDirty(tx: Transaction, userId: string): void {
    this.failedQueries.delete(userId);
    this.dirtyGeneration.set(userId, (this.dirtyGeneration.get(userId) ?? 0) + 1);
    tx.putTracked({ userId, dirty: true });
  }

  /** Apply a sync's `device_lists`: changed users become stale, users who left are untracked (never ourselves). */
  onDeviceLists(tx: Transaction, deviceLists: unknown): void {
    const me = this.ctx.me();
    const dl = isObj(deviceLists) ? deviceLists : {};
    for (const u of Array.isArray(dl.changed) ? dl.changed : []) {
      if (isStr(u) && tx.isTracked(u)) this.markDirty(tx, u);
    }
    for (const u of Array.isArray(dl.left) ? dl.left : []) {
      if (isStr(u) && u !== me.userId && tx.isTracked(u)) tx.untrack(u);
    }
  }

  /**
   * Whether `userId`'s device list must be fetched before we rely on it: untracked, or stale and
   * not a user a recent answer left out (those are retried after {@link FAILED_QUERY_RETRY_MS}).
   */
  needsQuery(tx: Transaction, userId: string): boolean {
    if (!tx.isTracked(userId)) return true;
    if (!tx.isDirty(userId)) return false;
    const failedAt = this.failedQueries.get(userId);
    return failedAt === undefined || this.ctx.now() - failedAt >= FAILED_QUERY_RETRY_MS;
  }

  /** Stale users with no `/keys/query` out for them (users a recent answer left out wait, see {@link needsQuery}). */
  usersToQuery(tx: Transaction): string[] {
    const dirty = [...tx.getTracked()].filter(([u, d]) => d && this.needsQuery(tx, u)).map(([u]) => u);
    const queried = new Set<string>();
    for (const r of this.ctx.inFlight.values()) if (r.kind === "keys_query") for (const u of r.users!.keys()) queried.add(u);
    return dirty.filter((u) => !queried.has(u));
  }

  /** A `/keys/query` for `users`, remembering each user's dirty generation. */
  buildKeysQuery(users: string[]): OutgoingRequest {
    const gens = new Map(users.map((u) => [u, this.dirtyGeneration.get(u) ?? 0]));
    const id = this.ctx.addInFlight({ kind: "keys_query", users: gens });
    const device_keys: Record<string, string[]> = {};
    for (const u of users) device_keys[u] = [];
    return { id, kind: "keys_query", body: JSON.stringify({ device_keys, timeout: 10_000 }) };
  }

  /**
   * Record the devices of a `/keys/query` answer: self-signatures checked, identity-key changes of
   * a known device refused, vanished devices marked deleted, users cleared unless reported changed
   * since the query left.
   */
  onKeysQueried(tx: Transaction, response: Json, users: Map<string, number>): void {
    const me = this.ctx.me();
    const deviceKeys = isObj(response.device_keys) ? response.device_keys : {};
    const failures = isObj(response.failures) ? response.failures : {};
    if (Object.keys(failures).length) this.ctx.log.warn(`keys/query failures for servers: ${Object.keys(failures).join(", ")}`);
    for (const [userId, gen] of users) {
      const devices = deviceKeys[userId];
      if (!isObj(devices)) {
        // Server failure or unknown user: stays stale, asked again later (not at every send).
        this.failedQueries.set(userId, this.ctx.now());
        continue;
      }
      this.failedQueries.delete(userId);
      const seen = new Set<string>();
      for (const [deviceId, payload] of Object.entries(devices)) {
        const rec = this.validateDeviceKeys(userId, deviceId, payload);
        if (!rec) continue;
        seen.add(deviceId);
        if (userId === me.userId && deviceId === me.deviceId) {
          if (rec.ed25519 !== me.ed25519 || rec.curve25519 !== me.curve25519) {
            this.ctx.log.error("the server lists different identity keys for this very device; ignoring them");
          }
          continue;
        }
        const existing = tx.getDevice(userId, deviceId);
        if (existing) {
          if (existing.ed25519 !== rec.ed25519 || existing.curve25519 !== rec.curve25519) {
            this.ctx.log.warn(`device ${deviceId} of ${userId} changed its identity keys; refusing the change and keeping the known keys`);
            continue;
          }
          // Same identity keys: take the newest signatures (cross-signing adds some) and name.
          if (existing.deleted || existing.displayName !== rec.displayName || existing.keysJson !== rec.keysJson) {
            const upd: DeviceRecord = { ...existing, deleted: false, keysJson: rec.keysJson };
            if (rec.displayName !== undefined) upd.displayName = rec.displayName;
            tx.putDevice(upd);
          }
        } else {
          tx.putDevice(rec);
        }
      }
      for (const d of tx.getUserDevices(userId)) {
        if (!seen.has(d.deviceId) && !d.deleted) tx.putDevice({ ...d, deleted: true });
      }
      if (tx.isTracked(userId) && (this.dirtyGeneration.get(userId) ?? 0) === gen) tx.putTracked({ userId, dirty: false });
    }
  }

  private validateDeviceKeys(userId: string, deviceId: string, payload: unknown): DeviceRecord | null {
    const bad = (why: string): null => {
      this.ctx.log.warn(`rejected device keys of ${userId}/${deviceId}: ${why}`);
      return null;
    };
    if (!isObj(payload)) return bad("not an object");
    if (payload.user_id !== userId || payload.device_id !== deviceId) return bad("user_id/device_id do not match");
    const keys = payload.keys;
    if (!isObj(keys)) return bad("no keys");
    const ed = keys[`ed25519:${deviceId}`];
    const curve = keys[`curve25519:${deviceId}`];
    if (!isStr(ed) || !isStr(curve)) return bad("missing identity keys");
    if (!this.account.verifySignature(payload, userId, deviceId, ed)) return bad("bad self-signature");
    const algorithms = Array.isArray(payload.algorithms) ? payload.algorithms.filter(isStr) : [];
    const unsigned = isObj(payload.unsigned) ? payload.unsigned : {};
    const rec: DeviceRecord = {
      userId,
      deviceId,
      ed25519: ed,
      curve25519: curve,
      algorithms,
      verified: false,
      blacklisted: false,
      ignored: false,
      deleted: false,
      keysJson: JSON.stringify(payload),
      firstSeenTs: this.ctx.now(),
    };
    if (isStr(unsigned.device_display_name)) rec.displayName = unsigned.device_display_name;
    return rec;
  }

  /**
   * The device of `userId` that owns the curve25519 key `curve25519`, or null. Scoped to the user:
   * another user publishing a copy of the key (signed with their own ed25519 key) changes nothing
   * for `userId`'s messages. Cached between device writes.
   */
  deviceByKey(tx: Transaction, userId: string, curve25519: string): DeviceRecord | null {
    if (tx.wroteDevices) return tx.getUserDevices(userId).find((d) => d.curve25519 === curve25519) ?? null;
    const key = `${userId}\u0000${curve25519}`;
    let d = this.byUserAndKey.get(key);
    if (d === undefined) {
      d = this.ctx.store.getUserDevices(userId).find((x) => x.curve25519 === curve25519) ?? null;
      if (this.byUserAndKey.size > LOOKUP_CACHE_MAX) this.byUserAndKey.clear();
      this.byUserAndKey.set(key, d);
    }
    return d;
  }

  /** Set a device's local trust flags (into `tx`); {@link UnknownDeviceKeysError} for a device whose keys we do not have. */
  setFlags(tx: Transaction, userId: string, deviceId: string, flags: { verified?: boolean; blacklisted?: boolean; ignored?: boolean }): DeviceRecord {
    const d = tx.getDevice(userId, deviceId);
    if (!d || !d.ed25519) throw new UnknownDeviceKeysError(userId, deviceId);
    const upd: DeviceRecord = { ...d };
    if (typeof flags.verified === "boolean") upd.verified = flags.verified;
    if (typeof flags.blacklisted === "boolean") upd.blacklisted = flags.blacklisted;
    if (typeof flags.ignored === "boolean") upd.ignored = flags.ignored;
    tx.putDevice(upd);
    return upd;
  }
}
