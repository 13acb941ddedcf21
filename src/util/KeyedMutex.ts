/**
 * FIFO mutex per key: tasks for one key run one after another in call order; different keys run
 * concurrently. Idle keys are dropped so the map does not grow with every room ever used.
 * @internal
 */
export class KeyedMutex {
  private readonly tails = new Map<string, Promise<unknown>>();

  /** Run `task` once every earlier task for `key` has settled. */
  run<T>(key: string, task: () => Promise<T>): Promise<T> {
    const prev = this.tails.get(key) ?? Promise.resolve();
    const result = prev.then(task, task);
    const tail = result.then(
      () => undefined,
      () => undefined,
    );
    this.tails.set(key, tail);
    void tail.then(() => {
      if (this.tails.get(key) === tail) this.tails.delete(key);
    });
    return result;
  }

  /** Number of keys with queued or running tasks. */
  get size(): number {
    return this.tails.size;
  }
}

/**
 * Single flight with a "run again" flag: concurrent callers share the running pass, and a call
 * made while a pass runs schedules exactly one more pass after it.
 * @internal
 */
export class SingleFlight {
  private running: Promise<void> | null = null;
  private again = false;

  constructor(private readonly pass: () => Promise<void>) {}

  /** Resolves when a pass that started at or after this call has finished. */
  trigger(): Promise<void> {
    if (this.running) {
      this.again = true;
      return this.running;
    }
    this.running = (async () => {
      try {
        do {
          this.again = false;
          await this.pass();
        } while (this.again);
      } finally {
        this.running = null;
      }
    })();
    return this.running;
  }
}
