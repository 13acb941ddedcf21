/**
 * Retry timing helpers shared by the HTTP layer and the sync loop.
 * @packageDocumentation
 */

/**
 * Exponential backoff with "full jitter".
 *
 * The ceiling grows as `base * 2^attempt` and is capped at `max`; the returned delay is drawn
 * uniformly from `[0, ceiling)` (so concurrent clients do not retry in lock-step).
 *
 * @param attempt - Zero-based retry number (0 for the first retry). Negative or non-finite values count as 0.
 * @param base - Ceiling of the first retry, in milliseconds (must be ≥ 0).
 * @param max - Upper bound of any ceiling, in milliseconds (must be ≥ 0).
 * @param random - Source of uniform numbers in `[0, 1)`; defaults to `Math.random`. Injectable for tests.
 * @returns A whole number of milliseconds in `[0, min(max, base * 2^attempt)]`.
 */
export function computeBackoff(attempt: number, base: number, max: number, random: () => number = Math.random): number {
  const a = Number.isFinite(attempt) && attempt > 0 ? Math.floor(attempt) : 0;
  const b = Number.isFinite(base) && base > 0 ? base : 0;
  const m = Number.isFinite(max) && max > 0 ? max : 0;
  // 2 ** a overflows to Infinity for huge attempts; Math.min keeps the result finite.
  const ceiling = Math.min(m, b * 2 ** a);
  let r = random();
  if (!Number.isFinite(r) || r < 0) r = 0;
  if (r > 1) r = 1;
  return Math.floor(r * ceiling);
}

/**
 * Wait `ms` milliseconds.
 *
 * @param ms - Delay in milliseconds (values ≤ 0 resolve on the next timer tick).
 * @param signal - When it aborts (or is already aborted), the returned promise rejects at once
 *   with `signal.reason` and the timer is cleared.
 * @returns A promise that resolves after the delay.
 */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    const timer = setTimeout(
      () => {
        signal?.removeEventListener("abort", onAbort);
        resolve();
      },
      Math.max(0, Number.isFinite(ms) ? ms : 0),
    );
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
