/**
 * Knows whether a room is encrypted: records it on the main thread and in the worker, and asks the
 * worker, then the server, when it is not known yet. A room once encrypted stays encrypted.
 *
 * Before anything is sent in plaintext, "this room is not encrypted" must be fresh: learnt from
 * the server (`GET /rooms/{id}/state/m.room.encryption/`) or from a sync that carried the room, no
 * older than the latest sync the client applied (and at most {@link PLAINTEXT_CHECK_MAX_AGE_MS}
 * old). Why: a room whose `m.room.encryption` this client has not synced yet (the sync in flight,
 * a stalled sync loop, a client that only sends) looks unencrypted; and a client with encryption
 * off must learn the room turned encrypted to refuse (`EncryptionDisabledError`), not send in the
 * clear. So the server is asked at most once per room per sync interval (issue 17), not per message:
 * - a check gives "unencrypted" as of a moment after the latest applied sync, so it holds until the
 *   next sync is applied;
 * - a sync that carries the room (its timeline since the last sync, state changes included)
 *   without `m.room.encryption` renews it until the sync after; one that does not carry the room
 *   ends it (the next plaintext send checks again), as does a failed plaintext send.
 * A check still in flight while a sync is applied is used by the send that waited for it (it is
 * newer than anything the client knew), but not by later sends.
 * @internal
 */
import { MatrixHttpError } from "../../protocol/errors.js";
import { p, type HttpClient } from "../../http/HttpClient.js";
import type { CryptoAccess } from "../CryptoAccess.js";
import type { Json } from "../json.js";
import type { Room, RoomEncryptionSettings } from "./Room.js";

/** Longest a "not encrypted" verdict is trusted for a plaintext send when no sync ends it earlier. */
export const PLAINTEXT_CHECK_MAX_AGE_MS = 30_000;

/** When a room was last known not to be encrypted: the sync count then (see the file comment), and the time. */
interface Verdict {
  /** Fresh while the number of applied syncs is at most this. */
  validThroughSync: number;
  at: number;
}

/** A room's encryption state, main thread and worker, and the freshness of "not encrypted". @internal */
export class RoomEncryptionTracker {
  /** Syncs applied so far (see {@link RoomEncryptionTracker.onSyncApplied}). */
  private syncs = 0;
  /** Room ID → when it was last known not to be encrypted. */
  private readonly unencrypted = new Map<string, Verdict>();

  constructor(
    private readonly http: HttpClient,
    private readonly crypto: CryptoAccess,
    private readonly now: () => number = Date.now,
  ) {}

  /** Record that a room is encrypted (main thread, and the worker once it is set up). */
  async note(room: Room, encryption: RoomEncryptionSettings): Promise<void> {
    if (!room.encrypted) room.encryption = encryption;
    this.unencrypted.delete(room.roomId);
    if (this.crypto.ready) await this.crypto.api.setRoomEncryption(room.roomId, room.encryption as Json);
  }

  /**
   * A sync's room state was applied to the rooms (`RoomRegistry.applySyncState`): the rooms in
   * `carried` (their sections were in the sync) that are still not encrypted are known so as of
   * this sync; every other room's verdict is stale from now on.
   *
   * Call order: once per sync, in sync order, after the sync's `m.room.encryption` events were applied.
   */
  onSyncApplied(carried: Iterable<Room>): void {
    this.syncs++;
    const at = this.now();
    for (const room of carried) {
      if (room.encryption === null) this.unencrypted.set(room.roomId, { validThroughSync: this.syncs, at });
      else if (room.encrypted) this.unencrypted.delete(room.roomId);
    }
  }

  /** A plaintext send to the room failed: its verdict is stale (the next plaintext send checks again). */
  invalidate(room: Room): void {
    this.unencrypted.delete(room.roomId);
  }

  /**
   * Before sending in plaintext: make sure the room's encryption state is fresh (see the file
   * comment), asking the worker, then the server, when it is not. Afterwards `room.encrypted` says
   * whether to encrypt. Rejects with the server's error when the state cannot be learnt.
   *
   * Locking rule: callers sending an event hold the room's send lock, so concurrent sends to one
   * room make one check.
   */
  async ensureFresh(room: Room): Promise<void> {
    if (room.encrypted) return;
    const v = this.unencrypted.get(room.roomId);
    if (room.encryption === null && v && v.validThroughSync >= this.syncs && this.now() - v.at < PLAINTEXT_CHECK_MAX_AGE_MS) return;
    await this.refresh(room);
  }

  /** Learn whether a room is encrypted now: the worker first, then the server. */
  async refresh(room: Room): Promise<void> {
    if (room.encrypted) return;
    // Taken before asking: a sync applied while the answer travels makes the answer stale.
    const verdict: Verdict = { validThroughSync: this.syncs, at: this.now() };
    if (this.crypto.ready) {
      const info = await this.crypto.api.getRoomInfo(room.roomId);
      if (info.encryption) {
        if (!room.encrypted) room.encryption = info.encryption as RoomEncryptionSettings;
        this.unencrypted.delete(room.roomId);
        return;
      }
    }
    let content: Json | null;
    try {
      content = await this.http.request<Json>("GET", p`/_matrix/client/v3/rooms/${room.roomId}/state/m.room.encryption/`);
    } catch (err) {
      if (!(err instanceof MatrixHttpError && err.status === 404)) throw err;
      content = null;
    }
    if (content !== null && typeof content.algorithm === "string") {
      await this.note(room, content as RoomEncryptionSettings);
    } else if (!room.encrypted) {
      // (a sync applied meanwhile may have brought the room's m.room.encryption: it stays)
      room.encryption = null;
      this.unencrypted.set(room.roomId, verdict);
    }
  }
}
