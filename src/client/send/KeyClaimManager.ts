/**
 * Single flight over "which devices lack an Olm session" and the keys/claim for them (DESIGN §3,
 * second rule), like matrix-js-sdk's `KeyClaimManager`. Every claim goes through it: room-key
 * shares (`RoomSendQueue`), key forwarding (`KeySharingManager`) and the claims that repair a
 * broken Olm channel (unwedging, from `outgoingRequests()` in `OutgoingRequestsLoop`).
 *
 * Why both together: if two callers asked the engine for missing sessions at the same time, both
 * would be told to claim a one-time key of the same device, two sessions would be made and one
 * key wasted. Under this lock the second caller asks after the first claim was answered, and finds
 * the session made.
 * @internal
 */
import type { OutgoingRequest } from "../../protocol/api.js";
import { KeyedMutex } from "../../util/KeyedMutex.js";
import type { OutgoingRequestSender } from "./OutgoingRequestSender.js";

/** The global key-claim lock. @internal */
export class KeyClaimManager {
  private readonly lock = new KeyedMutex();

  constructor(private readonly sender: OutgoingRequestSender) {}

  /**
   * Under the claim lock, run `prepare` (an engine call that finds devices without an Olm session,
   * such as `prepareRoomKeyShare`, `prepareKeyForwarding` or `outgoingRequests`) and send the
   * keys/claim requests that `claimOf` picks from its result, if any, one after another; the lock
   * is released once they are answered. Resolves with `prepare`'s result; rejects with its error or
   * the first failed claim's.
   *
   * Locking rule: callers may hold a room's lock (`RoomSendQueue`); nothing under this lock takes one.
   */
  run<T>(prepare: () => Promise<T>, claimOf: (prepared: T) => OutgoingRequest | readonly OutgoingRequest[] | null): Promise<T> {
    return this.lock.run("claim", async () => {
      const prepared = await prepare();
      const picked = claimOf(prepared);
      for (const claim of picked === null ? [] : "kind" in picked ? [picked] : picked) await this.sender.send(claim);
      return prepared;
    });
  }
}
