/**
 * A conformance suite for {@link CryptoStore} implementations, built on `node:test`.
 *
 * One file (~900 lines) on purpose: it is one suite of one contract, published as one entry
 * point (`matrix-e2ee-worker-sdk/testing`), with its fixtures and then one `describe` per part of
 * the interface, in the interface's order.
 *
 * Use it to check your own store against the same behaviour the built-in stores have, from a
 * test file run with `node --test`:
 *
 * ```ts
 * runCryptoStoreConformanceTests("MyStore", async () => {
 *   const dir = await makeTempDir();
 *   return {
 *     store: new MyStore(dir),
 *     reopen: async () => new MyStore(dir),
 *     cleanup: async () => removeDir(dir),
 *   };
 * });
 * ```
 *
 * @packageDocumentation
 */

import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { ErrorCode, MatrixSdkError } from "../protocol/errors.js";
import type {
  AccountRecord,
  CryptoStore,
  DeviceRecord,
  InboundGroupSessionRecord,
  OlmSessionRecord,
  OutboundGroupSessionRecord,
  PendingEventRecord,
  ReplayRecord,
  RoomMemberRecord,
  RoomRecord,
  SenderData,
  StoreChanges,
  TrackedUserRecord,
} from "../protocol/store.js";

/** What the factory passed to {@link runCryptoStoreConformanceTests} returns for each test. */
export interface CryptoStoreUnderTest {
  /** A store that is **not yet opened**; the suite calls `open()` (a no-op when already open is fine). */
  store: CryptoStore;
  /**
   * Open the same underlying storage again through a new (or the same) store object. The suite
   * closes the previous store before calling it and calls `open()` on the result. Persistence
   * tests are skipped when absent.
   */
  reopen?: () => Promise<CryptoStore>;
  /** Release what the factory created (files, folders). Called after the store was closed. */
  cleanup?: () => Promise<void>;
}

/** Options of {@link runCryptoStoreConformanceTests}. */
export interface CryptoStoreConformanceOptions {
  /**
   * Skip the atomicity tests. They make `saveChanges` fail midway by passing a record with a field
   * of the wrong type (an object where a string is expected) after valid records, and expect the
   * store to throw (or reject) and apply nothing. Skip for stores that cannot be made to fail.
   */
  skipAtomicity?: boolean;
  /**
   * The pagination cursor of a record, as `listInboundGroupSessions(limit, after)` expects it.
   * Default: `${roomId}|${senderKey}|${sessionId}` (the built-in stores' format).
   */
  cursorOf?: (r: InboundGroupSessionRecord) => string;
}

const ALICE = "@alice:example.org";
const BOB = "@bob:example.org";

function isStoreError(e: unknown): boolean {
  return MatrixSdkError.isSdkError(e) && e.code === ErrorCode.Store;
}

// ---------------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------------

function accountRec(userId = ALICE, deviceId = "ALICEDEV", createdTs = 1_000): AccountRecord {
  return { userId, deviceId, pickle: `account-pickle-${userId}-${deviceId}`, deviceKeysUploaded: false, createdTs };
}
function olmRec(senderKey: string, sessionId: string, lastUsedTs = 2_000): OlmSessionRecord {
  return { senderKey, sessionId, pickle: `olm-pickle-${sessionId}`, createdTs: 1_500, lastUsedTs };
}
function inboundRec(roomId: string, senderKey: string, sessionId: string, forwardingChain: string[] = []): InboundGroupSessionRecord {
  return {
    roomId,
    senderKey,
    sessionId,
    pickle: `ig-pickle-${sessionId}`,
    claimedEd25519: `ed-${senderKey}`,
    forwardingChain,
    firstKnownIndex: 0,
    source: forwardingChain.length ? "forwarded" : "room_key",
    createdTs: 3_000,
  };
}
function outboundRec(roomId: string, sessionId: string): OutboundGroupSessionRecord {
  return {
    roomId,
    sessionId,
    pickle: `og-pickle-${sessionId}`,
    createdTs: 4_000,
    messageCount: 3,
    rotationPeriodMs: 604_800_000,
    rotationPeriodMsgs: 100,
    sharedWith: [
      { userId: BOB, deviceId: "BOBDEV1", curve25519: "bobcurve1", state: "shared" },
      { userId: BOB, deviceId: "BOBDEV2", curve25519: "bobcurve2", state: "withheld", withheldCode: "m.blacklisted" },
      { userId: "@carol:example.org", deviceId: "CAROLDEV", curve25519: "carolcurve", state: "pending" },
    ],
  };
}
function deviceRec(userId: string, deviceId: string, curve25519: string, displayName?: string): DeviceRecord {
  return {
    userId,
    deviceId,
    ed25519: `ed-${deviceId}`,
    curve25519,
    algorithms: ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
    ...(displayName !== undefined ? { displayName } : {}),
    verified: false,
    blacklisted: false,
    ignored: false,
    deleted: false,
    keysJson: JSON.stringify({ user_id: userId, device_id: deviceId }),
    firstSeenTs: 5_000,
  };
}
function roomRec(roomId: string, encrypted = true): RoomRecord {
  return {
    roomId,
    encryption: encrypted ? { algorithm: "m.megolm.v1.aes-sha2", rotation_period_ms: 604_800_000, rotation_period_msgs: 100 } : null,
    historyVisibility: encrypted ? "shared" : null,
  };
}
function replayRec(senderKey: string, sessionId: string, messageIndex: number, eventId: string): ReplayRecord {
  return { senderKey, sessionId, messageIndex, eventId, originServerTs: 6_000 + messageIndex };
}
function pendingRec(roomId: string, sessionId: string, eventId: string, receivedTs = 7_000): PendingEventRecord {
  return { roomId, sessionId, eventId, eventJson: JSON.stringify({ event_id: eventId, room_id: roomId }), receivedTs };
}

