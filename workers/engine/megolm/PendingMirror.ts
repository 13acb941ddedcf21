/**
 * The engine's in-memory count of the events waiting for their keys (the store's
 * `countPendingEvents`, read once per process), kept from the batches the engine commits.
 *
 * A batch's `pendingEvents` may replace a stored row and its `deletedPendingEvents` may name a row
 * that was never stored, so the count follows the rows it knows to be stored: every row read from
 * the store (`Transaction.getPendingEvents`) and every row a committed batch put, minus those it
 * deleted. A put of an unknown row counts as new, a delete of an unknown row as nothing. So the
 * count is never below the store's, and above it only by events stored by an earlier process and
 * kept again by this one without having been read (an event seen again in history); the count is
 * only a cap, and the caller asks the store again ({@link PendingMirror.recount}) before refusing
 * an event. The store changes only through the engine's batches, so this holds for any store.
 *
 * Finding out whether each kept event is already stored would cost one store read per waiting
 * session and sync: more than the count it saves.
 * @internal
 */
import type { CryptoStore, PendingEventRecord, StoreChanges } from "../../../src/protocol/store.js";

/** Rows remembered as stored, at most; beyond, everything is forgotten and read again. */
const MAX_KNOWN = 100_000;

const rowKey = (roomId: string, eventId: string): string => `${roomId}\u0000${eventId}`;

/** @internal */
export class PendingMirror {
  /** Stored waiting events, or a little more (null: not read yet). */
  private count: number | null = null;
  /** Rows known to be stored: room \0 event ID. */
  private readonly stored = new Set<string>();

  constructor(private readonly store: CryptoStore) {}

  /** How many events wait in the store (committed; see the file comment), read from the store once. */
  storedCount(): number {
    return (this.count ??= this.store.countPendingEvents());
  }

  /** The exact count, read from the store again (before an event is refused for want of room). */
  recount(): number {
    this.count = null;
    return this.storedCount();
  }

  /** The stored rows of a session, just read from the store. */
  noteRead(rows: readonly PendingEventRecord[]): void {
    if (this.stored.size + rows.length > MAX_KNOWN) this.clear();
    for (const r of rows) this.stored.add(rowKey(r.roomId, r.eventId));
  }

  /** Take in a batch that was just committed. */
  apply(changes: StoreChanges): void {
    for (const r of changes.pendingEvents ?? []) {
      const k = rowKey(r.roomId, r.eventId);
      if (this.stored.has(k)) continue;
      if (this.stored.size >= MAX_KNOWN) this.clear();
      this.stored.add(k);
      if (this.count !== null) this.count++;
    }
    for (const d of changes.deletedPendingEvents ?? []) {
      if (this.stored.delete(rowKey(d.roomId, d.eventId)) && this.count !== null) this.count--;
    }
  }

  /** Forget everything (another account is loaded, or too much is remembered): read again on use. */
  clear(): void {
    this.count = null;
    this.stored.clear();
  }
}
