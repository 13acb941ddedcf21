/**
 * A database written by schema version 1 (a fixture committed with the repo, made by the SDK at
 * that version) opens, migrates to the current version and keeps its keys and messages readable;
 * databases at later versions migrate too; the numbered `.sql` files ship complete.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { copyFileSync, cpSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import Olm from "@matrix-org/olm";
import Database from "better-sqlite3";
import { SqliteCryptoStore } from "../../workers/store/sqlite/SqliteCryptoStore.js";
import { loadMigrations, MIGRATIONS_DIR, SCHEMA_VERSION } from "../../workers/store/sqlite/migrate.js";
import { ErrorCode, MatrixSdkError } from "../../src/protocol/errors.js";
import type { InboundGroupSessionRecord } from "../../src/protocol/store.js";
import { CryptoEngine } from "../../workers/engine/CryptoEngine.js";
import { noopLogger } from "../../src/pure/logger.js";

const fixtures = new URL("../../../test/fixtures/", import.meta.url);
const sourceMigrations = new URL("../../../workers/store/sqlite/migrations/", import.meta.url);

/** A fresh database file path in its own temporary folder. */
const tempDb = (): string => join(mkdtempSync(join(tmpdir(), "sdk-migrate-")), "crypto.db");

/** A database as the SDK left it at schema `version`, holding account 1 (`@m:x` / `DEV`); still open, for rows to be added. */
function databaseAt(version: number): { path: string; db: Database.Database } {
  const path = tempDb();
  const db = new Database(path);
  for (const sql of loadMigrations().slice(0, version)) db.exec(sql);
  db.pragma(`user_version = ${version}`);
  db.prepare("INSERT INTO accounts (account_id, user_id, device_id, pickle, device_keys_uploaded, created_ts) VALUES (1, '@m:x', 'DEV', 'p', 1, 1)").run();
  return { path, db };
}

/** The schema objects of a database file, as SQLite stored their statements. */
function schemaOf(path: string): unknown[] {
  const db = new Database(path, { readonly: true });
  try {
    return db.prepare("SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name").all();
  } finally {
    db.close();
  }
}