/** One record of every kind, distinct per `tag`. */
function fullBatch(tag: string): Required<Omit<StoreChanges, "account" | "deletedOutboundGroupSessions" | "untrackedUsers" | "deletedPendingEvents">> {
  const room = `!room-${tag}:example.org`;
  return {
    olmSessions: [olmRec(`curve-${tag}`, `olm-${tag}`)],
    inboundGroupSessions: [
      {
        ...inboundRec(room, `curve-${tag}`, `ig-${tag}`, [`fwd2-${tag}`, `fwd1-${tag}`, `fwd3-${tag}`]),
        senderData: { kind: "forwarded", userId: ALICE, deviceId: `FWD-${tag}`, curve25519: `fwd3-${tag}` },
      },
    ],
    outboundGroupSessions: [{ ...outboundRec(room, `og-${tag}`), inUseBy: `lifetime-${tag}` }],
    devices: [deviceRec(BOB, `DEV-${tag}`, `devcurve-${tag}`, `Phone ${tag}`)],
    trackedUsers: [{ userId: `@tracked-${tag}:example.org`, dirty: true }],
    rooms: [roomRec(room)],
    roomMembers: [{ roomId: room, userId: BOB, membership: "join" }],
    replayRecords: [replayRec(`curve-${tag}`, `ig-${tag}`, 4, `$ev-replay-${tag}`)],
    pendingEvents: [pendingRec(room, `ig-missing-${tag}`, `$ev-pending-${tag}`)],
    toDeviceDigests: [`digest-${tag}`],
    values: { shared_key: `value-${tag}`, [`only-${tag}`]: "1" },
    syncToken: `s-${tag}`,
  };
}

/** Every record of `fullBatch(tag)` is readable and the account holds nothing else. */
function assertFull(s: CryptoStore, tag: string): void {
  const b = fullBatch(tag);
  const ig = b.inboundGroupSessions[0]!;
  const og = b.outboundGroupSessions[0]!;
  const dev = b.devices[0]!;
  const room = b.rooms[0]!;
  const rep = b.replayRecords[0]!;
  const pend = b.pendingEvents[0]!;
  assert.deepEqual(s.getOlmSessions(`curve-${tag}`), b.olmSessions);
  assert.deepEqual(s.getInboundGroupSession(ig.roomId, ig.senderKey, ig.sessionId), ig);
  assert.equal(s.countInboundGroupSessions(), 1);
  assert.deepEqual(s.listInboundGroupSessions(10), [ig]);
  assert.deepEqual(s.getOutboundGroupSession(og.roomId), og);
  assert.deepEqual(s.getUserDevices(BOB), [dev]);
  assert.deepEqual(s.getDevice(BOB, dev.deviceId), dev);
  assert.deepEqual(s.getDeviceByCurve25519(dev.curve25519), dev);
  assert.deepEqual(s.getTrackedUsers(), b.trackedUsers);
  assert.deepEqual(s.getRoom(room.roomId), room);
  assert.deepEqual(s.getRoomMembers(room.roomId), b.roomMembers);
  assert.deepEqual(s.getReplayRecord(rep.senderKey, rep.sessionId, rep.messageIndex), rep);
  assert.deepEqual(s.getPendingEvents(pend.roomId, pend.sessionId), [pend]);
  assert.equal(s.countPendingEvents(), 1);
  assert.equal(s.hasToDeviceDigest(`digest-${tag}`), true);
  assert.equal(s.getValue("shared_key"), `value-${tag}`);
  assert.equal(s.getValue(`only-${tag}`), "1");
  assert.equal(s.getSyncToken(), `s-${tag}`);
}

/** None of the records of `fullBatch(tag)` is readable. */
function assertAbsent(s: CryptoStore, tag: string): void {
  const b = fullBatch(tag);
  const ig = b.inboundGroupSessions[0]!;
  const dev = b.devices[0]!;
  const rep = b.replayRecords[0]!;
  const pend = b.pendingEvents[0]!;
  assert.deepEqual(s.getOlmSessions(`curve-${tag}`), []);
  assert.equal(s.getInboundGroupSession(ig.roomId, ig.senderKey, ig.sessionId), null);
  assert.equal(s.getOutboundGroupSession(ig.roomId), null);
  assert.equal(s.getDevice(BOB, dev.deviceId), null);
  assert.equal(s.getDeviceByCurve25519(dev.curve25519), null);
  assert.equal(s.getRoom(ig.roomId), null);
  assert.deepEqual(s.getRoomMembers(ig.roomId), []);
  assert.equal(s.getReplayRecord(rep.senderKey, rep.sessionId, rep.messageIndex), null);
  assert.deepEqual(s.getPendingEvents(pend.roomId, pend.sessionId), []);
  assert.equal(s.hasToDeviceDigest(`digest-${tag}`), false);
  assert.equal(s.getValue(`only-${tag}`), null);
  assert.ok(!s.getTrackedUsers().some((u) => u.userId === b.trackedUsers[0]!.userId));
}

/** The selected account holds nothing. */
function assertEmpty(s: CryptoStore): void {
  assert.equal(s.countInboundGroupSessions(), 0);
  assert.deepEqual(s.listInboundGroupSessions(10), []);
  assert.equal(s.countInboundGroupSessionsToBackUp("1"), 0);
  assert.deepEqual(s.listInboundGroupSessionsToBackUp("1", 10), []);
  assert.equal(s.countPendingEvents(), 0);
  assert.deepEqual(s.getTrackedUsers(), []);
  assert.equal(s.getSyncToken(), null);
  assert.equal(s.getValue("shared_key"), null);
}

const sortBySession = <T extends { sessionId: string }>(xs: T[]): T[] => [...xs].sort((a, b) => (a.sessionId < b.sessionId ? -1 : a.sessionId > b.sessionId ? 1 : 0));
const tupleCmp = (a: InboundGroupSessionRecord, b: InboundGroupSessionRecord): number => {
  for (const k of ["roomId", "senderKey", "sessionId"] as const) {
    if (a[k] < b[k]) return -1;
    if (a[k] > b[k]) return 1;
  }
  return 0;
};

// ---------------------------------------------------------------------------------------------
// Suite
// ---------------------------------------------------------------------------------------------

/** The store of the running test, with reopen support. */
interface Harness {
  /** The current (open) store; replaced by {@link Harness.reopen}. */
  s: CryptoStore;
  /** Close the current store and open the same storage again. */
  reopen(): Promise<CryptoStore>;
}

