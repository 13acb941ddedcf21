/**
 * The one batch validator both built-in stores use (workers/store/validateChanges.ts), exported
 * to custom stores through `./stores`.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { MemoryCryptoStore } from "../../workers/store/memory/MemoryCryptoStore.js";
import { SqliteCryptoStore } from "../../workers/store/sqlite/SqliteCryptoStore.js";
import * as stores from "../../workers/store/index.js";
import { isEmptyBatch, validateBatchForAccount, validateChanges } from "../../workers/store/validateChanges.js";
import { ErrorCode, MatrixSdkError } from "../../src/protocol/errors.js";
import type { CryptoStore, InboundGroupSessionRecord, StoreChanges } from "../../src/protocol/store.js";

const session: InboundGroupSessionRecord = {
  roomId: "!r:x",
  senderKey: "ck",
  sessionId: "s",
  pickle: "secret-pickle",
  claimedEd25519: "ed",
  forwardingChain: [],
  firstKnownIndex: 0,
  source: "room_key",
  createdTs: 1,
};
const withSenderData = (senderData: unknown): StoreChanges => ({ inboundGroupSessions: [{ ...session, senderData } as InboundGroupSessionRecord] });

/** Asserts `fn` throws the StoreError of an invalid batch naming `field` and what it must be. */
function rejects(fn: () => unknown, field: string, expected: string): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(MatrixSdkError.isSdkError(e) && e.code === ErrorCode.Store, String(e));
    assert.equal(e.message, `Invalid store batch: ${field} must be ${expected}.`);
    assert.equal(e.details.field, field);
    assert.ok(!e.message.includes("secret"));
    return true;
  });
}

describe("validateChanges (shared by the built-in stores)", () => {
  it("is exported from the stores entry point", () => {
    assert.equal(stores.validateChanges, validateChanges);
    assert.equal(stores.isEmptyBatch, isEmptyBatch);
    assert.equal(stores.validateBatchForAccount, validateBatchForAccount);
  });

  it("accepts every kind of senderData, and a session without it", () => {
    for (const senderData of [
      { kind: "own" },
      { kind: "olm", userId: "@b:x", deviceId: "B", curve25519: "c", ed25519: "e" },
      { kind: "olm", userId: "@b:x", deviceId: null, curve25519: "c", ed25519: "e" },
      { kind: "forwarded", userId: "@a:x", deviceId: null, curve25519: "c" },
      { kind: "imported" },
      { kind: "backup", version: "1" },
      undefined,
    ]) {
      validateChanges(withSenderData(senderData));
    }
    validateChanges({ inboundGroupSessions: [session] });
  });

  it("rejects a senderData of the wrong shape, naming the field", () => {
    const p = "inboundGroupSessions[0].senderData";
    rejects(() => validateChanges(withSenderData(null)), p, "an object");
    rejects(() => validateChanges(withSenderData("own")), p, "an object");
    rejects(() => validateChanges(withSenderData({ kind: "room_key" })), `${p}.kind`, "own | olm | forwarded | imported | backup");
    rejects(() => validateChanges(withSenderData({})), `${p}.kind`, "own | olm | forwarded | imported | backup");
    rejects(() => validateChanges(withSenderData({ kind: "olm", userId: "@b:x", deviceId: 5, curve25519: "c", ed25519: "e" })), `${p}.deviceId`, "a string or null");
    rejects(() => validateChanges(withSenderData({ kind: "olm", userId: "@b:x", deviceId: "B", curve25519: "c" })), `${p}.ed25519`, "a string");
    rejects(() => validateChanges(withSenderData({ kind: "forwarded", deviceId: "B", curve25519: "c" })), `${p}.userId`, "a string");
    rejects(() => validateChanges(withSenderData({ kind: "forwarded", userId: "@a:x", curve25519: "c" })), `${p}.deviceId`, "a string or null");
    rejects(() => validateChanges(withSenderData({ kind: "backup" })), `${p}.version`, "a string");
  });

  it("keeps the messages of the other fields", () => {
    rejects(() => validateChanges({ inboundGroupSessions: [{ ...session, source: "elsewhere" as "own" }] }), "inboundGroupSessions[0].source", "own | room_key | forwarded | imported");
    rejects(() => validateChanges({ olmSessions: [{ senderKey: "k", sessionId: "s", pickle: { secret: 1 } as unknown as string, createdTs: 1, lastUsedTs: 1 }] }), "olmSessions[0].pickle", "a string");
    rejects(() => validateChanges({ values: { k: 1 as unknown as string } }), 'values["k"]', "a string or null");
  });

  it("isEmptyBatch: true only when nothing but the account is written", () => {
    assert.equal(isEmptyBatch({}), true);
    assert.equal(isEmptyBatch({ olmSessions: [], values: {} }), true);
    assert.equal(isEmptyBatch({ values: { k: null } }), false);
    assert.equal(isEmptyBatch({ syncToken: "" }), false);
    assert.equal(isEmptyBatch({ inboundGroupSessions: [session] }), false);
  });

  it("validateBatchForAccount: the account rules of the built-in stores", () => {
    const me = { userId: "@a:x", deviceId: "D" };
    const account = { ...me, pickle: "p", deviceKeysUploaded: false, createdTs: 1 };
    const isStoreError = (e: unknown): boolean => MatrixSdkError.isSdkError(e) && e.code === ErrorCode.Store;
    assert.throws(() => validateBatchForAccount({ syncToken: "t" }, null, false), /No account selected/);
    assert.equal(validateBatchForAccount({ account }, null, false), true);
    assert.throws(() => validateBatchForAccount({ account: { ...account, deviceId: "OTHER" } }, me, true), /not the selected account/);
    assert.equal(validateBatchForAccount({ values: {} }, me, false), false, "an empty batch for a missing account is skipped");
    assert.throws(() => validateBatchForAccount({ syncToken: "t" }, me, false), /does not exist yet/);
    assert.equal(validateBatchForAccount({ syncToken: "t" }, me, true), true);
    assert.throws(() => validateBatchForAccount({ account, syncToken: 1 as unknown as string }, me, true), isStoreError);
  });

  for (const [name, make] of [
    ["MemoryCryptoStore", () => new MemoryCryptoStore()],
    ["SqliteCryptoStore", () => new SqliteCryptoStore(":memory:")],
  ] as [string, () => CryptoStore][]) {
    it(`${name} rejects a malformed senderData and applies nothing of the batch`, async () => {
      const s = make();
      await s.open();
      try {
        await s.useAccount("@a:x", "D");
        await s.saveChanges({ account: { userId: "@a:x", deviceId: "D", pickle: "p", deviceKeysUploaded: false, createdTs: 1 } });
        const batch: StoreChanges = { ...withSenderData({ kind: "olm", userId: "@b:x", deviceId: 1, curve25519: "c", ed25519: "e" }), syncToken: "t" };
        rejects(() => s.saveChanges(batch), "inboundGroupSessions[0].senderData.deviceId", "a string or null");
        assert.equal(s.getInboundGroupSession("!r:x", "ck", "s"), null);
        assert.equal(s.getSyncToken(), null);
      } finally {
        await s.close();
      }
    });
  }
});
