/**
 * Starts and supervises the crypto worker; the only place that talks Comlink on the main thread.
 *
 * Comlink never rejects a pending call when the worker dies, so this host tracks pending calls
 * and rejects them with {@link CryptoWorkerCrashedError} on `error`/`exit`, restarts the worker
 * with backoff and runs the `onRestart` hook (which reloads the account from the store). Nothing
 * is lost: every worker call commits before it returns.
 *
 * The worker prints nothing: its log records (at or above `WorkerOptions.logLevel`, filtered in
 * the worker before they are posted) are replayed here on the host's logger, prefixed `[worker]`.
 */
import { existsSync } from "node:fs";
import { fileURLToPath, pathToFileURL } from "node:url";
import { Worker } from "node:worker_threads";
import { EventEmitter } from "eventemitter3";
import * as Comlink from "comlink/dist/esm/comlink.mjs";
import nodeEndpoint from "comlink/dist/esm/node-adapter.mjs";
import { PROTOCOL_VERSION, type RemoteCryptoWorkerApi, type WorkerOptions } from "../protocol/api.js";
import {
  ClientClosedError,
  CryptoWorkerCrashedError,
  InvalidArgumentError,
  WorkerProtocolError,
  deserializeError,
  type SerializedError,
} from "../protocol/errors.js";
import { childLogger, logRecord, type Logger } from "../pure/logger.js";
import { inspectCustom, redactedInspect, type InspectFn } from "../pure/secret.js";
import { sleep } from "../util/backoff.js";
import type { WorkerFacade } from "../../workers/crypto-worker.js";

/**
 * Where the compiled worker entry lives, relative to this file (dist/src/client → dist/workers);
 * the package exports it as `matrix-e2ee-worker-sdk/worker`. A bundled application names it
 * itself (`encryptionConf.workerPath`), since the bundle is not next to it.
 */
export const DEFAULT_WORKER_URL = new URL("../../workers/crypto-worker.js", import.meta.url);

/** The worker entry for a `workerPath` option (a path or `file:` URL), checked to exist. @internal */
export function workerUrl(workerPath?: string | URL): URL {
  const url = workerPath === undefined ? DEFAULT_WORKER_URL : workerPath instanceof URL ? workerPath : workerPath.startsWith("file:") ? new URL(workerPath) : pathToFileURL(workerPath);
  if (!existsSync(fileURLToPath(url))) {
    throw new InvalidArgumentError(
      `The crypto worker file ${fileURLToPath(url)} does not exist. ` +
        (workerPath === undefined
          ? "If the application is bundled, set encryptionConf.workerPath to the package's dist/workers/crypto-worker.js (import.meta.resolve(\"matrix-e2ee-worker-sdk/worker\"))."
          : "Check encryptionConf.workerPath."),
      { workerPath: fileURLToPath(url) },
    );
  }
  return url;
}

/** Events of {@link CryptoWorkerHost}. */
export interface CryptoWorkerHostEvents {
  /** The worker died; pending calls were rejected. */
  crashed: (err: CryptoWorkerCrashedError) => void;
  /** A new worker is up and `onRestart` ran. */
  restarted: () => void;
}

type Generation = { worker: Worker; remote: Comlink.Remote<WorkerFacade>; pending: Set<(e: Error) => void>; dead: boolean };

/** @internal */
export class CryptoWorkerHost extends EventEmitter<CryptoWorkerHostEvents> {
  private gen: Generation | null = null;
  private starting: Promise<void> | null = null;
  private closed = false;
  private restarts = 0;
  /** Runs after each restart, before queued calls proceed (e.g. reload the account). */
  onRestart: (() => Promise<void>) | null = null;
  /** Store location reported by the worker. */
  location = "";

  /** The API, each call routed through the supervisor. */
  readonly api: RemoteCryptoWorkerApi;
  /** The worker's options: they hold the pickle key, so they are out of reach of `util.inspect`. */
  readonly #options: WorkerOptions;