describe("SQLite schema migrations", () => {
  it("migrates the v1 fixture to the current version with its account, sessions and sync token intact", async () => {
    await Olm.init();
    const expected = JSON.parse(readFileSync(new URL("crypto-v1.json", fixtures), "utf8")) as { ed25519: string; curve25519: string; event: unknown };
    const path = tempDb();
    copyFileSync(new URL("crypto-v1.db", fixtures), path);
    const before = new Database(path, { readonly: true });
    assert.equal(before.pragma("user_version", { simple: true }), 1);
    before.close();

    const store = new SqliteCryptoStore(path, noopLogger);
    await store.open();
    const engine = new CryptoEngine({ olm: Olm, store, pickleKey: "fixture pickle key", logger: noopLogger });
    const info = await engine.loadAccount("@fixture:example.org", "FIXTUREDEV");
    assert.equal(info.ed25519, expected.ed25519);
    assert.equal(info.curve25519, expected.curve25519);
    assert.equal(engine.getSyncToken(), "s_fixture_1");
    const [r] = await engine.decryptRoomEvents("!room:example.org", [expected.event]);
    assert.ok(r?.ok);
    assert.equal(JSON.parse(r.plaintextJson).content.body, "written by schema v1");
    engine.release();
    await store.close();
    const after = new Database(path, { readonly: true });
    assert.equal(after.pragma("user_version", { simple: true }), SCHEMA_VERSION);
    after.close();
  });

  it("packs version 2's replay records (one row per message) into chunks, keeping every record and the first sighting", async () => {
    const { path, db } = databaseAt(2);
    const ins = db.prepare("INSERT INTO replay_records (account_id, sender_key, session_id, message_index, event_id, origin_server_ts) VALUES (1, ?, ?, ?, ?, ?)");
    for (let i = 0; i < 150; i++) ins.run("curveA", "sessA", i, `$a${i}`, 1000 + i);
    ins.run("curveB", "sessB", 7, "$b7", 42);
    db.close();

    const store = new SqliteCryptoStore(path, noopLogger);
    await store.open();
    assert.ok(await store.useAccount("@m:x", "DEV"));
    for (const i of [0, 63, 64, 127, 128, 149]) {
      assert.deepEqual(store.getReplayRecord("curveA", "sessA", i), { senderKey: "curveA", sessionId: "sessA", messageIndex: i, eventId: `$a${i}`, originServerTs: 1000 + i });
    }
    assert.equal(store.getReplayRecord("curveA", "sessA", 150), null);
    assert.equal(store.getReplayRecord("curveB", "sessA", 7), null);
    assert.deepEqual(store.getReplayRecord("curveB", "sessB", 7), { senderKey: "curveB", sessionId: "sessB", messageIndex: 7, eventId: "$b7", originServerTs: 42 });
    // A later record for a migrated index does not replace the first sighting; a new one is kept.
    await store.saveChanges({
      replayRecords: [
        { senderKey: "curveA", sessionId: "sessA", messageIndex: 5, eventId: "$other", originServerTs: 1 },
        { senderKey: "curveA", sessionId: "sessA", messageIndex: 500, eventId: "$a500", originServerTs: 2 },
      ],
    });
    assert.equal(store.getReplayRecord("curveA", "sessA", 5)?.eventId, "$a5");
    assert.equal(store.getReplayRecord("curveA", "sessA", 500)?.eventId, "$a500");
    await store.close();
    {
      const db2 = new Database(path, { readonly: true });
      assert.ok((db2.prepare("SELECT count(*) FROM replay_chunks").pluck().get() as number) <= 5);
      db2.close();
    }
    // Deleting the account removes its replay records too (cascade through the session numbers).
    const again = new SqliteCryptoStore(path, noopLogger);
    await again.open();
    await again.deleteAccount("@m:x", "DEV");
    await again.close();
    const after = new Database(path, { readonly: true });
    assert.equal(after.pragma("user_version", { simple: true }), SCHEMA_VERSION);
    assert.equal(after.prepare("SELECT count(*) FROM sqlite_master WHERE name = 'replay_records'").pluck().get(), 0);
    assert.equal(after.prepare("SELECT count(*) FROM replay_chunks").pluck().get(), 0);
    assert.equal(after.prepare("SELECT count(*) FROM replay_sessions").pluck().get(), 0);
    after.close();
  });

  it("opens a database at version 3: its inbound sessions come back without senderData, new ones keep theirs", async () => {
    const { path, db } = databaseAt(3);
    db.prepare(
      `INSERT INTO inbound_group_sessions (account_id, room_id, sender_key, session_id, pickle, claimed_ed25519, forwarding_chain,
         first_known_index, source, created_ts) VALUES (1, '!r:x', 'ck', 'old', 'ig-pickle', 'ed', '["f1"]', 3, 'room_key', 9)`,
    ).run();
    db.close();
    const old: InboundGroupSessionRecord = {
      roomId: "!r:x",
      senderKey: "ck",
      sessionId: "old",
      pickle: "ig-pickle",
      claimedEd25519: "ed",
      forwardingChain: ["f1"],
      firstKnownIndex: 3,
      source: "room_key",
      createdTs: 9,
    };
    const fresh: InboundGroupSessionRecord = { ...old, sessionId: "new", senderData: { kind: "olm", userId: "@b:x", deviceId: null, curve25519: "ck", ed25519: "ed" } };

    const store = new SqliteCryptoStore(path, noopLogger);
    await store.open();
    assert.ok(await store.useAccount("@m:x", "DEV"));
    const migrated = store.getInboundGroupSession("!r:x", "ck", "old");
    assert.deepEqual(migrated, old);
    assert.equal("senderData" in migrated!, false, "no senderData key, not an undefined one");
    assert.deepEqual(store.listInboundGroupSessions(10), [old]);
    store.saveChanges({ inboundGroupSessions: [fresh] });
    await store.close();

    const again = new SqliteCryptoStore(path, noopLogger);
    await again.open();
    await again.useAccount("@m:x", "DEV");
    assert.deepEqual(again.listInboundGroupSessions(10), [fresh, old]);
    await again.close();
    const after = new Database(path, { readonly: true });
    assert.equal(after.pragma("user_version", { simple: true }), SCHEMA_VERSION);
    assert.deepEqual(
      after.prepare("SELECT session_id, sender_data FROM inbound_group_sessions ORDER BY session_id").all(),
      [
        { session_id: "new", sender_data: JSON.stringify(fresh.senderData) },
        { session_id: "old", sender_data: null },
      ],
    );
    after.close();
  });

  it("migration 001 creates exactly the schema of the v1 fixture (statement text included)", () => {
    const fixture = tempDb();
    copyFileSync(new URL("crypto-v1.db", fixtures), fixture);
    const path = tempDb();
    const db = new Database(path);
    db.exec(loadMigrations()[0]!);
    db.close();
    assert.deepEqual(schemaOf(path), schemaOf(fixture));
  });

  it("the build ships the numbered .sql files next to the compiled store, as in the source tree", () => {
    const names = readdirSync(sourceMigrations).filter((n) => n.endsWith(".sql")).sort();
    assert.deepEqual(
      names.map((n) => n.slice(0, 4)),
      Array.from({ length: SCHEMA_VERSION }, (_, i) => `${String(i + 1).padStart(3, "0")}_`),
    );
    assert.deepEqual(readdirSync(MIGRATIONS_DIR).filter((n) => n.endsWith(".sql")).sort(), names);
    for (const n of names) assert.equal(readFileSync(new URL(n, MIGRATIONS_DIR), "utf8"), readFileSync(new URL(n, sourceMigrations), "utf8"), n);
  });

  it("a missing, extra or misnamed migration file fails with StoreError", () => {
    const dir = mkdtempSync(join(tmpdir(), "sdk-migrations-"));
    const url = pathToFileURL(`${dir}/`);
    cpSync(MIGRATIONS_DIR, dir, { recursive: true });
    const names = readdirSync(dir).sort();
    assert.equal(loadMigrations(url).length, SCHEMA_VERSION);
    const failsAt = (schemaVersion: number | undefined) => (e: unknown): boolean => {
      assert.ok(MatrixSdkError.isSdkError(e) && e.code === ErrorCode.Store, String(e));
      assert.equal(e.details.schemaVersion, schemaVersion);
      return true;
    };
    rmSync(join(dir, names[1]!));
    assert.throws(() => loadMigrations(url), failsAt(2));
    cpSync(new URL(names[1]!, MIGRATIONS_DIR), join(dir, names[1]!));
    rmSync(join(dir, names[names.length - 1]!));
    assert.throws(() => loadMigrations(url), failsAt(SCHEMA_VERSION));
    cpSync(new URL(names[names.length - 1]!, MIGRATIONS_DIR), join(dir, names[names.length - 1]!));
    writeFileSync(join(dir, `${String(SCHEMA_VERSION + 1).padStart(3, "0")}_future.sql`), "SELECT 1;");
    assert.throws(() => loadMigrations(url), failsAt(SCHEMA_VERSION + 1));
    rmSync(join(dir, `${String(SCHEMA_VERSION + 1).padStart(3, "0")}_future.sql`));
    writeFileSync(join(dir, "2_typo.sql"), "SELECT 1;");
    assert.throws(() => loadMigrations(url), failsAt(undefined));
    rmSync(join(dir, "2_typo.sql"));
    assert.equal(loadMigrations(url).length, SCHEMA_VERSION);
    assert.throws(() => loadMigrations(pathToFileURL(join(dir, "absent/"))), failsAt(undefined));
  });
});
