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
});
