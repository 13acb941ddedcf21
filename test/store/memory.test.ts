import { describe, it, mock } from "node:test";
import assert from "node:assert/strict";
import { MemoryCryptoStore } from "../../workers/store/memory/MemoryCryptoStore.js";
import { runCryptoStoreConformanceTests } from "../../src/testing/storeConformance.js";
import { ErrorCode, MatrixSdkError } from "../../src/protocol/errors.js";

const isStoreError = (e: unknown): boolean => MatrixSdkError.isSdkError(e) && e.code === ErrorCode.Store;

// `reopen` hands back the same instance: a MemoryCryptoStore keeps its data across close/open.
runCryptoStoreConformanceTests("MemoryCryptoStore", async () => {
  const store = new MemoryCryptoStore();
  return { store, reopen: async () => store };
});

describe("MemoryCryptoStore specifics", () => {
  it("has location 'memory'", () => {
    assert.equal(new MemoryCryptoStore({ ignored: true }).location, "memory");
  });

  it("throws StoreError while closed", async () => {
    const s = new MemoryCryptoStore();
    await s.open();
    await s.close();
    assert.throws(() => s.listAccounts(), isStoreError);
    await assert.rejects(s.useAccount("@a:x", "D"), isStoreError);
    await s.open();
    assert.deepEqual(s.listAccounts(), []);
  });

  it("rejects a malformed cursor with StoreError", async () => {
    const s = new MemoryCryptoStore();
    await s.open();
    await s.useAccount("@a:x", "D");
    await s.saveChanges({ account: { userId: "@a:x", deviceId: "D", pickle: "p", deviceKeysUploaded: false, createdTs: 1 } });
    assert.throws(() => s.listInboundGroupSessions(10, "no-separators"), isStoreError);
  });

  it("prunes to-device digests older than 7 days", async (t) => {
    t.mock.timers.enable({ apis: ["Date"], now: 1_000_000_000_000 });
    try {
      const s = new MemoryCryptoStore();
      await s.open();
      await s.useAccount("@a:x", "D");
      s.saveChanges({ account: { userId: "@a:x", deviceId: "D", pickle: "p", deviceKeysUploaded: false, createdTs: 1 }, toDeviceDigests: ["old"] });
      t.mock.timers.tick(6 * 24 * 3600_000);
      s.saveChanges({ toDeviceDigests: ["newer"] });
      assert.equal(s.hasToDeviceDigest("old"), true);
      t.mock.timers.tick(2 * 24 * 3600_000);
      s.saveChanges({ syncToken: "x" });
      assert.equal(s.hasToDeviceDigest("old"), false);
      assert.equal(s.hasToDeviceDigest("newer"), true);
    } finally {
      mock.timers.reset();
    }
  });
});
