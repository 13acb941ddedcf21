/**
 * Helpers shared by the fault tests: log capture (main-thread logger and the crypto worker's
 * console output), a generic waitFor, a client on the fake homeserver, and an event recorder that
 * keeps everything a client emits.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Agent, type Dispatcher } from "undici";
import { MatrixClient, type MatrixClientOptions } from "../../src/index.js";
import type { RoomEvent, ToDeviceEvent, UndecryptableEvent } from "../../src/client/events.js";
import type { Logger } from "../../src/pure/logger.js";
import { FAKE_ORIGIN, type FakeHomeserver } from "./fakeServer.js";

const dirs: string[] = [];
/** A temp folder removed at process exit (one exit hook for all of them). */
export function tempDir(prefix = "sdk-faults-"): string {
  const d = mkdtempSync(join(tmpdir(), prefix));
  if (!dirs.length) process.on("exit", () => dirs.forEach((x) => rmSync(x, { recursive: true, force: true })));
  dirs.push(d);
  return d;
}

/**
 * Wait until `count()` reaches `target`, or until it has not changed for `idleMs` (then resolve
 * anyway: the caller reports what is missing), or `maxMs` passed.
 */
export async function waitForProgress(count: () => number, target: number, idleMs: number, maxMs: number): Promise<void> {
  const deadline = Date.now() + maxMs;
  let last = -1;
  let lastChange = Date.now();
  for (;;) {
    const n = count();
    if (n >= target || Date.now() > deadline) return;
    if (n !== last) {
      last = n;
      lastChange = Date.now();
    } else if (Date.now() - lastChange > idleMs) return;
    await sleep(50);
  }
}

/** Poll `pred` until true (every 20 ms), or throw after `timeoutMs`. */
export async function waitFor(pred: () => boolean | Promise<boolean>, what: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await pred()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(20);
  }
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * Captures log lines through a Logger: the main thread's and the crypto worker's (which reach the
 * client's logger, `[crypto] [worker]`). Printed to stderr too when SDK_TEST_LOG is set.
 */
export class LogCapture {
  readonly lines: string[] = [];

  readonly logger: Logger = {
    debug: (m) => this.push(`D ${m}`),
    info: (m) => this.push(`I ${m}`),
    warn: (m) => this.push(`W ${m}`),
    error: (m) => this.push(`E ${m}`),
  };

  private push(line: string): void {
    if (process.env.SDK_TEST_LOG) process.stderr.write(`${line}\n`);
    this.lines.push(line);
    if (this.lines.length > 50_000) this.lines.splice(0, 10_000);
  }

  /** Lines matching `re`. */
  grep(re: RegExp): string[] {
    return this.lines.filter((l) => re.test(l));
  }
}

/** Everything a client emits, kept in arrays. */
export class ClientEvents {
  readonly events: RoomEvent[] = [];
  readonly utds: UndecryptableEvent[] = [];
  readonly toDevice: ToDeviceEvent[] = [];
  readonly toDeviceFailures: { sender: string; type: string; code: string; message: string }[] = [];
  readonly roomKeys: { roomId: string; sessionId: string; senderKey: string }[] = [];
  readonly errors: Error[] = [];
  readonly syncs: string[] = [];
  crashed = 0;
  restarted = 0;
  /**
   * Crashes that each needed a restart of their own: a crash while the worker is still being
   * restarted (the restart's new worker killed) is healed by that same restart.
   */
  crashEpisodes = 0;
  private restarting = false;

  constructor(readonly client: MatrixClient) {
    client.on("room.event", (e) => this.events.push(e));
    client.on("room.undecryptable", (e) => this.utds.push(e));
    client.on("toDevice", (e) => this.toDevice.push(e));
    client.on("toDevice.failure", (f) => this.toDeviceFailures.push(f));
    client.on("room.key", (k) => this.roomKeys.push(k));
    client.on("error", (e) => this.errors.push(e));
    client.on("sync", (s) => this.syncs.push(s.nextBatch));
    client.on("crypto.workerCrashed", () => {
      this.crashed++;
      if (!this.restarting) this.crashEpisodes++;
      this.restarting = true;
    });
    client.on("crypto.workerRestarted", () => {
      this.restarted++;
      this.restarting = false;
    });
  }

  get lastToken(): string | undefined {
    return this.syncs[this.syncs.length - 1];
  }
}

/** A client with encryption on a fresh SQLite store, talking to the fake homeserver. */
export function fakeClient(fake: FakeHomeserver, logs: LogCapture | null, opts: Partial<MatrixClientOptions> = {}): MatrixClient {
  return new MatrixClient(FAKE_ORIGIN, {
    encryption: true,
    encryptionConf: { storeConf: { dbPath: tempDir("sdk-faults-") } },
    dispatcher: fake.agent,
    syncTimeoutMs: 1000,
    syncBackoff: { baseMs: 20, maxMs: 200 },
    ...(logs ? { logger: logs.logger, workerLogLevel: "debug" as const } : {}),
    ...opts,
  });
}

/** OS threads of this process (Linux), or null. Each crypto worker is one thread. */
export function threadCount(): number | null {
  try {
    const m = /Threads:\s+(\d+)/.exec(readFileSync("/proc/self/status", "utf8"));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

/** Whether the client's crypto host still has a live worker (reads the host's private field). */
export function hasLiveWorker(client: MatrixClient): boolean {
  const host = client.cryptoHostForTesting as unknown as { gen: { dead: boolean } | null } | null;
  return !!host?.gen && !host.gen.dead;
}

export const mb = (bytes: number): number => Math.round(bytes / 1024 / 1024);

/** What the recording agent saw of /sync. */
export interface SyncLog {
  sinces: (string | null)[];
  /** Each answered /sync: the `since` it asked with and the `next_batch` it got. */
  pairs?: { since: string | null; next: string | null }[];
  /** Incremental (non-initial) responses with a `limited` room timeline (events skipped by the server). */
  limited: number;
  onLimited?: () => void;
}

/** An undici Agent that records the `since` of every /sync request and spots limited timelines. */
export function recordingAgent(log: SyncLog): Dispatcher {
  return new Agent().compose((dispatch) => (opts, handler) => {
    const path = String(opts.path);
    if (!path.startsWith("/_matrix/client/v3/sync")) return dispatch(opts, handler);
    const since = new URL(path, "http://x").searchParams.get("since");
    log.sinces.push(since);
    const h = handler as unknown as Record<string, ((...a: unknown[]) => unknown) | undefined>;
    const chunks: Buffer[] = [];
    const fwd =
      (name: string) =>
      (...a: unknown[]): unknown =>
        h[name]?.apply(handler, a);
    const wrapped = {
      onConnect: fwd("onConnect"),
      onResponseStarted: fwd("onResponseStarted"),
      onHeaders: fwd("onHeaders"),
      onUpgrade: fwd("onUpgrade"),
      onBodySent: fwd("onBodySent"),
      onRequestSent: fwd("onRequestSent"),
      onError: fwd("onError"),
      onData: (chunk: Buffer) => {
        chunks.push(Buffer.from(chunk));
        return h.onData?.call(handler, chunk);
      },
      onComplete: (trailers: unknown) => {
        const text = Buffer.concat(chunks).toString("utf8");
        log.pairs?.push({ since, next: /"next_batch"\s*:\s*"([^"]+)"/.exec(text)?.[1] ?? null });
        if (since !== null && /"limited":\s*true/.test(text)) {
          log.limited++;
          log.onLimited?.();
        }
        return h.onComplete?.call(handler, trailers);
      },
    };
    return dispatch(opts, wrapped as unknown as Dispatcher.DispatchHandler);
  });
}

