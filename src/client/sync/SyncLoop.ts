/**
 * The sync loop: long-polls `GET /sync` one request at a time, hands each response to the
 * `SyncProcessor`, prefetches the next sync while the current one's timelines decrypt, and backs
 * off (or honours `retry_after_ms`) after a failure.
 * @internal
 */
import { ClientClosedError, MatrixHttpError, MatrixSdkError } from "../../protocol/errors.js";
import type { HttpClient } from "../../http/HttpClient.js";
import { computeBackoff, sleep } from "../../util/backoff.js";
import type { Logger } from "../../pure/logger.js";
import { emitError, type ClientEventSink } from "../events.js";
import type { SyncWork } from "./syncResponse.js";
import type { SyncProcessor } from "./SyncProcessor.js";

/** Sync filter: more timeline events per room per sync than the server default of 10. */
const SYNC_FILTER = JSON.stringify({ room: { timeline: { limit: 100 } } });

/** Timing options of the loop (the client's `syncTimeoutMs` and `syncBackoff`). @internal */
export interface SyncLoopOptions {
  /** Long-poll timeout of /sync (default 30 s). */
  syncTimeoutMs?: number;
  /** Backoff bounds after a failure (ms). */
  syncBackoff?: { baseMs?: number; maxMs?: number };
}

/** What the loop needs. @internal */
export interface SyncLoopDeps {
  http: HttpClient;
  processor: SyncProcessor;
  events: ClientEventSink;
  log: Logger;
  options: SyncLoopOptions;
  /** The count of answered `/keys/upload` requests (see `OutgoingRequestSender.keyUploadsAnswered`). */
  keyUploadsAnswered: () => number;
}

/** A fetched /sync: the response (taken apart when it was prefetched) or the failure. */
type Fetched = { res: unknown; work?: SyncWork | undefined; uploadsBefore: number } | { err: unknown };

/** Start/stop of the long-poll loop, and one-off syncs. @internal */
export class SyncLoop {
  private abort: AbortController | null = null;
  private running: Promise<void> | null = null;

  constructor(private readonly deps: SyncLoopDeps) {}

  /** Start the loop unless it runs (returns at once). */
  start(): void {
    if (this.running) return;
    const abort = new AbortController();
    this.abort = abort;
    this.running = this.run(abort.signal).finally(() => {
      this.running = null;
    });
  }

  /** Stop the loop; resolves once the current sync finished processing. */
  async stop(): Promise<void> {
    this.abort?.abort(new ClientClosedError("sync stopped"));
    await this.running?.catch(() => undefined);
    this.abort = null;
  }

  /**
   * Run one sync now; resolves once it is processed and committed.
   *
   * Call order: not while the loop runs (two syncs from the same token would be processed).
   */
  async syncOnce(timeoutMs: number): Promise<void> {
    const uploadsBefore = this.deps.keyUploadsAnswered();
    const res = await this.deps.http.request<unknown>("GET", "/_matrix/client/v3/sync", {
      query: { since: this.deps.processor.syncToken ?? undefined, timeout: timeoutMs },
      timeoutMs: timeoutMs + 60_000,
      retry: false,
    });
    await this.deps.processor.process(res, undefined, undefined, uploadsBefore);
  }

  private async run(signal: AbortSignal): Promise<void> {
    const { http, processor, log, options } = this.deps;
    const base = options.syncBackoff?.baseMs ?? 500;
    const max = options.syncBackoff?.maxMs ?? 60_000;
    const timeout = options.syncTimeoutMs ?? 30_000;
    let failures = 0;
    const fetchSync = (since: string | null, prepare = false): Promise<Fetched> => {
      const uploadsBefore = this.deps.keyUploadsAnswered();
      return http
        .request<unknown>("GET", "/_matrix/client/v3/sync", {
          query: { since: since ?? undefined, timeout: since ? timeout : 0, filter: SYNC_FILTER },
          timeoutMs: timeout + 30_000,
          retry: false,
          signal,
        })
        .then(
          // A prefetched sync is prepared (parsed into the worker's inputs) as soon as it arrives,
          // which is while the worker still decrypts the previous one; in a task of its own, so
          // that it does not add to the stall of parsing the response body.
          (res) => (prepare ? new Promise<Fetched>((resolve) => setImmediate(() => resolve({ res, work: processor.tryPrepare(res), uploadsBefore }))) : { res, uploadsBefore }),
          (err: unknown) => ({ err }),
        );
    };
    // The next /sync is fetched while this one's timelines decrypt (its to-device part is already
    // committed); on any failure the prefetch is dropped and the sync is fetched again.
    let prefetch: Promise<Fetched> | null = null;
    while (!signal.aborted) {
      try {
        const got: Fetched = await (prefetch ?? fetchSync(processor.syncToken));
        prefetch = null;
        if ("err" in got) throw got.err;
        if (signal.aborted) break;
        await processor.process(got.res, (next) => {
          if (!signal.aborted) prefetch = fetchSync(next, true);
        }, got.work, got.uploadsBefore);
        failures = 0;
      } catch (err) {
        prefetch = null;
        if (signal.aborted) break;
        failures++;
        const e = err instanceof Error ? err : new Error(String(err));
        const wait = err instanceof MatrixHttpError && err.retryAfterMs !== undefined ? err.retryAfterMs : computeBackoff(failures, base, max);
        log.warn(`sync failed (${MatrixSdkError.isSdkError(e) ? e.code : e.name}: ${e.message}); retrying in ${wait} ms`);
        emitError(this.deps.events, e);
        try {
          await sleep(Math.max(wait, Math.min(base, 50)), signal);
        } catch {
          break;
        }
      }
    }
  }
}