/**
 * Register `node:test` cases (`describe`/`it`) that check a {@link CryptoStore} implementation
 * against the contract: accounts (create, select, list, `getStoredDeviceId`, delete with
 * cascade), isolation of several accounts in one store, every record kind and its lookups,
 * inbound-session pagination, the order of deletions and upserts inside one batch, atomicity
 * of `saveChanges`, deep copies of records, and persistence across reopen.
 *
 * Besides the interface's documentation, the suite checks these behaviours of the built-in
 * stores: account-scoped reads before `useAccount` throw a `StoreError` (code `M_SDK_STORE`);
 * a batch writing records for an account that does not exist yet (no `account` in the batch) is
 * rejected; `untrackedUsers` win over `trackedUsers` and `deletedPendingEvents` over
 * `pendingEvents` in the same batch; a replay record is never overwritten (first sighting wins);
 * optional fields left out (`displayName`, `withheldCode`, `senderData`, `backedUpVersion`) come
 * back absent, not `undefined`; every kind of `senderData` round-trips, and an upsert without it
 * removes it; a session is listed as not backed up in a version until a batch marks it in it.
 *
 * @param name - Label of the top-level `describe`.
 * @param makeStore - Called once per test: a fresh, empty, **unopened** store, plus optional
 *   `reopen` (same storage, new store object; the suite closes the old one first and opens the
 *   new one) and `cleanup` (called after the test, once the store is closed).
 * @param options - See {@link CryptoStoreConformanceOptions}.
 */
