/** How a {@link QuietTime.wait} ended. @internal */
export type QuietOutcome = "quiet" | "timeout" | "woken";

/**
 * Tracks whether some foreground work (sync processing) is running, so that background work (the
 * key backup upload) can run between its rounds instead of competing with them for the worker.
 *
 * Waiting has a bound: a waiter gives up after its maximum wait even when the foreground never
 * rests (a long catch-up, a busy room), so the background work is slowed, never starved.
 * @internal
 */
export class QuietTime {
  private active = 0;
  private lastEnd = -Infinity;
  private readonly wakers = new Set<() => void>();

  constructor(private readonly now: () => number = Date.now) {}

  /** Foreground work started; pair with {@link QuietTime.end}. */
  begin(): void {
    this.active++;
  }

  /** Foreground work ended. */
  end(): void {
    if (this.active > 0) this.active--;
    if (this.active === 0) this.lastEnd = this.now();
  }

  /** Foreground work is running now. */
  get busy(): boolean {
    return this.active > 0;
  }

  /**
   * Resolves `"quiet"` once no foreground work has run for `settleMs`, `"timeout"` after
   * `maxWaitMs` whatever runs, or `"woken"` when {@link QuietTime.wake} is called. Its timers do
   * not keep the process alive.
   */
  async wait(settleMs: number, maxWaitMs: number): Promise<QuietOutcome> {
    const deadline = this.now() + maxWaitMs;
    for (;;) {
      const now = this.now();
      if (this.active === 0 && now - this.lastEnd >= settleMs) return "quiet";
      if (now >= deadline) return "timeout";
      // Busy: look again a settle time later; idle but recently: when the settle time is over.
      const next = this.active === 0 ? this.lastEnd + settleMs : now + settleMs;
      const woken = await new Promise<boolean>((resolve) => {
        const waker = (): void => {
          clearTimeout(timer);
          resolve(true);
        };
        const timer = setTimeout(() => {
          this.wakers.delete(waker);
          resolve(false);
        }, Math.max(1, Math.min(next, deadline) - now));
        timer.unref();
        this.wakers.add(waker);
      });
      if (woken) return "woken";
    }
  }

  /** End every current {@link QuietTime.wait} now (`"woken"`): the background work is wanted at once. */
  wake(): void {
    const wakers = [...this.wakers];
    this.wakers.clear();
    for (const w of wakers) w();
  }
}
