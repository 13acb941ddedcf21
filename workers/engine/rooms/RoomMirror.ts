/**
 * The engine's in-memory copy of the committed room records (encryption settings, history
 * visibility) and of the "full member list loaded" flags, so that a sync touching many rooms, and
 * every decrypt or send, reads a room from the store at most once per process.
 *
 * Each room is read from the store on first use, then kept up to date from the batches the engine
 * commits ({@link RoomMirror.apply}, run by `EngineContext.commit` after `saveChanges` returned):
 * the store changes only through those batches, so the copy is exact for any store. Reads inside
 * a transaction see that transaction's own writes first (`Transaction.getRoom`), so a room that
 * turns encrypted is seen encrypted by the rest of the call that saw the event, and by every call
 * after its commit. A failed commit changes neither the store nor the copy. A restarted worker
 * starts with an empty copy and reads each room again once.
 * @internal
 */
import type { CryptoStore, RoomRecord, StoreChanges } from "../../../src/protocol/store.js";

/** The value key of a room's "full member list loaded" flag. @internal */
export const membersLoadedKey = (roomId: string): string => `members_loaded:${roomId}`;
const MEMBERS_LOADED_PREFIX = "members_loaded:";

/** Rooms remembered as absent from the store, at most (any room ID can be asked about). */
const MAX_ABSENT = 10_000;

/** @internal */
export class RoomMirror {
  /** Room ID → committed record; null: not in the store. */
  private readonly rooms = new Map<string, RoomRecord | null>();
  private absent = 0;
  /** Room ID → whether its full member list was loaded (committed). */
  private readonly membersLoaded = new Map<string, boolean>();

  constructor(private readonly store: CryptoStore) {}

  /** The committed record of a room (read from the store on first use), or null. Never mutate it. */
  get(roomId: string): RoomRecord | null {
    const known = this.rooms.get(roomId);
    if (known !== undefined) return known;
    const r = this.store.getRoom(roomId);
    if (r === null) {
      if (this.absent >= MAX_ABSENT) this.forgetAbsent();
      this.absent++;
    }
    this.rooms.set(roomId, r);
    return r;
  }

  /** Whether the room's full member list was loaded (committed; read from the store on first use). */
  membersKnown(roomId: string): boolean {
    let v = this.membersLoaded.get(roomId);
    if (v === undefined) {
      v = this.store.getValue(membersLoadedKey(roomId)) === "1";
      if (v || this.membersLoaded.size < MAX_ABSENT) this.membersLoaded.set(roomId, v);
    }
    return v;
  }

  /** Take in a batch that was just committed. */
  apply(changes: StoreChanges): void {
    for (const r of changes.rooms ?? []) {
      if (this.rooms.get(r.roomId) === null) this.absent--;
      this.rooms.set(r.roomId, r);
    }
    if (changes.values) {
      for (const [k, v] of Object.entries(changes.values)) {
        if (k.startsWith(MEMBERS_LOADED_PREFIX)) this.membersLoaded.set(k.slice(MEMBERS_LOADED_PREFIX.length), v === "1");
      }
    }
  }

  /** Forget everything (another account is loaded). */
  clear(): void {
    this.rooms.clear();
    this.membersLoaded.clear();
    this.absent = 0;
  }

  private forgetAbsent(): void {
    for (const [k, v] of this.rooms) if (v === null) this.rooms.delete(k);
    this.absent = 0;
  }
}