export function runCryptoStoreConformanceTests(
  name: string,
  makeStore: () => Promise<CryptoStoreUnderTest>,
  options: CryptoStoreConformanceOptions = {},
): void {
  const cursorOf = options.cursorOf ?? ((r: InboundGroupSessionRecord) => `${r.roomId}|${r.senderKey}|${r.sessionId}`);
  let canReopen: boolean | undefined;

  async function withStore(fn: (h: Harness) => Promise<void>): Promise<void> {
    const made = await makeStore();
    canReopen = made.reopen !== undefined;
    const h: Harness = {
      s: made.store,
      async reopen() {
        if (!made.reopen) throw new Error("reopen not supported");
        await h.s.close();
        h.s = await made.reopen();
        await h.s.open();
        return h.s;
      },
    };
    try {
      await h.s.open();
      await fn(h);
    } finally {
      try {
        await h.s.close();
      } finally {
        await made.cleanup?.();
      }
    }
  }
  const test = (title: string, fn: (h: Harness) => Promise<void>) => it(title, () => withStore(fn));
  /** Select (creating if needed) an account and return the store. */
  async function createAccount(s: CryptoStore, userId = ALICE, deviceId = "ALICEDEV", createdTs = 1_000): Promise<AccountRecord> {
    const existing = await s.useAccount(userId, deviceId);
    assert.equal(existing, null);
    const acc = accountRec(userId, deviceId, createdTs);
    await s.saveChanges({ account: acc });
    return acc;
  }

  describe(`CryptoStore conformance: ${name}`, () => {
    describe("accounts", () => {
      test("account-scoped reads before useAccount throw StoreError", async ({ s }) => {
        const reads: [string, () => unknown][] = [
          ["getOlmSessions", () => s.getOlmSessions("k")],
          ["getInboundGroupSession", () => s.getInboundGroupSession("!r:x", "k", "s")],
          ["countInboundGroupSessions", () => s.countInboundGroupSessions()],
          ["listInboundGroupSessions", () => s.listInboundGroupSessions(10)],
          ["countInboundGroupSessionsToBackUp", () => s.countInboundGroupSessionsToBackUp("1")],
          ["listInboundGroupSessionsToBackUp", () => s.listInboundGroupSessionsToBackUp("1", 10)],
          ["getOutboundGroupSession", () => s.getOutboundGroupSession("!r:x")],
          ["getUserDevices", () => s.getUserDevices(BOB)],
          ["getDevice", () => s.getDevice(BOB, "D")],
          ["getDeviceByCurve25519", () => s.getDeviceByCurve25519("c")],
          ["getTrackedUsers", () => s.getTrackedUsers()],
          ["getRoom", () => s.getRoom("!r:x")],
          ["getRoomMembers", () => s.getRoomMembers("!r:x")],
          ["getReplayRecord", () => s.getReplayRecord("k", "s", 0)],
          ["getPendingEvents", () => s.getPendingEvents("!r:x", "s")],
          ["countPendingEvents", () => s.countPendingEvents()],
          ["hasToDeviceDigest", () => s.hasToDeviceDigest("d")],
          ["getSyncToken", () => s.getSyncToken()],
          ["getValue", () => s.getValue("k")],
        ];
        for (const [what, read] of reads) assert.throws(read, isStoreError, what);
        // Store-wide reads need no account.
        assert.deepEqual(s.listAccounts(), []);
        assert.equal(s.getStoredDeviceId(ALICE), null);
      });

      test("useAccount returns null for an unknown account, whose reads are empty", async ({ s }) => {
        assert.equal(await s.useAccount(ALICE, "ALICEDEV"), null);
        assertEmpty(s);
        assertAbsent(s, "a");
        assert.deepEqual(s.listAccounts(), []);
      });

      test("the first batch carrying `account` creates it; useAccount returns it", async ({ s }) => {
        assert.equal(await s.useAccount(ALICE, "ALICEDEV"), null);
        const acc = accountRec();
        await s.saveChanges({ account: acc, ...fullBatch("a") });
        assertFull(s, "a");
        assert.deepEqual(await s.useAccount(ALICE, "ALICEDEV"), acc);
        assert.deepEqual(s.listAccounts(), [{ userId: ALICE, deviceId: "ALICEDEV", createdTs: acc.createdTs }]);
        assert.equal(s.getStoredDeviceId(ALICE), "ALICEDEV");
        assert.equal(s.getStoredDeviceId(BOB), null);
      });

      test("account upsert updates the record", async ({ s }) => {
        const acc = await createAccount(s);
        const updated = { ...acc, pickle: "new-account-pickle", deviceKeysUploaded: true };
        await s.saveChanges({ account: updated });
        assert.deepEqual(await s.useAccount(ALICE, "ALICEDEV"), updated);
        assert.equal(s.listAccounts().length, 1);
      });

      test("a batch for an account that does not exist yet is rejected", async ({ s }) => {
        assert.equal(await s.useAccount(ALICE, "ALICEDEV"), null);
        await assert.rejects(async () => s.saveChanges({ syncToken: "s1", values: { k: "v" } }), isStoreError);
        assert.deepEqual(s.listAccounts(), []);
        assert.equal(s.getSyncToken(), null);
      });

      test("a batch carrying another account than the selected one is rejected", async ({ s }) => {
        await createAccount(s);
        await assert.rejects(async () => s.saveChanges({ account: accountRec(ALICE, "OTHERDEV") }), isStoreError);
        assert.equal(s.listAccounts().length, 1);
      });

      test("listAccounts lists all; getStoredDeviceId picks the most recently created", async ({ s }) => {
        await createAccount(s, ALICE, "OLD", 1_000);
        await createAccount(s, ALICE, "NEW", 3_000);
        await createAccount(s, ALICE, "MID", 2_000);
        await createAccount(s, BOB, "BOBDEV", 5_000);
        const list = s.listAccounts();
        assert.equal(list.length, 4);
        const key = (a: { userId: string; deviceId: string }) => `${a.userId}/${a.deviceId}`;
        assert.deepEqual(list.map(key).sort(), [`${ALICE}/MID`, `${ALICE}/NEW`, `${ALICE}/OLD`, `${BOB}/BOBDEV`]);
        assert.equal(list.find((a) => a.deviceId === "MID")?.createdTs, 2_000);
        assert.equal(s.getStoredDeviceId(ALICE), "NEW");
        assert.equal(s.getStoredDeviceId(BOB), "BOBDEV");
        assert.equal(s.getStoredDeviceId("@nobody:example.org"), null);
      });

      test("deleteAccount removes the account and everything it owns, and nothing else", async ({ s }) => {
        await createAccount(s, ALICE, "A1", 1_000);
        await s.saveChanges(fullBatch("a"));
        await createAccount(s, ALICE, "A2", 2_000);
        await s.saveChanges(fullBatch("b"));
        await s.deleteAccount(ALICE, "A2");
        assert.deepEqual(
          s.listAccounts().map((a) => a.deviceId),
          ["A1"],
        );
        assert.equal(s.getStoredDeviceId(ALICE), "A1");
        // The deleted account was selected: its reads are now empty.
        assertEmpty(s);
        assert.equal(await s.useAccount(ALICE, "A2"), null);
        assertEmpty(s);
        assertAbsent(s, "b");
        // Recreating it starts from nothing.
        await s.saveChanges({ account: accountRec(ALICE, "A2", 9_000) });
        assertEmpty(s);
        assertAbsent(s, "b");
        // The other account is untouched.
        assert.notEqual(await s.useAccount(ALICE, "A1"), null);
        assertFull(s, "a");
        await s.deleteAccount(ALICE, "nonexistent");
        assert.equal(s.listAccounts().length, 2);
      });
    });

    describe("multi-account isolation", () => {
      test("two devices of one user and two users keep separate data", async ({ s }) => {
        const accounts: [string, string, string][] = [
          [ALICE, "DEV1", "a"],
          [ALICE, "DEV2", "b"],
          [BOB, "DEV1", "c"],
        ];
        for (const [u, d, tag] of accounts) {
          await createAccount(s, u, d);
          await s.saveChanges(fullBatch(tag));
        }
        for (const [u, d, tag] of accounts) {
          assert.notEqual(await s.useAccount(u, d), null);
          assertFull(s, tag);
          for (const [, , other] of accounts) if (other !== tag) assertAbsent(s, other);
        }
        // Same keys in two accounts do not collide.
        await s.useAccount(ALICE, "DEV1");
        await s.saveChanges({ values: { shared_key: "changed" }, syncToken: "s-new", olmSessions: [olmRec("curve-b", "olm-b", 99)] });
        await s.useAccount(ALICE, "DEV2");
        assertFull(s, "b");
        await s.useAccount(ALICE, "DEV1");
        assert.equal(s.getValue("shared_key"), "changed");
        assert.equal(s.getSyncToken(), "s-new");
        assert.deepEqual(s.getOlmSessions("curve-b"), [olmRec("curve-b", "olm-b", 99)]);
      });
    });

    describe("olm sessions", () => {
      test("saved, listed by sender key and updated in place", async ({ s }) => {
        await createAccount(s);
        const s1 = olmRec("peer1", "sA", 10);
        const s2 = olmRec("peer1", "sB", 20);
        const s3 = olmRec("peer2", "sC", 30);
        await s.saveChanges({ olmSessions: [s1, s2, s3] });
        assert.deepEqual(sortBySession(s.getOlmSessions("peer1")), [s1, s2]);
        assert.deepEqual(s.getOlmSessions("peer2"), [s3]);
        assert.deepEqual(s.getOlmSessions("peer3"), []);
        const s1b = { ...s1, pickle: "advanced-ratchet", lastUsedTs: 50 };
        await s.saveChanges({ olmSessions: [s1b] });
        assert.deepEqual(sortBySession(s.getOlmSessions("peer1")), [s1b, s2]);
      });
    });

    describe("inbound group sessions", () => {
      test("get, upsert, count; the forwarding chain keeps its order", async ({ s }) => {
        await createAccount(s);
        const chain = ["zzz-last-alphabetically", "aaa", "mmm", "aaa"];
        const r1 = inboundRec("!r1:x", "ck1", "sess1", chain);
        const r2 = inboundRec("!r1:x", "ck1", "sess2");
        const r3 = inboundRec("!r2:x", "ck1", "sess1");
        await s.saveChanges({ inboundGroupSessions: [r1, r2, r3] });
        assert.deepEqual(s.getInboundGroupSession("!r1:x", "ck1", "sess1"), r1);
        assert.deepEqual(s.getInboundGroupSession("!r1:x", "ck1", "sess1")?.forwardingChain, chain);
        assert.deepEqual(s.getInboundGroupSession("!r2:x", "ck1", "sess1"), r3);
        assert.equal(s.getInboundGroupSession("!r1:x", "ck2", "sess1"), null);
        assert.equal(s.getInboundGroupSession("!r3:x", "ck1", "sess1"), null);
        assert.equal(s.countInboundGroupSessions(), 3);
        const better: InboundGroupSessionRecord = { ...r1, pickle: "earlier-index", firstKnownIndex: 0, forwardingChain: [], source: "room_key" };
        await s.saveChanges({ inboundGroupSessions: [better] });
        assert.deepEqual(s.getInboundGroupSession("!r1:x", "ck1", "sess1"), better);
        assert.equal(s.countInboundGroupSessions(), 3);
        const own: InboundGroupSessionRecord = { ...inboundRec("!r3:x", "ck9", "s9"), source: "own", firstKnownIndex: 7 };
        const imported: InboundGroupSessionRecord = { ...inboundRec("!r3:x", "ck9", "s10", ["f"]), source: "imported" };
        await s.saveChanges({ inboundGroupSessions: [own, imported] });
        assert.deepEqual(s.getInboundGroupSession("!r3:x", "ck9", "s9"), own);
        assert.deepEqual(s.getInboundGroupSession("!r3:x", "ck9", "s10"), imported);
      });

      test("listInboundGroupSessions pages through every session once, in cursor order", async ({ s }) => {
        await createAccount(s);
        const all: InboundGroupSessionRecord[] = [];
        for (const room of ["!b:x", "!a:x", "!a:x|y", "!a:x2"]) {
          for (const ck of ["k2", "k1"]) for (const sid of ["s3", "s1", "s2"]) all.push(inboundRec(room, ck, sid));
        }
        await s.saveChanges({ inboundGroupSessions: all });
        assert.equal(s.countInboundGroupSessions(), all.length);
        const seen: InboundGroupSessionRecord[] = [];
        let after: string | undefined;
        let pages = 0;
        for (;;) {
          const page = after === undefined ? s.listInboundGroupSessions(5) : s.listInboundGroupSessions(5, after);
          assert.ok(page.length <= 5);
          if (!page.length) break;
          seen.push(...page);
          after = cursorOf(page[page.length - 1]!);
          pages++;
          assert.ok(pages < 100, "pagination does not end");
        }
        assert.equal(pages, Math.ceil(all.length / 5));
        assert.deepEqual(seen, [...all].sort(tupleCmp));
        assert.deepEqual(s.listInboundGroupSessions(1000), [...all].sort(tupleCmp));
      });

      test("sessions added between pages: later ones are found, none repeats", async ({ s }) => {
        await createAccount(s);
        const first = [inboundRec("!a:x", "k", "s1"), inboundRec("!c:x", "k", "s1"), inboundRec("!e:x", "k", "s1")];
        await s.saveChanges({ inboundGroupSessions: first });
        const p1 = s.listInboundGroupSessions(2);
        assert.deepEqual(p1, first.slice(0, 2));
        const before = inboundRec("!b:x", "k", "s1");
        const later = inboundRec("!d:x", "k", "s1");
        await s.saveChanges({ inboundGroupSessions: [before, later] });
        const p2 = s.listInboundGroupSessions(10, cursorOf(p1[1]!));
        assert.deepEqual(p2, [later, first[2]!]);
        assert.deepEqual(s.listInboundGroupSessions(10, cursorOf(first[2]!)), []);
      });

      test("senderData of every kind round-trips; a session without it comes back without it", async (h) => {
        await createAccount(h.s);
        const kinds: SenderData[] = [
          { kind: "own" },
          { kind: "olm", userId: BOB, deviceId: "BOBDEV1", curve25519: "ck-olm", ed25519: "ed-olm" },
          { kind: "olm", userId: BOB, deviceId: null, curve25519: "ck-olm2", ed25519: "ed-olm2" },
          { kind: "forwarded", userId: ALICE, deviceId: "ALICEDEV2", curve25519: "ck-fwd" },
          { kind: "forwarded", userId: ALICE, deviceId: null, curve25519: "ck-fwd2" },
          { kind: "imported" },
          { kind: "backup", version: "7" },
        ];
        const withData = kinds.map((senderData, i): InboundGroupSessionRecord => ({ ...inboundRec("!sd:x", "ck", `sd${i}`), senderData }));
        const without = inboundRec("!sd:x", "ck", "none");
        await h.s.saveChanges({ inboundGroupSessions: [...withData, without] });
        const check = (s: CryptoStore): void => {
          for (const r of withData) assert.deepEqual(s.getInboundGroupSession(r.roomId, r.senderKey, r.sessionId), r, r.senderData?.kind);
          const got = s.getInboundGroupSession(without.roomId, without.senderKey, without.sessionId);
          assert.deepEqual(got, without);
          assert.equal("senderData" in got!, false, "an absent senderData stays absent");
          assert.deepEqual(s.listInboundGroupSessions(100), [...withData, without].sort(tupleCmp));
        };
        check(h.s);
        // An upsert replaces the whole record: without senderData it is gone, with it it is set.
        const { senderData: _dropped, ...cleared } = withData[1]!;
        const added: InboundGroupSessionRecord = { ...without, senderData: { kind: "backup", version: "8" } };
        await h.s.saveChanges({ inboundGroupSessions: [cleared, added] });
        assert.equal("senderData" in h.s.getInboundGroupSession("!sd:x", "ck", "sd1")!, false);
        assert.deepEqual(h.s.getInboundGroupSession("!sd:x", "ck", "none"), added);
        await h.s.saveChanges({ inboundGroupSessions: [withData[1]!, without] });
        check(h.s);
        if (!canReopen) return;
        const s = await h.reopen();
        await s.useAccount(ALICE, "ALICEDEV");
        check(s);
      });

      test("sessions not backed up in a version are listed until marked in it; a rewrite without the mark lists them again", async (h) => {
        await createAccount(h.s);
        const recs = [inboundRec("!b1:x", "k", "s1"), inboundRec("!b2:x", "k", "s2"), inboundRec("!b3:x", "k", "s3")];
        await h.s.saveChanges({ inboundGroupSessions: recs });
        assert.deepEqual(h.s.listInboundGroupSessionsToBackUp("1", 10), recs);
        assert.deepEqual(h.s.listInboundGroupSessionsToBackUp("1", 2), recs.slice(0, 2));
        assert.deepEqual(h.s.listInboundGroupSessionsToBackUp("1", 0), []);
        assert.equal(h.s.countInboundGroupSessionsToBackUp("1"), 3);
        const marked = recs.slice(0, 2).map((r) => ({ ...r, backedUpVersion: "1" }));
        await h.s.saveChanges({ inboundGroupSessions: marked });
        const check = (s: CryptoStore): void => {
          assert.deepEqual(s.listInboundGroupSessionsToBackUp("1", 10), [recs[2]!]);
          assert.equal(s.countInboundGroupSessionsToBackUp("1"), 1);
          // Another version: none of them is in it.
          assert.deepEqual(s.listInboundGroupSessionsToBackUp("2", 10), [...marked, recs[2]!]);
          assert.deepEqual(s.getInboundGroupSession("!b1:x", "k", "s1"), marked[0]);
          assert.equal("backedUpVersion" in s.getInboundGroupSession("!b3:x", "k", "s3")!, false, "an absent backedUpVersion stays absent");
        };
        check(h.s);
        if (canReopen) {
          const s = await h.reopen();
          await s.useAccount(ALICE, "ALICEDEV");
          check(s);
        }
        // A better copy written without the mark must be uploaded again.
        await h.s.saveChanges({ inboundGroupSessions: [recs[0]!] });
        assert.deepEqual(h.s.listInboundGroupSessionsToBackUp("1", 10), [recs[0]!, recs[2]!]);
      });
    });

    describe("outbound group sessions", () => {
      test("saved with sharedWith, updated, deleted", async ({ s }) => {
        await createAccount(s);
        const og = outboundRec("!r:x", "out1");
        await s.saveChanges({ outboundGroupSessions: [og] });
        assert.deepEqual(s.getOutboundGroupSession("!r:x"), og);
        assert.equal(s.getOutboundGroupSession("!other:x"), null);
        const withoutCode = s.getOutboundGroupSession("!r:x")!.sharedWith[0]!;
        assert.equal("withheldCode" in withoutCode, false, "an absent withheldCode stays absent");
        const updated: OutboundGroupSessionRecord = {
          ...og,
          messageCount: 4,
          pickle: "ratcheted",
          sharedWith: [...og.sharedWith, { userId: "@dave:x", deviceId: "D", curve25519: "dc", state: "pending" }],
        };
        await s.saveChanges({ outboundGroupSessions: [updated] });
        assert.deepEqual(s.getOutboundGroupSession("!r:x"), updated);
        await s.saveChanges({ deletedOutboundGroupSessions: ["!r:x", "!never:x"] });
        assert.equal(s.getOutboundGroupSession("!r:x"), null);
      });

      test("keeps the in-use mark (inUseBy) while it is set, and drops it when the record is written without it", async ({ s }) => {
        // The engine's guarantee against reusing a Megolm index after a crash rests on this field.
        await createAccount(s);
        const og = outboundRec("!r:x", "out1");
        await s.saveChanges({ outboundGroupSessions: [{ ...og, inUseBy: "lifetime-1" }] });
        assert.deepEqual(s.getOutboundGroupSession("!r:x"), { ...og, inUseBy: "lifetime-1" });
        await s.saveChanges({ outboundGroupSessions: [{ ...og, messageCount: 9, pickle: "closed" }] });
        const after = s.getOutboundGroupSession("!r:x")!;
        assert.equal("inUseBy" in after, false, "a mark written away must come back absent");
        assert.deepEqual(after, { ...og, messageCount: 9, pickle: "closed" });
      });

      test("deletion is applied before the upsert of the same batch (rotation)", async ({ s }) => {
        await createAccount(s);
        await s.saveChanges({ outboundGroupSessions: [outboundRec("!r:x", "old"), outboundRec("!r2:x", "keep")] });
        const fresh: OutboundGroupSessionRecord = { ...outboundRec("!r:x", "new"), messageCount: 0, sharedWith: [] };
        await s.saveChanges({ outboundGroupSessions: [fresh], deletedOutboundGroupSessions: ["!r:x"] });
        assert.deepEqual(s.getOutboundGroupSession("!r:x"), fresh);
        assert.deepEqual(s.getOutboundGroupSession("!r2:x"), outboundRec("!r2:x", "keep"));
      });
    });

    describe("devices", () => {
      test("saved, listed per user, looked up by ID and by curve25519 key, flags updated", async ({ s }) => {
        await createAccount(s);
        const d1 = deviceRec(BOB, "B1", "curveB1", "Bob's phone");
        const d2 = deviceRec(BOB, "B2", "curveB2");
        const d3 = deviceRec("@carol:x", "C1", "curveC1");
        await s.saveChanges({ devices: [d2, d1, d3] });
        const bobs = [...s.getUserDevices(BOB)].sort((a, b) => (a.deviceId < b.deviceId ? -1 : 1));
        assert.deepEqual(bobs, [d1, d2]);
        assert.equal("displayName" in s.getDevice(BOB, "B2")!, false, "an absent displayName stays absent");
        assert.deepEqual(s.getDevice(BOB, "B1"), d1);
        assert.equal(s.getDevice(BOB, "C1"), null);
        assert.deepEqual(s.getUserDevices("@nobody:x"), []);
        assert.deepEqual(s.getDeviceByCurve25519("curveC1"), d3);
        assert.equal(s.getDeviceByCurve25519("unknown"), null);
        const flagged: DeviceRecord = { ...d1, verified: true, blacklisted: true, ignored: true, deleted: true, displayName: "renamed" };
        await s.saveChanges({ devices: [flagged] });
        assert.deepEqual(s.getDevice(BOB, "B1"), flagged);
        const { displayName: _dropped, ...unnamed } = flagged;
        await s.saveChanges({ devices: [unnamed] });
        assert.deepEqual(s.getDevice(BOB, "B1"), unnamed);
        // A changed curve key is found under the new key only.
        const rekeyed = { ...d2, curve25519: "curveB2new" };
        await s.saveChanges({ devices: [rekeyed] });
        assert.deepEqual(s.getDeviceByCurve25519("curveB2new"), rekeyed);
        assert.equal(s.getDeviceByCurve25519("curveB2"), null);
      });
    });

    describe("tracked users", () => {
      test("tracked, marked clean, untracked (untracking wins within a batch)", async ({ s }) => {
        await createAccount(s);
        const byUser = (xs: TrackedUserRecord[]) => [...xs].sort((a, b) => (a.userId < b.userId ? -1 : 1));
        await s.saveChanges({ trackedUsers: [{ userId: BOB, dirty: true }, { userId: ALICE, dirty: true }] });
        assert.deepEqual(byUser(s.getTrackedUsers()), [
          { userId: ALICE, dirty: true },
          { userId: BOB, dirty: true },
        ]);
        await s.saveChanges({ trackedUsers: [{ userId: BOB, dirty: false }] });
        assert.deepEqual(byUser(s.getTrackedUsers()), [
          { userId: ALICE, dirty: true },
          { userId: BOB, dirty: false },
        ]);
        await s.saveChanges({ untrackedUsers: [ALICE, "@never:x"] });
        assert.deepEqual(s.getTrackedUsers(), [{ userId: BOB, dirty: false }]);
        await s.saveChanges({ trackedUsers: [{ userId: "@carol:x", dirty: true }], untrackedUsers: ["@carol:x"] });
        assert.deepEqual(s.getTrackedUsers(), [{ userId: BOB, dirty: false }]);
      });
    });

    describe("rooms and members", () => {
      test("rooms (encrypted or not) and upserted memberships", async ({ s }) => {
        await createAccount(s);
        const enc = roomRec("!enc:x");
        const plain = roomRec("!plain:x", false);
        await s.saveChanges({ rooms: [enc, plain] });
        assert.deepEqual(s.getRoom("!enc:x"), enc);
        assert.deepEqual(s.getRoom("!plain:x"), plain);
        assert.equal(s.getRoom("!none:x"), null);
        const nowEncrypted: RoomRecord = { ...plain, encryption: { algorithm: "m.megolm.v1.aes-sha2", nested: { a: [1, 2] } }, historyVisibility: "joined" };
        await s.saveChanges({ rooms: [nowEncrypted] });
        assert.deepEqual(s.getRoom("!plain:x"), nowEncrypted);

        const byUser = (xs: RoomMemberRecord[]) => [...xs].sort((a, b) => (a.userId < b.userId ? -1 : 1));
        const m1: RoomMemberRecord = { roomId: "!enc:x", userId: BOB, membership: "invite" };
        const m2: RoomMemberRecord = { roomId: "!enc:x", userId: ALICE, membership: "join" };
        const m3: RoomMemberRecord = { roomId: "!plain:x", userId: BOB, membership: "join" };
        await s.saveChanges({ roomMembers: [m1, m2, m3] });
        assert.deepEqual(byUser(s.getRoomMembers("!enc:x")), [m2, m1]);
        assert.deepEqual(s.getRoomMembers("!plain:x"), [m3]);
        assert.deepEqual(s.getRoomMembers("!none:x"), []);
        const joined = { ...m1, membership: "join" };
        await s.saveChanges({ roomMembers: [joined] });
        assert.deepEqual(byUser(s.getRoomMembers("!enc:x")), [m2, joined]);
      });
    });

    describe("replay records", () => {
      test("looked up by sender key, session and index; the first sighting wins", async ({ s }) => {
        await createAccount(s);
        const r0 = replayRec("ck", "sess", 0, "$e0");
        const r1 = replayRec("ck", "sess", 1, "$e1");
        await s.saveChanges({ replayRecords: [r0, r1] });
        assert.deepEqual(s.getReplayRecord("ck", "sess", 0), r0);
        assert.deepEqual(s.getReplayRecord("ck", "sess", 1), r1);
        assert.equal(s.getReplayRecord("ck", "sess", 2), null);
        assert.equal(s.getReplayRecord("ck", "other", 0), null);
        assert.equal(s.getReplayRecord("ck2", "sess", 0), null);
        await s.saveChanges({ replayRecords: [{ ...r0, eventId: "$replayed", originServerTs: 1 }] });
        assert.deepEqual(s.getReplayRecord("ck", "sess", 0), r0);
      });
    });

    describe("pending events", () => {
      test("added, listed per room and session, counted, deleted", async ({ s }) => {
        await createAccount(s);
        const e1 = pendingRec("!r:x", "sessA", "$e1", 100);
        const e2 = pendingRec("!r:x", "sessA", "$e2", 200);
        const e3 = pendingRec("!r:x", "sessB", "$e3", 300);
        const e4 = pendingRec("!r2:x", "sessA", "$e4", 400);
        await s.saveChanges({ pendingEvents: [e2, e1, e3, e4] });
        const byEvent = (xs: PendingEventRecord[]) => [...xs].sort((a, b) => (a.eventId < b.eventId ? -1 : 1));
        assert.deepEqual(byEvent(s.getPendingEvents("!r:x", "sessA")), [e1, e2]);
        assert.deepEqual(s.getPendingEvents("!r:x", "sessB"), [e3]);
        assert.deepEqual(s.getPendingEvents("!r2:x", "sessA"), [e4]);
        assert.deepEqual(s.getPendingEvents("!r:x", "sessC"), []);
        assert.equal(s.countPendingEvents(), 4);
        await s.saveChanges({ deletedPendingEvents: [{ roomId: "!r:x", eventId: "$e1" }, { roomId: "!r2:x", eventId: "$e2" }] });
        assert.deepEqual(s.getPendingEvents("!r:x", "sessA"), [e2]);
        assert.equal(s.countPendingEvents(), 3);
        // Added and removed in one batch (decrypted within the same call): removal wins.
        const e5 = pendingRec("!r:x", "sessA", "$e5", 500);
        await s.saveChanges({ pendingEvents: [e5], deletedPendingEvents: [{ roomId: "!r:x", eventId: "$e5" }] });
        assert.deepEqual(s.getPendingEvents("!r:x", "sessA"), [e2]);
        assert.equal(s.countPendingEvents(), 3);
      });

      test("listed oldest first, then in the order saved (not by event ID)", async ({ s }) => {
        await createAccount(s);
        const [z, a, m] = [pendingRec("!r:x", "sessA", "$z", 100), pendingRec("!r:x", "sessA", "$a", 100), pendingRec("!r:x", "sessA", "$m", 100)];
        const old = pendingRec("!r:x", "sessA", "$y", 50);
        await s.saveChanges({ pendingEvents: [z, a] });
        await s.saveChanges({ pendingEvents: [m, old] });
        assert.deepEqual(s.getPendingEvents("!r:x", "sessA").map((p) => p.eventId), ["$y", "$z", "$a", "$m"]);
      });
    });

    describe("to-device digests", () => {
      test("recorded digests are found, others are not; re-adding is harmless", async ({ s }) => {
        await createAccount(s);
        assert.equal(s.hasToDeviceDigest("d1"), false);
        await s.saveChanges({ toDeviceDigests: ["d1", "d2"] });
        assert.equal(s.hasToDeviceDigest("d1"), true);
        assert.equal(s.hasToDeviceDigest("d2"), true);
        assert.equal(s.hasToDeviceDigest("d3"), false);
        await s.saveChanges({ toDeviceDigests: ["d1"] });
        assert.equal(s.hasToDeviceDigest("d1"), true);
      });
    });

    describe("values and sync token", () => {
      test("values are set, overwritten and deleted with null", async ({ s }) => {
        await createAccount(s);
        assert.equal(s.getValue("a"), null);
        await s.saveChanges({ values: { a: "1", b: '{"json":true}', empty: "" } });
        assert.equal(s.getValue("a"), "1");
        assert.equal(s.getValue("b"), '{"json":true}');
        assert.equal(s.getValue("empty"), "");
        await s.saveChanges({ values: { a: "2", b: null, never: null } });
        assert.equal(s.getValue("a"), "2");
        assert.equal(s.getValue("b"), null);
        assert.equal(s.getValue("never"), null);
      });

      test("the sync token is null until set, then the latest one", async ({ s }) => {
        await createAccount(s);
        assert.equal(s.getSyncToken(), null);
        await s.saveChanges({ syncToken: "s1" });
        assert.equal(s.getSyncToken(), "s1");
        await s.saveChanges({ syncToken: "s2", values: { x: "y" } });
        assert.equal(s.getSyncToken(), "s2");
        await s.saveChanges({ values: { x: "z" } });
        assert.equal(s.getSyncToken(), "s2");
        // The sync token is not a value.
        assert.equal(s.getValue("syncToken"), null);
        assert.equal(s.getValue("sync_token"), null);
      });
    });

    describe("atomicity", () => {
      const skip = options.skipAtomicity === true;
      const bad = (): DeviceRecord => ({ ...deviceRec(BOB, "BAD", "badcurve"), ed25519: { not: "a string" } as unknown as string });

      it("a batch failing midway applies nothing", { skip }, () =>
        withStore(async ({ s }) => {
          await createAccount(s);
          await s.saveChanges(fullBatch("a"));
          const b = fullBatch("b");
          const failing: StoreChanges = {
            account: { ...accountRec(), pickle: "changed", deviceKeysUploaded: true },
            olmSessions: [...b.olmSessions, { ...olmRec("curve-a", "olm-a"), pickle: "changed" }],
            inboundGroupSessions: b.inboundGroupSessions,
            deletedOutboundGroupSessions: ["!room-a:example.org"],
            outboundGroupSessions: b.outboundGroupSessions,
            devices: [...b.devices, bad(), deviceRec(BOB, "AFTER", "aftercurve")],
            trackedUsers: b.trackedUsers,
            untrackedUsers: ["@tracked-a:example.org"],
            rooms: b.rooms,
            roomMembers: b.roomMembers,
            replayRecords: b.replayRecords,
            pendingEvents: b.pendingEvents,
            deletedPendingEvents: [{ roomId: "!room-a:example.org", eventId: "$ev-pending-a" }],
            toDeviceDigests: b.toDeviceDigests,
            values: { shared_key: "changed", "only-a": null, "only-b": "1" },
            syncToken: "s-b",
          };
          await assert.rejects(async () => s.saveChanges(failing));
          assertFull(s, "a");
          assertAbsent(s, "b");
          assert.equal(s.getDevice(BOB, "AFTER"), null);
          assert.deepEqual(await s.useAccount(ALICE, "ALICEDEV"), accountRec());
          // The store still works after the failure.
          await s.saveChanges({ syncToken: "s-after" });
          assert.equal(s.getSyncToken(), "s-after");
        }),
      );

      it("a failing first batch does not create the account", { skip }, () =>
        withStore(async ({ s }) => {
          assert.equal(await s.useAccount(ALICE, "ALICEDEV"), null);
          await assert.rejects(async () => s.saveChanges({ account: accountRec(), ...fullBatch("a"), devices: [bad()] }));
          assert.deepEqual(s.listAccounts(), []);
          assert.equal(await s.useAccount(ALICE, "ALICEDEV"), null);
          assertEmpty(s);
        }),
      );
    });

    describe("copies", () => {
      test("mutating records passed in or read out does not change the store", async ({ s }) => {
        await createAccount(s);
        const b = fullBatch("a");
        await s.saveChanges(b);
        // Mutate what was passed in.
        b.inboundGroupSessions[0]!.forwardingChain.push("injected");
        (b.inboundGroupSessions[0]!.senderData as { userId: string }).userId = "@evil:x";
        b.outboundGroupSessions[0]!.sharedWith[0]!.state = "pending";
        b.devices[0]!.algorithms.length = 0;
        (b.rooms[0]!.encryption as Record<string, unknown>).algorithm = "evil";
        b.olmSessions[0]!.pickle = "evil";
        assertFull(s, "a");
        // Mutate what was read out.
        const ig = s.getInboundGroupSession("!room-a:example.org", "curve-a", "ig-a")!;
        ig.forwardingChain.reverse();
        ig.pickle = "evil";
        (ig.senderData as { deviceId: string | null }).deviceId = null;
        s.getOutboundGroupSession("!room-a:example.org")!.sharedWith.pop();
        s.getDevice(BOB, "DEV-a")!.verified = true;
        s.getUserDevices(BOB)[0]!.algorithms.push("x");
        (s.getRoom("!room-a:example.org")!.encryption as Record<string, unknown>).algorithm = "evil";
        s.getOlmSessions("curve-a")[0]!.lastUsedTs = 0;
        s.listInboundGroupSessions(1)[0]!.forwardingChain.push("x");
        s.getTrackedUsers()[0]!.dirty = false;
        s.getRoomMembers("!room-a:example.org")[0]!.membership = "ban";
        s.getPendingEvents("!room-a:example.org", "ig-missing-a")[0]!.eventJson = "{}";
        s.getReplayRecord("curve-a", "ig-a", 4)!.eventId = "$x";
        (await s.useAccount(ALICE, "ALICEDEV"))!.pickle = "evil";
        assertFull(s, "a");
        assert.deepEqual(await s.useAccount(ALICE, "ALICEDEV"), accountRec());
      });
    });

    describe("lifecycle and persistence", () => {
      test("close is idempotent", async (h) => {
        await createAccount(h.s);
        await h.s.close();
        await h.s.close();
      });

      it("everything survives close and reopen", (t) =>
        withStore(async (h) => {
          if (!canReopen) {
            t.skip("the factory gives no reopen");
            return;
          }
          await createAccount(h.s, ALICE, "A1", 1_000);
          await h.s.saveChanges(fullBatch("a"));
          await createAccount(h.s, BOB, "B1", 2_000);
          await h.s.saveChanges(fullBatch("b"));
          const updated = { ...accountRec(BOB, "B1", 2_000), deviceKeysUploaded: true };
          await h.s.saveChanges({ account: updated, values: { shared_key: "value-b" } });
          const s = await h.reopen();
          assert.deepEqual(
            s.listAccounts().map((a) => `${a.userId}/${a.deviceId}/${a.createdTs}`).sort(),
            [`${ALICE}/A1/1000`, `${BOB}/B1/2000`],
          );
          assert.equal(s.getStoredDeviceId(ALICE), "A1");
          assert.deepEqual(await s.useAccount(ALICE, "A1"), accountRec(ALICE, "A1", 1_000));
          assertFull(s, "a");
          assert.deepEqual(await s.useAccount(BOB, "B1"), updated);
          assertFull(s, "b");
          // And it is writable after reopening.
          await s.saveChanges({ syncToken: "s-reopened" });
          const s2 = await h.reopen();
          await s2.useAccount(BOB, "B1");
          assert.equal(s2.getSyncToken(), "s-reopened");
        }),
      );
    });
  });
}
