/**
 * What the engine knows of rooms: encryption settings (never turned off), history visibility,
 * memberships (ours cached), and tracking the members of encrypted rooms.
 * @internal
 */
import { MEGOLM_ALGORITHM, type SyncChangesResult } from "../../../src/protocol/api.js";
import { InvalidArgumentError, UnsupportedAlgorithmError } from "../../../src/protocol/errors.js";
import type { RoomMemberRecord } from "../../../src/protocol/store.js";
import { isObj, isStr, type EngineContext, type Json } from "../EngineContext.js";
import type { DeviceTracker } from "../identities/DeviceTracker.js";
import type { Transaction } from "../Transaction.js";
import { membersLoadedKey } from "./RoomMirror.js";

/** @internal */
export class RoomState {
  /** Our own membership per room (read per sync for every room). */
  private readonly myMembership = new Map<string, string | undefined>();

  constructor(
    private readonly ctx: EngineContext,
    private readonly devices: DeviceTracker,
  ) {}

  /** Forget cached memberships (another account was loaded). */
  reset(): void {
    this.myMembership.clear();
  }

  /** Our own membership in a room. */
  myMembershipIn(tx: Transaction, roomId: string): string | undefined {
    if (!this.myMembership.has(roomId)) this.myMembership.set(roomId, tx.getMembers(roomId).find((m) => m.userId === this.ctx.me().userId)?.membership);
    return this.myMembership.get(roomId);
  }

  private putMember(tx: Transaction, m: RoomMemberRecord): void {
    tx.putMember(m);
    if (this.ctx.hasAccount && m.userId === this.ctx.me().userId) this.myMembership.set(m.roomId, m.membership);
  }

  /**
   * Apply one room of a sync: its state events, and our membership from the section it came in
   * (join / invite / leave). Leaving discards the room's outbound session.
   */
  applySyncRoom(tx: Transaction, room: unknown, result: SyncChangesResult): void {
    if (!isObj(room) || !isStr(room.roomId)) return;
    const me = this.ctx.me();
    this.applyState(tx, room.roomId, Array.isArray(room.stateEvents) ? room.stateEvents : [], result);
    if ((room.membership === "join" || room.membership === "invite") && this.myMembershipIn(tx, room.roomId) !== room.membership) {
      this.putMember(tx, { roomId: room.roomId, userId: me.userId, membership: room.membership });
    }
    if (room.membership === "leave") {
      this.putMember(tx, { roomId: room.roomId, userId: me.userId, membership: "leave" });
      if (tx.getOutbound(room.roomId)) tx.deleteOutbound(room.roomId);
    }
  }

  private applyState(tx: Transaction, roomId: string, events: unknown[], result: SyncChangesResult): void {
    const stored = tx.getRoom(roomId);
    let room = stored ?? { roomId, encryption: null, historyVisibility: null };
    let roomChanged = false;
    const wasEncrypted = room.encryption !== null;
    const memberUsers: { userId: string; membership: string }[] = [];
    for (const ev of events) {
      if (!isObj(ev) || !isStr(ev.type) || !isObj(ev.content) || !isStr(ev.state_key)) continue;
      if (ev.type === "m.room.encryption" && ev.state_key === "") {
        if (room.encryption === null && isStr(ev.content.algorithm)) {
          room = { ...room, encryption: ev.content };
          roomChanged = true;
        } else if (room.encryption !== null && ev.content.algorithm !== room.encryption.algorithm) {
          this.ctx.log.warn(`ignoring a change of encryption algorithm in ${roomId}: encryption cannot be turned off or changed`);
        }
      } else if (ev.type === "m.room.history_visibility" && ev.state_key === "" && isStr(ev.content.history_visibility)) {
        room = { ...room, historyVisibility: ev.content.history_visibility };
        roomChanged = true;
      } else if (ev.type === "m.room.member" && ev.state_key.startsWith("@") && isStr(ev.content.membership)) {
        this.putMember(tx, { roomId, userId: ev.state_key, membership: ev.content.membership });
        memberUsers.push({ userId: ev.state_key, membership: ev.content.membership });
      }
    }
    if (roomChanged || !stored) tx.putRoom(room);
    if (!wasEncrypted && room.encryption !== null) result.encryptedRooms.push({ roomId, encryption: room.encryption });
    // Track every member when the room just became encrypted, else only members whose membership
    // this sync changed (no per-sync scan of big rooms).
    if (room.encryption !== null) this.trackMembers(tx, roomId, wasEncrypted ? memberUsers : null);
  }

  private trackMembers(tx: Transaction, roomId: string, only: { userId: string; membership: string }[] | null = null): void {
    for (const m of only ?? tx.getMembers(roomId)) {
      if ((m.membership === "join" || m.membership === "invite") && !tx.isTracked(m.userId)) this.devices.markDirty(tx, m.userId);
    }
  }

  /** The application learnt the room's encryption (e.g. from `/state`): turn it on, never off. */
  setEncryption(tx: Transaction, roomId: string, encryption: Json): void {
    if (!isStr(encryption.algorithm)) throw new InvalidArgumentError("encryption content needs an algorithm");
    const room = tx.getRoom(roomId) ?? { roomId, encryption: null, historyVisibility: null };
    if (room.encryption === null) tx.putRoom({ ...room, encryption });
    this.trackMembers(tx, roomId);
  }

  /** The room's full member list (from `/members`). */
  setMembers(tx: Transaction, roomId: string, members: { userId: string; membership: string }[]): void {
    const room = tx.getRoom(roomId) ?? { roomId, encryption: null, historyVisibility: null };
    tx.putRoom(room);
    for (const m of members) if (isStr(m.userId) && isStr(m.membership)) this.putMember(tx, { roomId, userId: m.userId, membership: m.membership });
    tx.setValue(membersLoadedKey(roomId), "1");
    if (room.encryption) this.trackMembers(tx, roomId);
  }

  /** Encryption settings and whether the full member list was loaded (committed state, kept in memory by `RoomMirror`). */
  info(roomId: string): { encryption: Json | null; membersKnown: boolean } {
    const { rooms } = this.ctx.mirrors;
    return { encryption: rooms.get(roomId)?.encryption ?? null, membersKnown: rooms.membersKnown(roomId) };
  }

  /** The room's encryption settings; throws unless it is a Megolm room. */
  requireMegolm(tx: Transaction, roomId: string): Json {
    const room = tx.getRoom(roomId);
    if (!room || !room.encryption) throw new InvalidArgumentError(`room ${roomId} is not encrypted`);
    if (room.encryption.algorithm !== MEGOLM_ALGORITHM) throw new UnsupportedAlgorithmError(roomId, room.encryption.algorithm);
    return room.encryption;
  }

  /** User IDs whose devices receive the room key: joined members, invited ones unless history is "joined" only, and us. */
  recipientUsers(tx: Transaction, roomId: string): string[] {
    const room = tx.getRoom(roomId);
    const withInvited = room?.historyVisibility !== "joined";
    const users = new Set<string>();
    for (const m of tx.getMembers(roomId)) {
      if (m.membership === "join" || (withInvited && m.membership === "invite")) users.add(m.userId);
    }
    users.add(this.ctx.me().userId);
    return [...users];
  }
}
