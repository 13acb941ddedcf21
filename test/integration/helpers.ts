import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import assert from "node:assert/strict";
import { MatrixClient, type MatrixClientOptions, type VerificationRequest } from "../../src/index.js";
import type { RoomEvent, UndecryptableEvent } from "../../src/client/events.js";
import { consoleLogger } from "../../src/pure/logger.js";
import { sharedSynapse, type SynapseHandle } from "../harness/synapse.js";

export const PASSWORD = "correct horse battery staple";

/** A temp folder removed at process exit. */
export function tempDir(prefix = "sdk-it-"): string {
  const d = mkdtempSync(join(tmpdir(), prefix));
  process.on("exit", () => rmSync(d, { recursive: true, force: true }));
  return d;
}

let counter = 0;
/** A unique localpart per test run. */
export function uniqueName(base: string): string {
  return `${base}${Date.now().toString(36)}${(counter++).toString(36)}`;
}

/** Records a client's events and lets tests wait for them. */
export class Recorder {
  events: RoomEvent[] = [];
  failures: UndecryptableEvent[] = [];
  roomKeys: { roomId: string; sessionId: string }[] = [];
  private waiters: (() => void)[] = [];
  constructor(readonly client: MatrixClient) {
    client.on("room.event", (e) => {
      this.events.push(e);
      this.wake();
    });
    client.on("room.undecryptable", (e) => {
      this.failures.push(e);
      this.wake();
    });
    client.on("room.key", (k) => {
      this.roomKeys.push(k);
      this.wake();
    });
  }
  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }
  /** Messages (decrypted `m.room.message`) in a room. */
  messages(roomId: string): RoomEvent[] {
    return this.events.filter((e) => e.roomId === roomId && e.type === "m.room.message");
  }
  bodies(roomId: string): string[] {
    return this.messages(roomId).map((e) => String(e.content.body));
  }
  async waitFor(pred: () => boolean, what: string, timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!pred()) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${what}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.min(left, 500));
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }
}

/** Start (once per process) the harness Synapse. */
export function synapse(): Promise<SynapseHandle> {
  return sharedSynapse();
}

/** A new encrypted client logged in as `userId`, syncing. */
export async function startClient(
  hs: SynapseHandle,
  userId: string,
  dbDir: string,
  opts: Partial<MatrixClientOptions> & { deviceId?: string; noStart?: boolean } = {},
): Promise<{ client: MatrixClient; rec: Recorder }> {
  const { deviceId, noStart, ...rest } = opts;
  const client = new MatrixClient(hs.baseUrl, {
    encryption: true,
    encryptionConf: { storeConf: { dbPath: dbDir } },
    syncTimeoutMs: 2000,
    syncBackoff: { baseMs: 100, maxMs: 2000 },
    ...(process.env.SDK_TEST_LOG ? { logger: consoleLogger("debug", `[${userId}] `) } : {}),
    ...rest,
  });
  const rec = new Recorder(client);
  await client.login(userId, PASSWORD, deviceId ? { deviceId } : {});
  if (!noStart) client.start();
  return { client, rec };
}

/** Poll an async condition (for state only reachable by asking, e.g. the worker's device list). */
export async function waitUntil(pred: () => Promise<boolean>, what: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await pred())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/**
 * Run an emoji verification between two SDK clients to the end: `req` is ours, `theirs` resolves
 * with the request the other side receives; they accept, we start, both compare and confirm.
 */
export async function runSas(req: VerificationRequest, theirs: Promise<VerificationRequest>): Promise<void> {
  const other = await theirs;
  await other.accept();
  await req.waitFor((r) => r.phase === "ready");
  await req.startSas();
  const [a, b] = await Promise.all([req.waitForSas(), other.waitForSas()]);
  assert.deepEqual(a.emoji, b.emoji);
  await Promise.all([a.confirm(), b.confirm()]);
  await Promise.all([req.done, other.done]);
}
