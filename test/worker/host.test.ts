/**
 * The crypto worker as a real thread: handshake, typed errors across the boundary, crash →
 * pending calls rejected → restart → state intact.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CryptoWorkerHost } from "../../src/client/CryptoWorkerHost.js";
import { CryptoWorkerCrashedError, InvalidArgumentError, MatrixSdkError, StoreLockedError, UnknownDeviceKeysError } from "../../src/protocol/errors.js";
import { encryptKeyExport } from "../../src/pure/keyExport.js";
import { noopLogger } from "../../src/pure/logger.js";
import { PROTOCOL_VERSION } from "../../src/protocol/api.js";

function dbPath(): string {
  return join(mkdtempSync(join(tmpdir(), "sdk-worker-")), "crypto.db");
}

function host(path: string): CryptoWorkerHost {
  return new CryptoWorkerHost({ store: { kind: "sqlite", path }, pickleKey: "k", logLevel: "silent" }, noopLogger);
}

/** The typed error a call gets when the worker dies under it. */
function isCrash(e: unknown): boolean {
  assert.ok(e instanceof CryptoWorkerCrashedError, `expected CryptoWorkerCrashedError, got ${String(e)}`);
  assert.equal(e.code, "M_SDK_WORKER_CRASHED");
  assert.ok(MatrixSdkError.isSdkError(e));
  return true;
}

/** How a promise settled, to assert on either outcome outside any callback. */
async function settle<T>(p: Promise<T>): Promise<{ ok: true; value: T } | { ok: false; error: unknown }> {
  try {
    return { ok: true, value: await p };
  } catch (error) {
    return { ok: false, error };
  }
}

/**
 * A call that is certainly still pending in the worker a moment later: a key import whose PBKDF2
 * (800k rounds, on the thread pool, outside the worker's call queue) takes far longer than a crash.
 */
async function slowPendingCall(h: CryptoWorkerHost): Promise<{ pending: Promise<unknown> }> {
  const file = join(mkdtempSync(join(tmpdir(), "sdk-keys-")), "keys.txt");
  writeFileSync(file, await encryptKeyExport([], "pw", { rounds: 800_000 }));
  return { pending: h.api.importKeysFromFile(file, "pw") };
}

describe("crypto worker host", () => {
  it("starts, creates an account, and reloads the same identity from the store", async () => {
    const path = dbPath();
    const h1 = host(path);
    await h1.start();
    assert.equal(await h1.api.protocolVersion(), PROTOCOL_VERSION);
    const a = await h1.api.loadAccount("@a:example.org", "DEV");
    assert.match(a.ed25519, /^[A-Za-z0-9+/]{43}$/);
    await h1.close();
    const h2 = host(path);
    const b = await h2.api.loadAccount("@a:example.org", "DEV");
    assert.deepEqual(b, a);
    assert.equal(await h2.api.getStoredDeviceId("@a:example.org"), "DEV");
    await h2.close();
  });

  it("carries typed errors with their codes across the boundary", async () => {
    const h = host(dbPath());
    await h.api.loadAccount("@a:example.org", "DEV");
    await assert.rejects(h.api.setDeviceFlags("@b:example.org", "X", { verified: true }), (e: unknown) => {
      assert.ok(e instanceof UnknownDeviceKeysError);
      assert.equal(e.code, "M_SDK_UNKNOWN_DEVICE_KEYS");
      assert.equal(e.details.userId, "@b:example.org");
      return true;
    });
    await assert.rejects(h.api.loadAccount("not-a-user", ""), InvalidArgumentError);
    await h.close();
  });

  it("gives a second opener of the same database a StoreLockedError naming the path", async () => {
    const path = dbPath();
    const h1 = host(path);
    await h1.start();
    const h2 = host(path);
    await assert.rejects(h2.start(), (e: unknown) => e instanceof StoreLockedError && e.path === path && /one database per process/.test(e.message));
    await h2.close();
    // The first one still works.
    await h1.api.loadAccount("@a:example.org", "DEV");
    await h1.close();
  });

  for (const how of ["exit", "throw"] as const) {
    it(`rejects pending calls when the worker dies (${how}), restarts and reloads state`, { timeout: 30_000 }, async () => {
      const path = dbPath();
      const h = host(path);
      const a = await h.api.loadAccount("@a:example.org", "DEV");
      h.onRestart = async () => {
        await h.apiDuringRestart.loadAccount("@a:example.org", "DEV");
      };
      const restarted = new Promise<void>((resolve) => h.once("restarted", () => resolve()));
      const crashed = new Promise<Error>((resolve) => h.once("crashed", (e) => resolve(e)));
      const { pending } = await slowPendingCall(h);
      if (how === "exit") {
        // The worker exits inside the call: it never answers.
        await assert.rejects(h.api.crashForTesting("exit"), isCrash);
      } else {
        // The fatal error is thrown just after the call answered: its answer may or may not get through first.
        const crash = await settle(h.api.crashForTesting("throw"));
        assert.ok(crash.ok || isCrash(crash.error));
      }
      // The import was in flight when the worker died.
      await assert.rejects(pending, isCrash);
      assert.ok(isCrash(await crashed));
      await restarted;
      const b = await h.api.identity();
      assert.deepEqual(b, a);
      await h.close();
    });
  }

  it("rejects pending calls on terminate() and is usable again after the restart", { timeout: 30_000 }, async () => {
    const h = host(dbPath());
    await h.api.loadAccount("@a:example.org", "DEV");
    h.onRestart = async () => {
      await h.apiDuringRestart.loadAccount("@a:example.org", "DEV");
    };
    const { pending } = await slowPendingCall(h);
    await h.terminateForTesting();
    await assert.rejects(pending, isCrash);
    const reqs = await h.api.outgoingRequests();
    assert.ok(Array.isArray(reqs));
    await h.close();
  });
});
