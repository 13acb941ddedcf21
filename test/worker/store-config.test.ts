/**
 * Store configuration seen through the real worker: custom store modules, a corrupted file.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { CryptoWorkerHost } from "../../src/client/CryptoWorkerHost.js";
import { ErrorCode, MatrixSdkError } from "../../src/protocol/errors.js";
import type { StoreConfig } from "../../src/protocol/store.js";
import { noopLogger } from "../../src/pure/logger.js";

const journalModule = fileURLToPath(new URL("../../examples/JournalCryptoStore.js", import.meta.url));
const host = (store: StoreConfig): CryptoWorkerHost => new CryptoWorkerHost({ store, pickleKey: "k", logLevel: "silent" }, noopLogger);

describe("store configuration in the worker", () => {
  it("builds a custom store from a module path and export name, and it persists", async () => {
    const path = join(mkdtempSync(join(tmpdir(), "sdk-custom-")), "crypto.jsonl");
    const conf: StoreConfig = { kind: "module", module: journalModule, export: "JournalCryptoStore", options: { path } };
    const h1 = host(conf);
    const a = await h1.api.loadAccount("@a:example.org", "DEV");
    assert.equal(await h1.api.storeLocation(), `journal:${path}`);
    await h1.close();
    assert.equal(statSync(path).mode & 0o777, 0o600);
    const h2 = host(conf);
    assert.deepEqual(await h2.api.loadAccount("@a:example.org", "DEV"), a);
    await h2.close();
  });

  it("reports a missing store module or export with a typed error", async () => {
    await assert.rejects(host({ kind: "module", module: "/nonexistent/store.js", export: "X" }).start(), (e: unknown) => MatrixSdkError.isSdkError(e) && e.code === ErrorCode.Store);
    await assert.rejects(host({ kind: "module", module: journalModule, export: "Nope" }).start(), (e: unknown) => MatrixSdkError.isSdkError(e) && e.code === ErrorCode.InvalidArgument);
  });

  it("gives a typed StoreError for a corrupted database file, without crashing", async () => {
    const path = join(mkdtempSync(join(tmpdir(), "sdk-corrupt-")), "crypto.db");
    writeFileSync(path, Buffer.alloc(8192, 0x5a));
    await assert.rejects(host({ kind: "sqlite", path }).start(), (e: unknown) => MatrixSdkError.isSdkError(e) && e.code === ErrorCode.Store);
  });
});
