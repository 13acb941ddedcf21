/**
 * The rooms the client knows: created on first use with the client's defaults, and kept up to date
 * with the membership and encryption state each sync brings (the main thread's view of a room).
 * @internal
 */
import type { SyncChangesInput } from "../../protocol/api.js";
import { isObj } from "../json.js";
import type { PersistedRoom } from "../state/ClientStateStore.js";
import { Room, type RoomEncryptionSettings, type RoomHost } from "./Room.js";
import type { RoomEncryptionTracker } from "./RoomEncryptionTracker.js";

/** Settings a new {@link Room} starts with. @internal */
export interface RoomDefaults {
  verifyDevices: boolean;
  onlyCrossSignedDevices: boolean;
}

/** Room ID → {@link Room}. @internal */
export class RoomRegistry {
  private readonly rooms = new Map<string, Room>();
  /** Room ID → `Room.stateVersion` of the state last saved (by a sync, or read back by {@link restore}). */
  private readonly saved = new Map<string, number>();

  constructor(
    private readonly host: RoomHost,
    private readonly defaults: RoomDefaults,
    /** Told after each sync which rooms it carried (freshness of "not encrypted"). */
    private readonly encryption: Pick<RoomEncryptionTracker, "onSyncApplied">,
  ) {}

  /** The room object for an ID, created on first use. */
  get(roomId: string): Room {
    let room = this.rooms.get(roomId);
    if (!room) {
      room = new Room(this.host, roomId, this.defaults.verifyDevices);
      room.onlyCrossSignedDevices = this.defaults.onlyCrossSignedDevices;
      this.rooms.set(roomId, room);
    }
    return room;
  }

  /** Rooms seen so far. */
  all(): Room[] {
    return [...this.rooms.values()];
  }

  /**
   * Apply a sync's room state (members, `m.room.encryption`) to the rooms. `fullState`: the sync
   * is an initial one, so a joined room without `m.room.encryption` is known not to be encrypted.
   * Then the encryption tracker learns which joined rooms the sync carried.
   *
   * Call order: once per sync, in sync order.
   */
  applySyncState(rooms: SyncChangesInput["rooms"], fullState: boolean): void {
    const carried: Room[] = [];
    for (const cr of rooms) {
      const room = this.get(cr.roomId);
      for (const ev of cr.stateEvents) {
        if (!isObj(ev) || typeof ev.type !== "string" || typeof ev.state_key !== "string" || !isObj(ev.content)) continue;
        if (ev.type === "m.room.member" && typeof ev.content.membership === "string") room.members.set(ev.state_key, ev.content.membership);
        if (ev.type === "m.room.encryption" && ev.state_key === "" && !room.encrypted && typeof ev.content.algorithm === "string") {
          room.encryption = ev.content as RoomEncryptionSettings;
        }
      }
      if (room.encryption === undefined && cr.membership === "join" && fullState) room.encryption = null;
      if (cr.membership === "join") carried.push(room);
    }
    this.encryption.onSyncApplied(carried);
  }

  /** Rooms saved by an earlier run (joined rooms and their state), so `getRooms()` has them before the first sync. */
  restore(saved: PersistedRoom[]): void {
    for (const r of saved) {
      const known = this.rooms.has(r.roomId);
      const room = this.get(r.roomId);
      for (const [userId, membership] of Object.entries(r.members)) if (!room.members.has(userId)) room.members.set(userId, membership);
      if (r.encryption !== undefined && room.encryption === undefined) room.encryption = r.encryption as RoomEncryptionSettings | null;
      // A room seen only now holds exactly what was saved: not saved again until it changes.
      if (!known) this.saved.set(r.roomId, room.stateVersion);
    }
  }

  /**
   * What to persist after a sync: the joined rooms it carried whose state changed since they were
   * last saved (their state now; a sync carrying 1,000 rooms with messages only saves none), and
   * the rooms it left. Call `saved()` once the client state store committed them.
   */
  persisted(rooms: SyncChangesInput["rooms"]): { joined: PersistedRoom[]; left: string[]; saved: () => void } {
    const joined: PersistedRoom[] = [];
    const left: string[] = [];
    const versions: [string, number | null][] = [];
    for (const cr of rooms) {
      if (cr.membership === "leave") {
        left.push(cr.roomId);
        versions.push([cr.roomId, null]);
      }
      if (cr.membership !== "join") continue;
      const room = this.get(cr.roomId);
      if (this.saved.get(room.roomId) === room.stateVersion) continue;
      joined.push({ roomId: room.roomId, members: Object.fromEntries(room.members), ...(room.encryption !== undefined ? { encryption: room.encryption } : {}) });
      versions.push([room.roomId, room.stateVersion]);
    }
    const saved = (): void => {
      for (const [roomId, v] of versions) {
        if (v === null) this.saved.delete(roomId);
        else this.saved.set(roomId, v);
      }
    };
    return { joined, left, saved };
  }
}
