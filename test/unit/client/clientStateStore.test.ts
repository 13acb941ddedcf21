/**
 * The client state store (issue 16 item 5): a sync's rooms and token in one transaction, rooms
 * left removed, one row set per user, the application's key-value store, all back after reopening.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ClientStateStore } from "../../../src/client/state/ClientStateStore.js";
import { InvalidArgumentError } from "../../../src/protocol/errors.js";

describe("ClientStateStore", () => {
  it("keeps the sync token, joined rooms and storage per user across reopening; a left room is removed", () => {
    const dir = mkdtempSync(join(tmpdir(), "sdk-state-"));
    const path = join(dir, "state.db");
    try {
      const a = ClientStateStore.open(path, "@a:x");
      const b = ClientStateStore.open(path, "@b:x");
      a.saveSync("t1", [{ roomId: "!r1:x", members: { "@a:x": "join" }, encryption: null }, { roomId: "!r2:x", members: {}, encryption: { algorithm: "m.megolm.v1.aes-sha2" } }], []);
      a.saveSync("t2", [], ["!r1:x"]);
      a.set("k", "v");
      b.set("k", "other");
      a.close();
      b.close();
      assert.equal(statSync(path).mode & 0o777, 0o600);
      const again = ClientStateStore.open(path, "@a:x");
      assert.equal(again.syncToken(), "t2");
      assert.deepEqual(again.rooms(), [{ roomId: "!r2:x", members: {}, encryption: { algorithm: "m.megolm.v1.aes-sha2" } }]);
      assert.equal(again.get("k"), "v");
      assert.deepEqual(again.keys(), ["k"]);
      assert.equal(again.delete("k"), true);
      assert.equal(again.get("k"), undefined);
      assert.throws(() => again.set("", "v"), InvalidArgumentError);
      again.close();
      const other = ClientStateStore.open(path, "@c:x");
      assert.equal(other.syncToken(), null);
      assert.deepEqual(other.rooms(), []);
      other.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  /** Records the store's pragma calls (its connection is private). */
  const pragmas = (store: ClientStateStore): string[] => {
    const db = (store as unknown as { db: { pragma: (s: string, o?: object) => unknown } }).db;
    const seen: string[] = [];
    const orig = db.pragma.bind(db);
    db.pragma = (sql: string, o?: object) => {
      seen.push(sql);
      return orig(sql, o);
    };
    return seen;
  };
  const synchronous = (store: ClientStateStore): unknown => (store as unknown as { db: { pragma: (s: string, o?: object) => unknown } }).db.pragma("synchronous", { simple: true });

  it("defers a sync's write to its WAL file without a sync of its own, readable at once and after reopening; the connection stays at FULL for everything else", () => {
    const dir = mkdtempSync(join(tmpdir(), "sdk-state-"));
    const path = join(dir, "state.db");
    try {
      const a = ClientStateStore.open(path, "@a:x");
      assert.deepEqual(a.durabilityFiles(), [`${path}-wal`]);
      const seen = pragmas(a);
      a.saveSync("t1", [{ roomId: "!r1:x", members: { "@a:x": "join" }, encryption: null }], [], { deferSync: true });
      assert.deepEqual(seen, ["synchronous = NORMAL", "synchronous = FULL"]);
      assert.equal(synchronous(a), 2, "FULL again after the deferred write");
      const before = seen.length;
      a.saveSync("t2", [], []);
      assert.deepEqual(seen.slice(before), [], "a write without deferSync syncs as ever");
      assert.ok(existsSync(`${path}-wal`));
      const other = ClientStateStore.open(path, "@a:x");
      assert.equal(other.syncToken(), "t2");
      other.close();
      a.close();
      const again = ClientStateStore.open(path, "@a:x");
      assert.deepEqual(again.rooms(), [{ roomId: "!r1:x", members: { "@a:x": "join" }, encryption: null }]);
      again.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("an in-memory store has no WAL: its writes never defer their sync and it names no file to sync", () => {
    const m = ClientStateStore.open(":memory:", "@a:x");
    const seen = pragmas(m);
    m.saveSync("t1", [], [], { deferSync: true });
    assert.deepEqual(seen, []);
    assert.deepEqual(m.durabilityFiles(), []);
    assert.equal(m.syncToken(), "t1");
    m.close();
  });
});
