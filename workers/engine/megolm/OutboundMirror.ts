/**
 * The engine's copy of the committed outbound Megolm session records, by room (see
 * `StoreMirrors` for the coherence rule). A committed put or delete gives a room's whole record,
 * so every batch updates the copy, read or not.
 *
 * The live ratchet of a session in use is held apart (`OutboundRatchets`): this copy is the
 * committed record, `pickle` and `messageCount` as last written.
 * @internal
 */
import type { CryptoStore, OutboundGroupSessionRecord, StoreChanges } from "../../../src/protocol/store.js";

/** Rooms remembered, at most (records and absences); beyond, everything is read again. */
const MAX_ROOMS = 10_000;

/** A frozen copy of a record (its recipient list too). */
function frozen(r: OutboundGroupSessionRecord): OutboundGroupSessionRecord {
  return Object.freeze({ ...r, sharedWith: Object.freeze(r.sharedWith.map((e) => Object.freeze({ ...e }))) as OutboundGroupSessionRecord["sharedWith"] });
}

/** @internal */
export class OutboundMirror {
  /** Room ID → committed record; null: none stored. */
  private readonly byRoom = new Map<string, OutboundGroupSessionRecord | null>();

  constructor(private readonly store: CryptoStore) {}

  /** The room's committed record (read from the store on first use), or null. Frozen. */
  get(roomId: string): OutboundGroupSessionRecord | null {
    const known = this.byRoom.get(roomId);
    if (known !== undefined) return known;
    const stored = this.store.getOutboundGroupSession(roomId);
    const r = stored && frozen(stored);
    this.set(roomId, r);
    return r;
  }

  /** Take in a batch that was just committed (deletions before puts, as the store applies them). */
  apply(changes: StoreChanges): void {
    for (const roomId of changes.deletedOutboundGroupSessions ?? []) this.set(roomId, null);
    for (const r of changes.outboundGroupSessions ?? []) this.set(r.roomId, frozen(r));
  }

  /** Forget everything. */
  clear(): void {
    this.byRoom.clear();
  }

  private set(roomId: string, r: OutboundGroupSessionRecord | null): void {
    if (!this.byRoom.has(roomId) && this.byRoom.size >= MAX_ROOMS) this.byRoom.clear();
    this.byRoom.set(roomId, r);
  }
}
