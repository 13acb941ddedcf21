/**
 * The key backup upload runs between syncs: a batch waits while sync processing is busy, starts
 * once it rests, is never starved by a sync loop that never rests, and a flush does not wait.
 * A fake worker (counts batch requests) and a fake HTTP client; the scheduling is real.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { EventEmitter } from "eventemitter3";
import { KeyBackupManager } from "../../../src/client/keys/KeyBackupManager.js";
import type { HttpClient } from "../../../src/http/HttpClient.js";
import type { KeyBackupBatch, RemoteCryptoWorkerApi } from "../../../src/protocol/api.js";
import { noopLogger } from "../../../src/pure/logger.js";
import { QuietTime } from "../../../src/util/QuietTime.js";
import type { AccountData } from "../../../src/client/keys/accountData.js";
import type { TimelineEmitter } from "../../../src/client/timeline.js";

/** A manager over `batches` sessions' worth of batches; `asked` resolves at each batch request. */
function setup(batches: number, quietTimes: { quietMs: number; maxWaitMs: number }) {
  const quiet = new QuietTime();
  let left = batches;
  const requests: number[] = [];
  const puts: string[] = [];
  let onAsk: (() => void) | null = null;
  const api = {
    keyBackupBatch: async (): Promise<KeyBackupBatch | null> => {
      requests.push(Date.now());
      onAsk?.();
      if (left === 0) return null;
      left--;
      return { id: `b${left}`, version: "1", body: { rooms: {} }, remaining: left + 1 };
    },
    keyBackupBatchDone: async () => ({ marked: 1 }),
  } as unknown as RemoteCryptoWorkerApi;
  const http = {
    request: async (method: string, path: string) => {
      puts.push(`${method} ${path}`);
      return {};
    },
  } as unknown as HttpClient;
  let closed = false;
  const mgr = new KeyBackupManager({
    http,
    crypto: { ready: true, api },
    accountData: {} as AccountData,
    events: new EventEmitter(),
    timeline: {} as TimelineEmitter,
    log: noopLogger,
    isClosed: () => closed,
    quiet,
    quietTimes,
  });
  const nextAsk = (): Promise<void> => new Promise((resolve) => (onAsk = () => ((onAsk = null), resolve())));
  return { mgr, quiet, requests, puts, nextAsk, close: () => ((closed = true), mgr.close()) };
}

const tick = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

// The scheduler's timers do not keep a process alive (a client's sockets do): this file keeps it.
let keepAlive: NodeJS.Timeout;
before(() => (keepAlive = setInterval(() => undefined, 1_000)));
after(() => clearInterval(keepAlive));

describe("key backup scheduling", { timeout: 20_000 }, () => {
  it("no batch is built while a sync is processed; the upload starts once syncing rests", async () => {
    const t = setup(2, { quietMs: 20, maxWaitMs: 60_000 });
    t.quiet.begin(); // a sync is being processed
    const done = t.mgr.trigger();
    await tick(150);
    assert.equal(t.requests.length, 0, "no batch requested from the worker while the sync runs");
    const asked = t.nextAsk();
    t.quiet.end();
    await asked;
    await done;
    assert.deepEqual(t.puts, ["PUT /_matrix/client/v3/room_keys/keys", "PUT /_matrix/client/v3/room_keys/keys"]);
    assert.equal(t.requests.length, 3, "two batches, then the empty answer");
    t.close();
  });

  it("a sync that starts between two batches holds the next batch back", async () => {
    const t = setup(2, { quietMs: 20, maxWaitMs: 60_000 });
    const first = t.nextAsk();
    const done = t.mgr.trigger();
    await first;
    t.quiet.begin(); // a sync arrives while the first batch uploads
    await tick(150);
    assert.equal(t.requests.length, 1, "the second batch waits for the sync");
    t.quiet.end();
    await done;
    assert.equal(t.puts.length, 2);
    t.close();
  });

  it("a sync loop that never rests slows the upload but does not starve it", async () => {
    const t = setup(3, { quietMs: 20, maxWaitMs: 60 });
    t.quiet.begin(); // busy for the whole test
    await t.mgr.trigger();
    assert.equal(t.puts.length, 3, "every batch was uploaded, one per maximum wait");
    t.quiet.end();
    t.close();
  });

  it("a flush does not wait for a quiet moment, and wakes a pass that waits", async () => {
    const t = setup(2, { quietMs: 20, maxWaitMs: 60_000 });
    t.quiet.begin();
    const background = t.mgr.trigger(); // waits for the sync to rest
    await tick(50);
    assert.equal(t.requests.length, 0);
    await t.mgr.trigger(true);
    await background;
    assert.equal(t.puts.length, 2, "the flush uploaded everything while the sync was still busy");
    t.quiet.end();
    t.close();
  });
});

describe("QuietTime", () => {
  it("quiet after the settle time, timeout while busy, woken on demand", async () => {
    const q = new QuietTime();
    assert.equal(await q.wait(5, 10_000), "quiet", "nothing ever ran");
    q.begin();
    assert.equal(await q.wait(5, 30), "timeout", "busy all along");
    const w = q.wait(5, 60_000);
    q.wake();
    assert.equal(await w, "woken");
    q.end();
    assert.equal(q.busy, false);
    assert.equal(await q.wait(5, 60_000), "quiet");
  });
});