  /** The worker entry this host starts (checked to exist when the host is built). */
  readonly workerUrl: URL;

  /** `workerPath`: the worker entry file, default {@link DEFAULT_WORKER_URL}; throws `InvalidArgumentError` when missing. */
  constructor(
    options: WorkerOptions,
    private readonly logger: Logger,
    workerPath?: string | URL,
  ) {
    super();
    this.#options = options;
    this.workerUrl = workerUrl(workerPath);
    this.api = new Proxy({} as RemoteCryptoWorkerApi, {
      get: (_t, name: string) => (...args: unknown[]) => this.call(name, args),
    });
  }

  /** Start the worker and wait for its handshake. Throws the worker's typed init error (e.g. StoreLockedError). */
  async start(): Promise<void> {
    if (this.gen) return;
    this.starting ??= this.spawn().finally(() => {
      this.starting = null;
    });
    await this.starting;
  }

  private async spawn(): Promise<void> {
    const worker = new Worker(this.workerUrl, { workerData: this.#options });
    // The worker's log lines (already filtered at `options.logLevel`), on the application's logger.
    const workerLog = childLogger(this.logger, "[worker]");
    worker.on("message", (m: unknown) => {
      const msg = m as { __sdk?: string; record?: unknown } | null;
      if (msg?.__sdk === "log") logRecord(workerLog, msg.record);
    });
    const ready = await new Promise<{ location: string }>((resolve, reject) => {
      const onMessage = (m: unknown): void => {
        const msg = m as { __sdk?: string; error?: SerializedError; protocolVersion?: number; location?: string };
        if (msg?.__sdk === "ready") {
          cleanup();
          if (msg.protocolVersion !== PROTOCOL_VERSION) {
            void worker.terminate();
            reject(new WorkerProtocolError(`worker speaks protocol ${String(msg.protocolVersion)}, expected ${PROTOCOL_VERSION}`));
          } else resolve({ location: msg.location ?? "" });
        } else if (msg?.__sdk === "init-error" && msg.error) {
          cleanup();
          void worker.terminate();
          reject(deserializeError(msg.error));
        }
      };
      const onError = (err: Error): void => {
        cleanup();
        reject(new CryptoWorkerCrashedError(`crypto worker failed to start: ${err.message}`));
      };
      const onExit = (code: number): void => {
        cleanup();
        reject(new CryptoWorkerCrashedError(`crypto worker exited during start-up (code ${code})`));
      };
      const cleanup = (): void => {
        worker.off("message", onMessage);
        worker.off("error", onError);
        worker.off("exit", onExit);
      };
      worker.on("message", onMessage);
      worker.on("error", onError);
      worker.on("exit", onExit);
    });
    this.location = ready.location;
    const remote = Comlink.wrap<WorkerFacade>(nodeEndpoint(worker as unknown as Parameters<typeof nodeEndpoint>[0]));
    const gen: Generation = { worker, remote, pending: new Set(), dead: false };
    worker.on("error", (err) => this.onDeath(gen, `crypto worker crashed: ${err.message}`));
    worker.on("exit", (code) => this.onDeath(gen, `crypto worker exited with code ${code}`));
    this.gen = gen;
  }

  private onDeath(gen: Generation, message: string): void {
    if (gen.dead) return;
    gen.dead = true;
    if (this.gen === gen) this.gen = null;
    const err = new CryptoWorkerCrashedError(message);
    for (const reject of gen.pending) reject(err);
    gen.pending.clear();
    if (this.closed) return;
    this.logger.error(`${message}; restarting`);
    this.emit("crashed", err);
    this.starting ??= this.restart().finally(() => {
      this.starting = null;
    });
    this.starting.catch(() => undefined);
  }

  private async restart(): Promise<void> {
    for (;;) {
      if (this.closed) throw new ClientClosedError();
      const delay = Math.min(100 * 2 ** this.restarts, 5000);
      this.restarts++;
      await sleep(delay);
      try {
        await this.spawn();
        if (this.onRestart) await this.onRestart();
        this.restarts = 0;
        this.emit("restarted");
        return;
      } catch (err) {
        this.logger.error(`crypto worker restart failed: ${String(err)}`);
        if (this.gen) {
          const g = this.gen;
          this.gen = null;
          g.dead = true;
          await g.worker.terminate();
        }
      }
    }
  }

  /** Call a facade method; rejects with CryptoWorkerCrashedError if the worker dies meanwhile. */
  async call(method: string, args: unknown[]): Promise<never> {
    if (this.closed) throw new ClientClosedError();
    // Calls wait for a restart in progress, so they run after `onRestart` reloaded the account.
    if (this.starting) await this.starting;
    if (!this.gen) await this.start();
    const gen = this.gen;
    if (!gen) throw new CryptoWorkerCrashedError("crypto worker is not running");
    return this.callOn(gen, method, args);
  }

  /** Call used by `onRestart` hooks too (no waiting for the restart that is running them). */
  private callOn(gen: Generation, method: string, args: unknown[]): Promise<never> {
    return new Promise<never>((resolve, reject) => {
      gen.pending.add(reject);
      const fn = (gen.remote as unknown as Record<string, (...a: unknown[]) => Promise<{ ok: boolean; value?: unknown; error?: SerializedError }>>)[method];
      if (!fn) {
        gen.pending.delete(reject);
        reject(new WorkerProtocolError(`unknown worker method ${method}`));
        return;
      }
      // Callbacks (progress) cross as Comlink proxies.
      fn(...args.map((a) => (typeof a === "function" ? Comlink.proxy(a as (...x: unknown[]) => unknown) : a))).then(
        (env) => {
          gen.pending.delete(reject);
          if (env.ok) resolve(env.value as never);
          else reject(deserializeError(env.error!));
        },
        (err: unknown) => {
          gen.pending.delete(reject);
          reject(err instanceof Error ? err : new CryptoWorkerCrashedError(String(err)));
        },
      );
    });
  }

  /** Direct access for restart hooks, bypassing the wait on the restart in progress. */
  get apiDuringRestart(): RemoteCryptoWorkerApi {
    return new Proxy({} as RemoteCryptoWorkerApi, {
      get: (_t, name: string) => (...args: unknown[]) => {
        if (!this.gen) return Promise.reject(new CryptoWorkerCrashedError("crypto worker is not running"));
        return this.callOn(this.gen, name, args);
      },
    });
  }

  /** What `JSON.stringify` shows: no options (they hold the pickle key), only the state. */
  toJSON(): { location: string; running: boolean; closed: boolean } {
    return { location: this.location, running: this.gen !== null, closed: this.closed };
  }

  /** What `util.inspect` shows: the summary of {@link CryptoWorkerHost.toJSON}. */
  [inspectCustom](_depth: number, options: object, inspect: InspectFn): string {
    return redactedInspect("CryptoWorkerHost", this.toJSON(), options, inspect);
  }

  /** Kill the worker abruptly (tests of the supervisor). */
  async terminateForTesting(): Promise<void> {
    await this.gen?.worker.terminate();
  }

  /** Close the store cleanly and stop the worker. */
  async close(): Promise<void> {
    if (this.closed) return;
    if (this.starting) await this.starting.catch(() => undefined);
    this.closed = true;
    const gen = this.gen;
    this.gen = null;
    if (!gen) return;
    try {
      await Promise.race([this.callOn(gen, "close", []), sleep(5000)]);
    } catch (err) {
      this.logger.warn(`closing the crypto store failed: ${String(err)}`);
    }
    gen.dead = true;
    for (const reject of gen.pending) reject(new ClientClosedError());
    gen.pending.clear();
    gen.remote[Comlink.releaseProxy]();
    await gen.worker.terminate();
  }
}
