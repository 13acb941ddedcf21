/**
 * The outgoing-requests loop: pulls `outgoingRequests()` from the engine (key uploads, key queries,
 * to-device messages) and sends them, single flight with a "run again" flag (DESIGN §3, third rule).
 *
 * Why single flight: two overlapping passes would both get the same requests from the engine and
 * send them twice. Why the flag: a trigger that arrives while a pass runs may be for state the
 * running pass read before it changed (a sync's device-list changes), so exactly one more pass runs
 * after it, as in matrix-js-sdk's `OutgoingRequestsManager`. The requests are asked for under the
 * claim lock (`KeyClaimManager`), which sends their keys/claim (unwedging a broken Olm channel):
 * otherwise a room-key share could claim the same device at the same time.
 * @internal
 */
import { SingleFlight } from "../../util/KeyedMutex.js";
import type { Logger } from "../../pure/logger.js";
import type { CryptoAccess } from "../CryptoAccess.js";
import { emitError, type ClientEventSink } from "../events.js";
import type { KeyClaimManager } from "./KeyClaimManager.js";
import type { OutgoingRequestSender } from "./OutgoingRequestSender.js";

/** What the loop needs. @internal */
export interface OutgoingRequestsLoopDeps {
  crypto: CryptoAccess;
  sender: OutgoingRequestSender;
  /** The claim lock the engine's keys/claim requests are asked for and sent under. */
  keyClaims: KeyClaimManager;
  events: ClientEventSink;
  log: Logger;
  /** The client was closed: failures after that are not reported. */
  isClosed: () => boolean;
}

/** Single-flight loop over the engine's outgoing requests. @internal */
export class OutgoingRequestsLoop {
  private readonly flight = new SingleFlight(() => this.pass());

  constructor(private readonly deps: OutgoingRequestsLoopDeps) {}

  /**
   * Run the loop now, or once more after the pass in progress. Resolves when a pass that started
   * at or after this call has finished; never rejects (failures are `error` events).
   */
  trigger(): Promise<void> {
    return this.flight.trigger();
  }

  /**
   * One pass of the loop. Failures are reported once per pass as an `error` event and never reject:
   * the engine keeps the work (unpublished keys, dirty users) for the next pass.
   */
  private async pass(): Promise<void> {
    const { crypto, sender, log } = this.deps;
    if (!crypto.ready) return;
    try {
      // A response can enable the next step (a claim, then the m.dummy it allows): a few passes.
      for (let pass = 0; pass < 3; pass++) {
        // Asked for under the claim lock, which sends the claims; the other requests go out at once.
        let others: Promise<PromiseSettledResult<void>[]> = Promise.resolve([]);
        let count = 0;
        const claims = this.deps.keyClaims.run(
          async () => {
            const reqs = await crypto.api.outgoingRequests();
            count = reqs.length;
            others = Promise.allSettled(reqs.filter((r) => r.kind !== "keys_claim").map((r) => sender.send(r)));
            return reqs;
          },
          (reqs) => reqs.filter((r) => r.kind === "keys_claim"),
        );
        const results = [...(await Promise.allSettled([claims])), ...(await others)];
        const failed = results.find((r): r is PromiseRejectedResult => r.status === "rejected");
        if (failed) throw failed.reason;
        if (!count) return;
      }
    } catch (err) {
      if (this.deps.isClosed()) return;
      log.warn(`outgoing crypto requests failed: ${String(err)}`);
      emitError(this.deps.events, err);
    }
  }
}
