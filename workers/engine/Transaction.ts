import type {
  CryptoStore,
  DeviceRecord,
  InboundGroupSessionRecord,
  OlmSessionRecord,
  OutboundGroupSessionRecord,
  PendingEventRecord,
  ReplayRecord,
  RoomMemberRecord,
  RoomRecord,
  StoreChanges,
  TrackedUserRecord,
  AccountRecord,
} from "../../src/protocol/store.js";
import type { StoreMirrors } from "./StoreMirrors.js";

/**
 * The write batch of one engine call, with read-your-writes over the store: a read during the
 * call sees what the call wrote earlier. Committed with one `saveChanges` at the end of the call.
 * @internal
 */
export class Transaction {
  account: AccountRecord | undefined;
  private readonly olm = new Map<string, OlmSessionRecord>();
  private readonly inbound = new Map<string, InboundGroupSessionRecord>();
  private readonly outbound = new Map<string, OutboundGroupSessionRecord | null>();
  private readonly devices = new Map<string, DeviceRecord>();
  private readonly tracked = new Map<string, TrackedUserRecord | null>();
  private readonly rooms = new Map<string, RoomRecord>();
  private readonly members = new Map<string, RoomMemberRecord>();
  private readonly replay = new Map<string, ReplayRecord>();
  private readonly pending = new Map<string, { roomId: string; eventId: string; rec: PendingEventRecord | null }>();
  private readonly digests = new Set<string>();
  private readonly values = new Map<string, string | null>();
  syncToken: string | undefined;

  /**
   * @param trackedBase - the engine's in-memory mirror of the tracked users (user → dirty), so
   *   lookups do not scan the store; updated by {@link Transaction.applyTracked} after the commit.
   * @param mirrors - the engine's copies of committed store state (rooms, memberships, devices,
   *   outbound sessions, cross-signing settings, the waiting events' count; see `StoreMirrors`),
   *   updated by `EngineContext.commit`; without them, reads go to the store. Records read
   *   through them are frozen: never mutate a record read out.
   */
  constructor(
    private readonly store: CryptoStore,
    private readonly trackedBase?: Map<string, boolean>,
    private readonly mirrors?: StoreMirrors,
  ) {}

  // --- writes -------------------------------------------------------------------------------
  putOlmSession(r: OlmSessionRecord): void {
    this.olm.set(`${r.senderKey}|${r.sessionId}`, r);
  }
  putInbound(r: InboundGroupSessionRecord): void {
    this.inbound.set(`${r.roomId}|${r.senderKey}|${r.sessionId}`, r);
  }
  putOutbound(r: OutboundGroupSessionRecord): void {
    this.outbound.set(r.roomId, r);
  }
  deleteOutbound(roomId: string): void {
    this.outbound.set(roomId, null);
  }
  putDevice(r: DeviceRecord): void {
    this.devices.set(`${r.userId}|${r.deviceId}`, r);
  }
  putTracked(r: TrackedUserRecord): void {
    this.tracked.set(r.userId, r);
  }
  untrack(userId: string): void {
    this.tracked.set(userId, null);
  }
  putRoom(r: RoomRecord): void {
    this.rooms.set(r.roomId, r);
  }
  putMember(r: RoomMemberRecord): void {
    this.members.set(`${r.roomId}|${r.userId}`, r);
  }
  putReplay(r: ReplayRecord): void {
    this.replay.set(`${r.senderKey}|${r.sessionId}|${r.messageIndex}`, r);
  }
  putPending(r: PendingEventRecord): void {
    this.pending.set(`${r.roomId}|${r.eventId}`, { roomId: r.roomId, eventId: r.eventId, rec: r });
  }
  deletePending(roomId: string, eventId: string): void {
    this.pending.set(`${roomId}|${eventId}`, { roomId, eventId, rec: null });
  }
  addDigest(d: string): void {
    this.digests.add(d);
  }
  setValue(key: string, value: string | null): void {
    this.values.set(key, value);
  }

