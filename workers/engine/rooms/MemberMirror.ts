/**
 * The engine's copy of the committed room memberships, by room (see `StoreMirrors` for the
 * coherence rule): a room's members are read from the store on first use, then every committed
 * membership of that room is applied to the copy. Memberships of rooms not read yet are left to
 * the store (a batch names only the members it changes, not the room's whole list).
 * @internal
 */
import type { CryptoStore, RoomMemberRecord, StoreChanges } from "../../../src/protocol/store.js";

/** Memberships remembered, at most, over all rooms; beyond, everything is read again. */
const MAX_MEMBERS = 200_000;

/** @internal */
export class MemberMirror {
  /** Room ID → user ID → committed membership (frozen). */
  private readonly byRoom = new Map<string, Map<string, RoomMemberRecord>>();
  private size = 0;

  constructor(private readonly store: CryptoStore) {}

  /** The room's committed memberships (read from the store on first use). Frozen records, any order. */
  get(roomId: string): Iterable<RoomMemberRecord> {
    const known = this.byRoom.get(roomId);
    if (known) return known.values();
    const rows = this.store.getRoomMembers(roomId);
    // A room bigger than the whole budget is not kept: read again each time.
    if (rows.length > MAX_MEMBERS) return rows;
    if (this.size + rows.length > MAX_MEMBERS) this.clear();
    const m = new Map(rows.map((r) => [r.userId, Object.freeze({ ...r })]));
    this.byRoom.set(roomId, m);
    this.size += m.size;
    return m.values();
  }

  /** Take in a batch that was just committed. */
  apply(changes: StoreChanges): void {
    for (const r of changes.roomMembers ?? []) {
      const m = this.byRoom.get(r.roomId);
      if (!m) continue;
      if (!m.has(r.userId)) this.size++;
      m.set(r.userId, Object.freeze({ ...r }));
    }
    if (this.size > MAX_MEMBERS) this.clear();
  }

  /** Forget everything. */
  clear(): void {
    this.byRoom.clear();
    this.size = 0;
  }
}
