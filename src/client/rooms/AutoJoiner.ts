/**
 * The `autoJoin` option: joins the rooms the client is invited to, all of them or those an
 * allow-list callback accepts. A refused invite is left as it is; a failed join is logged and
 * reported as an `error` event (the invite stays, and is tried again when it shows up again).
 * @internal
 */
import type { Logger } from "../../pure/logger.js";
import { emitError, type ClientEventSink, type MatrixClientEvents } from "../events.js";

/**
 * Which invites to accept: `true` for all, or a callback given the room ID and the inviter (null
 * when the invite does not say) that resolves true to join.
 */
export type AutoJoinPolicy = boolean | ((roomId: string, inviter: string | null) => boolean | Promise<boolean>);

/** What auto-joining needs. @internal */
export interface AutoJoinerDeps {
  /** Where `room.invite` is emitted, and errors are reported. */
  events: ClientEventSink & { on(event: "room.invite", fn: MatrixClientEvents["room.invite"]): unknown };
  policy: AutoJoinPolicy;
  join: (roomId: string) => Promise<unknown>;
  log: Logger;
}

/** Joins invited rooms per the policy, one attempt at a time per room. @internal */
export class AutoJoiner {
  /** Rooms being decided or joined now (an invite seen twice meanwhile is not joined twice). */
  private readonly pending = new Set<string>();

  constructor(private readonly deps: AutoJoinerDeps) {
    deps.events.on("room.invite", (roomId, inviter) => void this.onInvite(roomId, inviter));
  }

  private async onInvite(roomId: string, inviter: string | null): Promise<void> {
    const { policy, log } = this.deps;
    if (policy === false || this.pending.has(roomId)) return;
    this.pending.add(roomId);
    try {
      if (policy !== true && !(await policy(roomId, inviter))) {
        log.info(`autoJoin: not joining ${roomId} (invited by ${inviter ?? "unknown"}): refused by the allow-list`);
        return;
      }
      await this.deps.join(roomId);
      log.info(`autoJoin: joined ${roomId}`);
    } catch (err) {
      log.warn(`autoJoin: could not join ${roomId}: ${String(err)}`);
      try {
        emitError(this.deps.events, err);
      } catch {
        // an error listener that throws is ignored
      }
    } finally {
      this.pending.delete(roomId);
    }
  }
}
