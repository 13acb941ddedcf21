import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync, appendFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { JournalCryptoStore } from "../../examples/JournalCryptoStore.js";
import { runCryptoStoreConformanceTests } from "../../src/testing/storeConformance.js";
import { ErrorCode, MatrixSdkError } from "../../src/protocol/errors.js";

// The example custom store from examples/ passes the same suite as the built-in stores.
runCryptoStoreConformanceTests("JournalCryptoStore (examples/)", async () => {
  const path = join(mkdtempSync(join(tmpdir(), "sdk-journal-")), "crypto.jsonl");
  return { store: new JournalCryptoStore({ path }), reopen: async () => new JournalCryptoStore({ path }) };
});

describe("JournalCryptoStore specifics", () => {
  it("drops a torn last line and rejects corruption elsewhere with StoreError", async () => {
    const dir = mkdtempSync(join(tmpdir(), "sdk-journal-"));
    const path = join(dir, "j.jsonl");
    const s = new JournalCryptoStore({ path });
    await s.open();
    await s.useAccount("@a:x", "D");
    await s.saveChanges({ account: { userId: "@a:x", deviceId: "D", pickle: "p", deviceKeysUploaded: false, createdTs: 1 } });
    await s.close();
    appendFileSync(path, '{"u":"@a:x","d":"D","c":{"syncTok');
    const s2 = new JournalCryptoStore({ path });
    await s2.open();
    assert.equal(s2.getStoredDeviceId("@a:x"), "D");
    await s2.close();
    writeFileSync(path, "garbage\n{}\n\n");
    await assert.rejects(new JournalCryptoStore({ path }).open(), (e: unknown) => MatrixSdkError.isSdkError(e) && e.code === ErrorCode.Store);
  });
});
