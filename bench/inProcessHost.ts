/**
 * The main-thread baseline: the same `CryptoEngine` and `SqliteCryptoStore` the worker runs, but
 * on the main thread, as SDKs without a worker do. It stands in for `CryptoWorkerHost` inside a
 * real `MatrixClient` (installed into the client's private `host` field before login), so
 * everything else — HTTP, sync processing, emission — is the very same code as in the sdk mode;
 * only the thread the engine runs on differs.
 *
 * It keeps the facade's conventions (JSON strings in for receiveSyncChanges/decryptRoomEvents/
 * encryptRoomEvent, structured data for decryptSyncTimelines, one call at a time) so the
 * comparison is like for like.
 */
import { EventEmitter } from "eventemitter3";
import Olm from "@matrix-org/olm";
import type { RemoteCryptoWorkerApi, WorkerOptions } from "../src/protocol/api.js";
import { PROTOCOL_VERSION } from "../src/protocol/api.js";
import { DEFAULT_WORKER_URL } from "../src/client/CryptoWorkerHost.js";
import type { CryptoStore } from "../src/protocol/store.js";
import { noopLogger } from "../src/pure/logger.js";
import { CryptoEngine } from "../workers/engine/CryptoEngine.js";
import { openStore } from "../workers/store/openStore.js";
import { initOlm, type Json } from "./common.js";

type AnyFn = (...args: unknown[]) => unknown;

export class InProcessHost extends EventEmitter {
  location = "";
  /** Where the client finds the decrypt pool's worker (`new URL("decrypt-worker.js", workerUrl)`): the shipped one. */
  readonly workerUrl: URL = DEFAULT_WORKER_URL;
  onRestart: (() => Promise<void>) | null = null;
  readonly api: RemoteCryptoWorkerApi;
  private engine: CryptoEngine | null = null;
  private store: CryptoStore | null = null;
  private queue: Promise<unknown> = Promise.resolve();
  private readonly ready: Promise<void>;
  /** Profiling (one instrumented run only): execution time per method, and of the JSON.parse of its arguments. */
  profile: { exec: Record<string, { n: number; ms: number; firstMs?: number }>; parse: Record<string, { n: number; ms: number }> } | null = null;
  /** The engine method running now (profiling attributes store/olm time to it). */
  current: string | null = null;

  constructor(private readonly options: WorkerOptions) {
    super();
    this.ready = this.init();
    this.ready.catch(() => undefined);
    const self = this;
    this.api = new Proxy({} as RemoteCryptoWorkerApi, {
      get: (_t, name: string) => (...args: unknown[]) => self.call(name, args),
    });
  }

  private async init(): Promise<void> {
    this.store = await openStore(this.options.store, noopLogger);
    await initOlm();
    this.engine = new CryptoEngine({
      olm: Olm,
      store: this.store,
      pickleKey: this.options.pickleKey,
      logger: noopLogger,
      ...(this.options.sessionCacheSize ? { sessionCacheSize: this.options.sessionCacheSize } : {}),
    });
    this.location = this.store.location;
  }

  async start(): Promise<void> {
    await this.ready;
  }

  private parse(name: string, json: string): unknown {
    if (!this.profile) return JSON.parse(json);
    const t0 = performance.now();
    const v: unknown = JSON.parse(json);
    const e = (this.profile.parse[name] ??= { n: 0, ms: 0 });
    e.n++;
    e.ms += performance.now() - t0;
    return v;
  }

  private invoke(name: string, args: unknown[]): unknown {
    const e = this.engine!;
    switch (name) {
      case "protocolVersion":
        return PROTOCOL_VERSION;
      case "storeLocation":
        return this.store!.location;
      case "receiveSyncChanges":
        return e.receiveSyncChanges(this.parse(name, args[0] as string) as Parameters<CryptoEngine["receiveSyncChanges"]>[0], (args[1] ?? {}) as Parameters<CryptoEngine["receiveSyncChanges"]>[1]);
      case "decryptSyncTimelines":
        return e.decryptSyncTimelines(args[0] as { roomId: string; events: unknown[] }[]);
      case "decryptRoomEvents":
        return e.decryptRoomEvents(args[0] as string, this.parse(name, args[1] as string) as unknown[]);
      case "encryptRoomEvent":
        return e.encryptRoomEvent(args[0] as string, args[1] as string, JSON.parse(args[2] as string) as Json).then((r) => JSON.stringify(r));
      default: {
        const fn = (e as unknown as Record<string, AnyFn>)[name];
        if (typeof fn !== "function") throw new Error(`unknown engine method ${name}`);
        return fn.apply(e, args);
      }
    }
  }

  /** One call at a time, like the worker's facade. */
  call(name: string, args: unknown[]): Promise<never> {
    const p = this.queue.then(async () => {
      await this.ready;
      const t0 = performance.now();
      this.current = name;
      try {
        return (await this.invoke(name, args)) as never;
      } finally {
        this.current = null;
        if (this.profile) {
          const x = (this.profile.exec[name] ??= { n: 0, ms: 0 });
          const ms = performance.now() - t0;
          if (x.n++ === 0) x.firstMs = ms;
          x.ms += ms;
        }
      }
    });
    this.queue = p.catch(() => undefined);
    return p;
  }

  get apiDuringRestart(): RemoteCryptoWorkerApi {
    return this.api;
  }

  async close(): Promise<void> {
    await this.queue;
    this.engine?.release();
    await this.store?.close();
  }
}
