import { after, describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { createHash } from "node:crypto";
import { once } from "node:events";
import { Worker } from "node:worker_threads";
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import Database from "better-sqlite3";
import { SqliteCryptoStore } from "../../workers/store/sqlite/SqliteCryptoStore.js";
import { SCHEMA_VERSION } from "../../workers/store/sqlite/migrate.js";
import { runCryptoStoreConformanceTests } from "../../src/testing/storeConformance.js";
import { ErrorCode, MatrixSdkError, StoreLockedError } from "../../src/protocol/errors.js";
import type { Logger } from "../../src/pure/logger.js";
import type { AccountRecord, StoreChanges } from "../../src/protocol/store.js";

const REPO_ROOT = fileURLToPath(new URL("../../../", import.meta.url));
const COMPILED_STORE = pathToFileURL(join(REPO_ROOT, "dist/workers/store/sqlite/SqliteCryptoStore.js")).href;

const dirs: string[] = [];
/** A fresh temporary folder, removed after the file's tests. */
function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), "crypto-store-test-"));
  dirs.push(d);
  return d;
}
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const isStoreError = (e: unknown): boolean => MatrixSdkError.isSdkError(e) && e.code === ErrorCode.Store;
const lockedAt = (path: string) => (e: unknown): boolean => {
  assert.ok(e instanceof StoreLockedError, `expected StoreLockedError, got ${String(e)}`);
  assert.equal(e.code, ErrorCode.StoreLocked);
  assert.equal(e.path, path);
  assert.ok(e.message.includes(path));
  return true;
};

const ACCOUNT: AccountRecord = { userId: "@alice:x", deviceId: "ALICEDEV", pickle: "secret-account-pickle", deviceKeysUploaded: false, createdTs: 1 };

async function openWithAccount(path: string, logger?: Logger): Promise<SqliteCryptoStore> {
  const s = new SqliteCryptoStore(path, logger);
  await s.open();
  if ((await s.useAccount(ACCOUNT.userId, ACCOUNT.deviceId)) === null) s.saveChanges({ account: ACCOUNT });
  return s;
}

runCryptoStoreConformanceTests("SqliteCryptoStore", async () => {
  const dir = mkdtempSync(join(tmpdir(), "crypto-store-conf-"));
  const path = join(dir, "crypto.db");
  return {
    store: new SqliteCryptoStore(path),
    reopen: async () => new SqliteCryptoStore(path),
    cleanup: async () => rmSync(dir, { recursive: true, force: true }),
  };
});

/** Spawn a node process that opens `path` exclusively and holds it until its stdin ends. */
async function spawnHolder(path: string, how: "raw" | "store"): Promise<ChildProcess> {
  const script =
    how === "raw"
      ? `import Database from "better-sqlite3";
         const db = new Database(process.env.STORE_PATH);
         db.pragma("locking_mode = EXCLUSIVE");
         db.pragma("journal_mode = WAL");
         db.exec("BEGIN EXCLUSIVE; COMMIT;");
         process.stdout.write("ready\\n");
         process.stdin.resume();
         process.stdin.on("end", () => { db.close(); process.exit(0); });`
      : `const { SqliteCryptoStore } = await import(process.env.STORE_MODULE);
         const s = new SqliteCryptoStore(process.env.STORE_PATH);
         await s.open();
         await s.useAccount("@child:x", "CHILD");
         s.saveChanges({ account: { userId: "@child:x", deviceId: "CHILD", pickle: "p", deviceKeysUploaded: true, createdTs: 5 }, syncToken: "child" });
         process.stdout.write("ready\\n");
         process.stdin.resume();
         process.stdin.on("end", async () => { await s.close(); process.exit(0); });`;
  const child = spawn(process.execPath, ["--input-type=module", "-e", script], {
    cwd: REPO_ROOT,
    env: { ...process.env, STORE_PATH: path, STORE_MODULE: COMPILED_STORE },
    stdio: ["pipe", "pipe", "pipe"],
  });
  let stderr = "";
  child.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
  await new Promise<void>((resolve, reject) => {
    let out = "";
    child.stdout!.on("data", (d: Buffer) => {
      out += d.toString();
      if (out.includes("ready")) resolve();
    });
    child.on("exit", (code) => reject(new Error(`holder exited early (${code}): ${stderr}`)));
  });
  return child;
}

async function stopHolder(child: ChildProcess): Promise<void> {
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  child.stdin!.end();
  await exited;
}