  // --- reads (read-your-writes) ---------------------------------------------------------------
  getOlmSessions(senderKey: string): OlmSessionRecord[] {
    const byId = new Map(this.store.getOlmSessions(senderKey).map((s) => [s.sessionId, s]));
    for (const r of this.olm.values()) if (r.senderKey === senderKey) byId.set(r.sessionId, r);
    return [...byId.values()];
  }
  getInbound(roomId: string, senderKey: string, sessionId: string): InboundGroupSessionRecord | null {
    return this.inbound.get(`${roomId}|${senderKey}|${sessionId}`) ?? this.store.getInboundGroupSession(roomId, senderKey, sessionId);
  }
  getOutbound(roomId: string): OutboundGroupSessionRecord | null {
    const w = this.outbound.get(roomId);
    if (w !== undefined) return w;
    return this.mirrors ? this.mirrors.outbound.get(roomId) : this.store.getOutboundGroupSession(roomId);
  }
  getDevice(userId: string, deviceId: string): DeviceRecord | null {
    return this.devices.get(`${userId}|${deviceId}`) ?? this.store.getDevice(userId, deviceId);
  }
  getUserDevices(userId: string): DeviceRecord[] {
    const stored = this.mirrors ? this.mirrors.devices.get(userId) : this.store.getUserDevices(userId);
    if (this.devices.size === 0) return [...stored];
    const byId = new Map<string, DeviceRecord>();
    for (const d of stored) byId.set(d.deviceId, d);
    for (const d of this.devices.values()) if (d.userId === userId) byId.set(d.deviceId, d);
    return [...byId.values()];
  }
  /** Whether `userId` is tracked (read-your-writes). */
  isTracked(userId: string): boolean {
    const w = this.tracked.get(userId);
    if (w !== undefined) return w !== null;
    return this.trackedBase ? this.trackedBase.has(userId) : this.store.getTrackedUsers().some((t) => t.userId === userId);
  }
  /** Whether `userId` is tracked and needs a `/keys/query`. */
  isDirty(userId: string): boolean {
    const w = this.tracked.get(userId);
    if (w !== undefined) return w?.dirty === true;
    return this.trackedBase ? this.trackedBase.get(userId) === true : this.store.getTrackedUsers().some((t) => t.userId === userId && t.dirty);
  }
  /** Apply this transaction's tracked-user writes to the engine's mirror (after a successful commit). */
  applyTracked(base: Map<string, boolean>): void {
    for (const [u, r] of this.tracked) {
      if (r === null) base.delete(u);
      else base.set(u, r.dirty);
    }
  }
  /** The outbound sessions this transaction writes (null: deleted), by room. */
  outboundChanges(): IterableIterator<[string, OutboundGroupSessionRecord | null]> {
    return this.outbound.entries();
  }
  /** Whether this transaction wrote devices (device caches must be dropped). */
  get wroteDevices(): boolean {
    return this.devices.size > 0;
  }
  getTracked(): Map<string, boolean> {
    const m = this.trackedBase ? new Map(this.trackedBase) : new Map(this.store.getTrackedUsers().map((t) => [t.userId, t.dirty]));
    for (const [u, r] of this.tracked) {
      if (r === null) m.delete(u);
      else m.set(u, r.dirty);
    }
    return m;
  }
  getRoom(roomId: string): RoomRecord | null {
    const w = this.rooms.get(roomId);
    if (w) return w;
    return this.mirrors ? this.mirrors.rooms.get(roomId) : this.store.getRoom(roomId);
  }
  getMembers(roomId: string): RoomMemberRecord[] {
    const stored = this.mirrors ? this.mirrors.members.get(roomId) : this.store.getRoomMembers(roomId);
    if (this.members.size === 0) return [...stored];
    const byUser = new Map<string, RoomMemberRecord>();
    for (const m of stored) byUser.set(m.userId, m);
    for (const m of this.members.values()) if (m.roomId === roomId) byUser.set(m.userId, m);
    return [...byUser.values()];
  }
  getReplay(senderKey: string, sessionId: string, index: number): ReplayRecord | null {
    return this.replay.get(`${senderKey}|${sessionId}|${index}`) ?? this.store.getReplayRecord(senderKey, sessionId, index);
  }
  /**
   * The events of `roomId` waiting for `sessionId` as this batch leaves them: the stored ones it
   * does not delete or replace, in the store's order, then the ones it adds, in the order added.
   */
  getPendingEvents(roomId: string, sessionId: string): PendingEventRecord[] {
    const stored = this.store.getPendingEvents(roomId, sessionId);
    this.mirrors?.pending.noteRead(stored);
    const out = stored.filter((p) => !this.pending.has(`${roomId}|${p.eventId}`));
    for (const v of this.pending.values()) if (v.rec && v.roomId === roomId && v.rec.sessionId === sessionId) out.push(v.rec);
    return out;
  }
  hasPending(roomId: string, eventId: string): boolean {
    return this.pending.get(`${roomId}|${eventId}`)?.rec != null;
  }
  hasDigest(d: string): boolean {
    return this.digests.has(d) || this.store.hasToDeviceDigest(d);
  }
  getValue(key: string): string | null {
    const v = this.values.get(key);
    if (v !== undefined) return v;
    return this.mirrors ? this.mirrors.values.get(key) : this.store.getValue(key);
  }

  /** The batch for `CryptoStore.saveChanges`, or null when nothing changed. */
  toChanges(): StoreChanges | null {
    const c: StoreChanges = {};
    let any = false;
    const set = <K extends keyof StoreChanges>(k: K, v: StoreChanges[K] | undefined, nonEmpty: boolean): void => {
      if (nonEmpty && v !== undefined) {
        c[k] = v;
        any = true;
      }
    };
    set("account", this.account, this.account !== undefined);
    set("olmSessions", [...this.olm.values()], this.olm.size > 0);
    set("inboundGroupSessions", [...this.inbound.values()], this.inbound.size > 0);
    const outDel = [...this.outbound].filter(([, v]) => v === null).map(([k]) => k);
    const outPut = [...this.outbound.values()].filter((v): v is OutboundGroupSessionRecord => v !== null);
    set("deletedOutboundGroupSessions", outDel, outDel.length > 0);
    set("outboundGroupSessions", outPut, outPut.length > 0);
    set("devices", [...this.devices.values()], this.devices.size > 0);
    const tr = [...this.tracked.values()].filter((v): v is TrackedUserRecord => v !== null);
    const untr = [...this.tracked].filter(([, v]) => v === null).map(([k]) => k);
    set("trackedUsers", tr, tr.length > 0);
    set("untrackedUsers", untr, untr.length > 0);
    set("rooms", [...this.rooms.values()], this.rooms.size > 0);
    set("roomMembers", [...this.members.values()], this.members.size > 0);
    set("replayRecords", [...this.replay.values()], this.replay.size > 0);
    const pPut = [...this.pending.values()].flatMap((v) => (v.rec ? [v.rec] : []));
    const pDel = [...this.pending.values()].filter((v) => v.rec === null).map(({ roomId, eventId }) => ({ roomId, eventId }));
    set("pendingEvents", pPut, pPut.length > 0);
    set("deletedPendingEvents", pDel, pDel.length > 0);
    set("toDeviceDigests", [...this.digests], this.digests.size > 0);
    set("values", Object.fromEntries(this.values), this.values.size > 0);
    set("syncToken", this.syncToken, this.syncToken !== undefined);
    return any ? c : null;
  }
}
