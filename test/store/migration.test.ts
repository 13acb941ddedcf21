/**
 * A database written by schema version 1 (a fixture committed with the repo, made by the SDK at
 * that version) opens, migrates to the current version and keeps its keys and messages readable.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { copyFileSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Olm from "@matrix-org/olm";
import Database from "better-sqlite3";
import { SqliteCryptoStore, SQLITE_MIGRATIONS } from "../../workers/store/SqliteCryptoStore.js";
import { CryptoEngine } from "../../workers/engine/CryptoEngine.js";
import { noopLogger } from "../../src/util/logger.js";

const fixtures = new URL("../../../test/fixtures/", import.meta.url);

describe("SQLite schema migrations", () => {
  it("migrates the v1 fixture to the current version with its account, sessions and sync token intact", async () => {
    await Olm.init();
    const expected = JSON.parse(readFileSync(new URL("crypto-v1.json", fixtures), "utf8")) as { ed25519: string; curve25519: string; event: unknown };
    const path = join(mkdtempSync(join(tmpdir(), "sdk-migrate-")), "crypto.db");
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
    assert.equal(after.pragma("user_version", { simple: true }), SQLITE_MIGRATIONS.length);
    after.close();
  });

  it("packs version 2's replay records (one row per message) into chunks, keeping every record and the first sighting", async () => {
    const path = join(mkdtempSync(join(tmpdir(), "sdk-migrate-")), "crypto.db");
    const db = new Database(path);
    db.exec(SQLITE_MIGRATIONS[0]!);
    db.exec(SQLITE_MIGRATIONS[1]!);
    db.pragma("user_version = 2");
    db.prepare("INSERT INTO accounts (account_id, user_id, device_id, pickle, device_keys_uploaded, created_ts) VALUES (1, '@m:x', 'DEV', 'p', 1, 1)").run();
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
    assert.equal(after.pragma("user_version", { simple: true }), SQLITE_MIGRATIONS.length);
    assert.equal(after.prepare("SELECT count(*) FROM sqlite_master WHERE name = 'replay_records'").pluck().get(), 0);
    assert.equal(after.prepare("SELECT count(*) FROM replay_chunks").pluck().get(), 0);
    assert.equal(after.prepare("SELECT count(*) FROM replay_sessions").pluck().get(), 0);
    after.close();
  });
});