function fileHash(p: string): string {
  return existsSync(p) ? createHash("sha256").update(readFileSync(p)).digest("hex") : "absent";
}

describe("SqliteCryptoStore specifics", () => {
  it("creates a missing folder (0700) and the file with mode 0600, WAL file too", async () => {
    const dir = join(tempDir(), "nested", "deeper");
    const path = join(dir, "crypto.db");
    const s = await openWithAccount(path);
    try {
      assert.equal(statSync(dir).mode & 0o777, 0o700);
      assert.equal(statSync(path).mode & 0o777, 0o600);
      s.saveChanges({ syncToken: "s1", values: { a: "b" } });
      if (existsSync(`${path}-wal`)) assert.equal(statSync(`${path}-wal`).mode & 0o777, 0o600);
      assert.equal(s.location, path);
    } finally {
      await s.close();
    }
    assert.equal(statSync(path).mode & 0o777, 0o600);
  });

  it("tightens an existing file to 0600", async () => {
    const path = join(tempDir(), "crypto.db");
    writeFileSync(path, "");
    chmodSync(path, 0o644);
    const s = new SqliteCryptoStore(path);
    await s.open();
    await s.close();
    assert.equal(statSync(path).mode & 0o777, 0o600);
  });

  it("a second open in the same process fails with StoreLockedError naming the path; the first keeps working", async () => {
    const path = join(tempDir(), "crypto.db");
    const setup = await openWithAccount(path);
    setup.saveChanges({ syncToken: "s1" });
    await setup.close();
    // open() alone (no migration or write to do) must already hold the lock.
    const first = new SqliteCryptoStore(path);
    await first.open();
    await first.useAccount(ACCOUNT.userId, ACCOUNT.deviceId);
    const before = [fileHash(path), fileHash(`${path}-wal`)];
    const second = new SqliteCryptoStore(path);
    await assert.rejects(second.open(), lockedAt(path));
    await assert.rejects(second.open(), lockedAt(path));
    assert.deepEqual([fileHash(path), fileHash(`${path}-wal`)], before, "the failed opener changed nothing");
    assert.throws(() => second.listAccounts(), isStoreError);
    await second.close();
    // The first connection is unaffected.
    first.saveChanges({ syncToken: "s2", values: { k: "v" } });
    assert.equal(first.getSyncToken(), "s2");
    await first.close();
    await first.close(); // idempotent
    // After close the lock is released.
    const third = await openWithAccount(path);
    assert.equal(third.getSyncToken(), "s2");
    assert.equal(third.getValue("k"), "v");
    await third.close();
  });

  for (const how of ["raw", "store"] as const) {
    it(`a lock held by another process (${how === "raw" ? "better-sqlite3" : "compiled SqliteCryptoStore"}) gives StoreLockedError`, async () => {
      const path = join(tempDir(), "crypto.db");
      if (how === "raw") {
        const s = await openWithAccount(path);
        s.saveChanges({ syncToken: "before-child" });
        await s.close();
      }
      const child = await spawnHolder(path, how);
      try {
        const s = new SqliteCryptoStore(path);
        await assert.rejects(s.open(), lockedAt(path));
        await s.close();
      } finally {
        await stopHolder(child);
      }
      const s = new SqliteCryptoStore(path);
      await s.open();
      try {
        if (how === "raw") {
          await s.useAccount(ACCOUNT.userId, ACCOUNT.deviceId);
          assert.equal(s.getSyncToken(), "before-child");
        } else {
          assert.deepEqual(await s.useAccount("@child:x", "CHILD"), { userId: "@child:x", deviceId: "CHILD", pickle: "p", deviceKeysUploaded: true, createdTs: 5 });
          assert.equal(s.getSyncToken(), "child");
        }
      } finally {
        await s.close();
      }
    });
  }

  it("a lock held by another worker thread of this process gives StoreLockedError", async () => {
    const path = join(tempDir(), "crypto.db");
    const setup = new SqliteCryptoStore(path);
    await setup.open();
    await setup.close();
    const worker = new Worker(
      `const { parentPort, workerData } = require("node:worker_threads");
       import(workerData.module).then(async ({ SqliteCryptoStore }) => {
         const s = new SqliteCryptoStore(workerData.path);
         await s.open();
         parentPort.postMessage("ready");
         parentPort.once("message", async () => { await s.close(); parentPort.postMessage("closed"); });
       }, (e) => parentPort.postMessage("error: " + e));`,
      { eval: true, workerData: { module: COMPILED_STORE, path } },
    );
    try {
      assert.equal(await once(worker, "message").then(([m]) => m), "ready");
      const s = new SqliteCryptoStore(path);
      await assert.rejects(s.open(), lockedAt(path));
      worker.postMessage("close");
      assert.equal(await once(worker, "message").then(([m]) => m), "closed");
      await s.open();
      await s.close();
    } finally {
      await worker.terminate();
    }
  });

  it("a lock held by a process that was killed is released", async () => {
    const path = join(tempDir(), "crypto.db");
    const child = await spawnHolder(path, "store");
    const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
    child.kill("SIGKILL");
    await exited;
    const s = new SqliteCryptoStore(path);
    await s.open();
    assert.notEqual(await s.useAccount("@child:x", "CHILD"), null);
    assert.equal(s.getSyncToken(), "child");
    await s.close();
  });

  it("migrations set user_version and create the tables", async () => {
    const path = join(tempDir(), "crypto.db");
    const s = new SqliteCryptoStore(path);
    await s.open();
    await s.close();
    const db = new Database(path, { readonly: true });
    try {
      assert.equal(db.pragma("user_version", { simple: true }), SCHEMA_VERSION);
      const tables = (db.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").pluck().all() as string[]).sort();
      for (const t of [
        "accounts",
        "olm_sessions",
        "inbound_group_sessions",
        "outbound_group_sessions",
        "devices",
        "tracked_users",
        "rooms",
        "room_members",
        "replay_sessions",
        "replay_chunks",
        "pending_events",
        "to_device_digests",
        "kv",
        "sync_state",
      ]) {
        assert.ok(tables.includes(t), `table ${t}`);
      }
      assert.equal(String(db.pragma("journal_mode", { simple: true })).toLowerCase(), "wal");
    } finally {
      db.close();
    }
    // Reopening does not migrate again.
    const again = new SqliteCryptoStore(path);
    await again.open();
    await again.close();
  });

  it("refuses a schema newer than it knows", async () => {
    const path = join(tempDir(), "crypto.db");
    const db = new Database(path);
    db.pragma(`user_version = ${SCHEMA_VERSION + 1}`);
    db.close();
    const s = new SqliteCryptoStore(path);
    await assert.rejects(s.open(), isStoreError);
    await s.close();
  });

  it("reopens after close, on the same instance too", async () => {
    const path = join(tempDir(), "crypto.db");
    const s = await openWithAccount(path);
    s.saveChanges({ syncToken: "one" });
    await s.close();
    assert.throws(() => s.listAccounts(), isStoreError);
    await s.open();
    await s.open(); // idempotent while open
    assert.equal(s.listAccounts().length, 1);
    assert.throws(() => s.getSyncToken(), isStoreError, "the account scope is reset by close");
    await s.useAccount(ACCOUNT.userId, ACCOUNT.deviceId);
    assert.equal(s.getSyncToken(), "one");
    await s.close();
  });

  it("a failure inside the transaction rolls the whole batch back", async () => {
    const path = join(tempDir(), "crypto.db");
    const s = await openWithAccount(path);
    try {
      s.saveChanges({ syncToken: "s1" });
      // Passes validation (an object), fails while serialising inside the transaction.
      const batch: StoreChanges = {
        olmSessions: [{ senderKey: "k", sessionId: "o", pickle: "p", createdTs: 1, lastUsedTs: 1 }],
        devices: [
          {
            userId: "@b:x",
            deviceId: "B",
            ed25519: "e",
            curve25519: "c",
            algorithms: [],
            verified: false,
            blacklisted: false,
            ignored: false,
            deleted: false,
            keysJson: "{}",
            firstSeenTs: 1,
          },
        ],
        rooms: [{ roomId: "!r:x", encryption: { big: 1n }, historyVisibility: null }],
        values: { k: "v" },
        syncToken: "s2",
      };
      assert.throws(() => s.saveChanges(batch), isStoreError);
      assert.deepEqual(s.getOlmSessions("k"), []);
      assert.equal(s.getDevice("@b:x", "B"), null);
      assert.equal(s.getRoom("!r:x"), null);
      assert.equal(s.getValue("k"), null);
      assert.equal(s.getSyncToken(), "s1");
    } finally {
      await s.close();
    }
  });

  it("deleteAccount leaves no row of the account in any table", async () => {
    const path = join(tempDir(), "crypto.db");
    const s = await openWithAccount(path);
    s.saveChanges({
      olmSessions: [{ senderKey: "k", sessionId: "o", pickle: "p", createdTs: 1, lastUsedTs: 1 }],
      inboundGroupSessions: [
        { roomId: "!r:x", senderKey: "k", sessionId: "i", pickle: "p", claimedEd25519: "e", forwardingChain: ["a"], firstKnownIndex: 0, source: "room_key", createdTs: 1 },
      ],
      outboundGroupSessions: [{ roomId: "!r:x", sessionId: "o", pickle: "p", createdTs: 1, messageCount: 0, rotationPeriodMs: 1, rotationPeriodMsgs: 1, sharedWith: [] }],
      devices: [
        { userId: "@b:x", deviceId: "B", ed25519: "e", curve25519: "c", algorithms: [], verified: false, blacklisted: false, ignored: false, deleted: false, keysJson: "{}", firstSeenTs: 1 },
      ],
      trackedUsers: [{ userId: "@b:x", dirty: true }],
      rooms: [{ roomId: "!r:x", encryption: null, historyVisibility: null }],
      roomMembers: [{ roomId: "!r:x", userId: "@b:x", membership: "join" }],
      replayRecords: [{ senderKey: "k", sessionId: "i", messageIndex: 0, eventId: "$e", originServerTs: 1 }],
      pendingEvents: [{ roomId: "!r:x", sessionId: "i", eventId: "$p", eventJson: "{}", receivedTs: 1 }],
      toDeviceDigests: ["d"],
      values: { k: "v" },
      syncToken: "s",
    });
    await s.deleteAccount(ACCOUNT.userId, ACCOUNT.deviceId);
    await s.close();
    const db = new Database(path, { readonly: true });
    try {
      const tables = db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'").pluck().all() as string[];
      assert.ok(tables.length >= 13);
      for (const t of tables) assert.equal(db.prepare(`SELECT count(*) FROM ${t}`).pluck().get(), 0, `rows left in ${t}`);
    } finally {
      db.close();
    }
  });

  it("prunes to-device digests older than 7 days", async (t) => {
    const path = join(tempDir(), "crypto.db");
    t.mock.timers.enable({ apis: ["Date"], now: 1_000_000_000_000 });
    const s = await openWithAccount(path);
    try {
      s.saveChanges({ toDeviceDigests: ["old"] });
      t.mock.timers.tick(6 * 24 * 3600_000);
      s.saveChanges({ toDeviceDigests: ["newer"] });
      assert.equal(s.hasToDeviceDigest("old"), true);
      t.mock.timers.tick(2 * 24 * 3600_000);
      s.saveChanges({ syncToken: "x" });
      assert.equal(s.hasToDeviceDigest("old"), false);
      assert.equal(s.hasToDeviceDigest("newer"), true);
    } finally {
      await s.close();
      t.mock.timers.reset();
    }
  });

  it("rejects a malformed cursor and throws StoreError when not open", async () => {
    const path = join(tempDir(), "crypto.db");
    const closed = new SqliteCryptoStore(path);
    assert.throws(() => closed.listAccounts(), isStoreError);
    assert.throws(() => closed.saveChanges({}), isStoreError);
    const s = await openWithAccount(path);
    try {
      assert.throws(() => s.listInboundGroupSessions(10, "no-separators"), isStoreError);
    } finally {
      await s.close();
    }
  });

  it("never logs pickles", async () => {
    const lines: string[] = [];
    const rec = (m: string, ...a: unknown[]) => void lines.push([m, ...a.map((x) => JSON.stringify(x))].join(" "));
    const logger: Logger = { debug: rec, info: rec, warn: rec, error: rec };
    const path = join(tempDir(), "crypto.db");
    const s = await openWithAccount(path, logger);
    s.saveChanges({ olmSessions: [{ senderKey: "k", sessionId: "o", pickle: "secret-olm-pickle", createdTs: 1, lastUsedTs: 1 }] });
    await assert.rejects(new SqliteCryptoStore(path, logger).open(), StoreLockedError);
    assert.throws(() => s.saveChanges({ olmSessions: [{ senderKey: "k", sessionId: "o", pickle: { secret: "secret-bad" } as unknown as string, createdTs: 1, lastUsedTs: 1 }] }), (e: unknown) => {
      assert.ok(isStoreError(e));
      assert.ok(!(e as Error).message.includes("secret"));
      return true;
    });
    await s.deleteAccount(ACCOUNT.userId, ACCOUNT.deviceId);
    await s.close();
    assert.ok(lines.length > 0);
    assert.ok(!lines.some((l) => l.includes("secret")), lines.join("\n"));
  });
});
