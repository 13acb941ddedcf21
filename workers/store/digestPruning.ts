/**
 * When the built-in stores prune old to-device digests (the crash-replay window of
 * `hasToDeviceDigest`, not history): digests older than {@link DIGEST_TTL_MS} go, checked at most
 * once per {@link PRUNE_EVERY_BATCHES} batches or once per {@link PRUNE_EVERY_MS}, whichever
 * comes first.
 *
 * @internal
 * @packageDocumentation
 */

/** To-device digests older than this are pruned. */
export const DIGEST_TTL_MS = 7 * 24 * 60 * 60 * 1000;
/** Prune digests at most once per this many batches… */
export const PRUNE_EVERY_BATCHES = 256;
/** …or once per this interval, whichever comes first. */
export const PRUNE_EVERY_MS = 60 * 60 * 1000;

/** The pruning schedule of one store instance. */
export class DigestPruneSchedule {
  private batchesSincePrune = 0;
  private lastPruneTs = 0;

  /** Count one batch saved at `now`; true when it should also prune (call {@link pruned} once it did). */
  due(now: number): boolean {
    return ++this.batchesSincePrune >= PRUNE_EVERY_BATCHES || now - this.lastPruneTs >= PRUNE_EVERY_MS;
  }

  /** The batch that pruned at `now` is applied: restart the schedule. */
  pruned(now: number): void {
    this.batchesSincePrune = 0;
    this.lastPruneTs = now;
  }
}
