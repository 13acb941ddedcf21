/**
 * The engine's in-memory count of the events waiting for their keys (the store's
 * `countPendingEvents`, read once per process), kept exact from the batches the engine commits.
 *
 * A batch's `pendingEvents` may replace a stored row and its `deletedPendingEvents` may name a row
 * that was never stored, so the count follows the rows it knows to be stored: every row read from
 * the store (`Transaction.getPendingEvents`, and the per-session lookup before an event is kept,
 * {@link PendingMirror.isStored}), every row a committed batch put, minus those it deleted. A put
 * of an unknown row counts as new, a delete of an unknown row as nothing. The store changes only
 * through the engine's batches, so this is exact for any store (an event ID put again under another
 * session than the stored row's, which only a hostile server sends, counts once too many until the
 * next restart).
 * @internal
 */
import type { CryptoStore, PendingEventRecord, StoreChanges } from "../../../src/protocol/store.js";

/** Sessions whose stored rows are remembered, at most; beyond, everything is forgotten and re-read. */
const MAX_SESSIONS = 50_000;

const rowKey = (roomId: string, eventId: string): string => `${roomId}\u0000${eventId}`;
const sessionKey = (roomId: string, sessionId: string): string => `${roomId}\u0000${sessionId}`;

/** @internal */
export class PendingMirror {
  /** Stored waiting events (null: not read yet). */
  private count: number | null = null;
  /** Rows known to be stored: room \0 event ID. */
  private readonly stored = new Set<string>();
  /** Room \0 session ID whose stored rows are all in {@link stored}. */
  private readonly sessions = new Set<string>();

  constructor(private readonly store: CryptoStore) {}

  /** How many events wait in the store (committed), read from the store once. */
  storedCount(): number {
    return (this.count ??= this.store.countPendingEvents());
  }

  /** The stored rows of (room, session), just read from the store. */
  noteRead(roomId: string, sessionId: string, rows: readonly PendingEventRecord[]): void {
    if (this.sessions.size >= MAX_SESSIONS) this.clear();
    for (const r of rows) this.stored.add(rowKey(r.roomId, r.eventId));
    this.sessions.add(sessionKey(roomId, sessionId));
  }

  /** Whether the event waits in the store for that session (its rows read from the store once). */
  isStored(roomId: string, sessionId: string, eventId: string): boolean {
    if (!this.sessions.has(sessionKey(roomId, sessionId))) this.noteRead(roomId, sessionId, this.store.getPendingEvents(roomId, sessionId));
    return this.stored.has(rowKey(roomId, eventId));
  }

  /** Take in a batch that was just committed. */
  apply(changes: StoreChanges): void {
    for (const r of changes.pendingEvents ?? []) {
      const k = rowKey(r.roomId, r.eventId);
      if (this.stored.has(k)) continue;
      this.stored.add(k);
      if (this.count !== null) this.count++;
    }
    for (const d of changes.deletedPendingEvents ?? []) {
      if (this.stored.delete(rowKey(d.roomId, d.eventId)) && this.count !== null) this.count--;
    }
  }

  /** Forget everything (another account is loaded, or too much is remembered). */
  clear(): void {
    this.count = null;
    this.stored.clear();
    this.sessions.clear();
  }
}
