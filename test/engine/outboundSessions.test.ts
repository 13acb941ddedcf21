/**
 * Megolm outbound sessions (workers/engine/megolm/OutboundSessions.ts), real libolm: rotation by
 * age (`rotation_period_ms` of `m.room.encryption`, measured on the engine's injectable clock),
 * and the guard that refuses to encrypt with a room key that has not reached its recipients.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { pairInRoom, type Peer } from "./helpers.js";
import { InternalError } from "../../src/protocol/errors.js";
import type { RoomDecryptResult } from "../../src/protocol/api.js";

const ROOM = "!room:example.org";
const HOUR = 3600_000;
const WEEK = 7 * 24 * HOUR;
type Json = Record<string, unknown>;

/** Alice (on a clock the test moves) and Bob in an encrypted room with `encryption`. */
async function pair(encryption: Json): Promise<{ alice: Peer; bob: Peer; clock: { t: number } }> {
  const clock = { t: Date.UTC(2026, 0, 1) };
  const { alice, bob } = await pairInRoom(ROOM, { alice: { now: () => clock.t }, encryption });
  return { alice, bob, clock };
}

const sessionOf = (ev: Json): string => (ev.content as Json).session_id as string;

function ok(r: RoomDecryptResult | undefined): RoomDecryptResult & { ok: true } {
  assert.ok(r, "no result");
  assert.equal(r.ok, true, r.ok ? "" : `${r.code}: ${r.message}`);
  return r as RoomDecryptResult & { ok: true };
}

/** The typed error of a broken send sequence (encrypt before the key is shared). */
function isNotShared(e: unknown): boolean {
  assert.ok(e instanceof InternalError, `expected InternalError, got ${String(e)}`);
  assert.equal(e.code, "M_SDK_INTERNAL");
  return true;
}

describe("engine: outbound session rotation by age", () => {
  it("keeps the room key until rotation_period_ms has elapsed since it was created, then shares a new one", async () => {
    const { alice, bob, clock } = await pair({ algorithm: "m.megolm.v1.aes-sha2", rotation_period_ms: HOUR });
    const e1 = await alice.encrypt(ROOM, "first", "$1");
    clock.t += HOUR - 1;
    const e2 = await alice.encrypt(ROOM, "just before", "$2");
    assert.equal(sessionOf(e2), sessionOf(e1), "not rotated 1 ms before the period ends");
    clock.t += 1;
    const e3 = await alice.encrypt(ROOM, "after", "$3");
    assert.notEqual(sessionOf(e3), sessionOf(e1), "rotated once the period elapsed");
    const got = await bob.sync();
    assert.equal(got.roomKeys.length, 2, "Bob received both room keys");
    const results = await bob.engine.decryptRoomEvents(ROOM, [e1, e2, e3]);
    assert.deepEqual(results.map((r) => ok(r).eventId), ["$1", "$2", "$3"]);
  });

  it("rotates after one week when m.room.encryption sets no rotation_period_ms (and never later, whatever it sets)", async () => {
    for (const encryption of [{ algorithm: "m.megolm.v1.aes-sha2" }, { algorithm: "m.megolm.v1.aes-sha2", rotation_period_ms: 52 * WEEK }]) {
      const { alice, clock } = await pair(encryption);
      const e1 = await alice.encrypt(ROOM, "first", "$1");
      clock.t += WEEK - 1;
      assert.equal(sessionOf(await alice.encrypt(ROOM, "same week", "$2")), sessionOf(e1), JSON.stringify(encryption));
      clock.t += 1;
      assert.notEqual(sessionOf(await alice.encrypt(ROOM, "next week", "$3")), sessionOf(e1), JSON.stringify(encryption));
    }
  });
});

describe("engine: no encryption with a room key that has not reached its recipients", () => {
  it("refuses to encrypt in a room with no shared session (typed error), and creates none", async () => {
    const { alice } = await pair({ algorithm: "m.megolm.v1.aes-sha2" });
    await assert.rejects(alice.engine.encryptRoomEvent(ROOM, "m.room.message", { msgtype: "m.text", body: "too early" }), isNotShared);
    assert.equal(alice.store.getOutboundGroupSession(ROOM), null);
  });

  it("refuses to encrypt while the room key's to-device messages have not been sent, and encrypts once they have", async () => {
    const { alice, bob } = await pair({ algorithm: "m.megolm.v1.aes-sha2" });
    for (let i = 0; i < 4; i++) {
      const step = await alice.engine.prepareRoomKeyShare(ROOM, false);
      if (step.ready) break;
      await alice.send(step.request);
    }
    const shares = await alice.engine.shareRoomKey(ROOM, false);
    assert.equal(shares.length, 1, "one m.room_key batch for Bob");
    await assert.rejects(alice.engine.encryptRoomEvent(ROOM, "m.room.message", { msgtype: "m.text", body: "too early" }), isNotShared);
    assert.equal(alice.store.getOutboundGroupSession(ROOM)?.messageCount, 0, "the ratchet did not advance");
    for (const r of shares) await alice.send(r);
    const content = await alice.engine.encryptRoomEvent(ROOM, "m.room.message", { msgtype: "m.text", body: "now" });
    await bob.sync();
    const [d] = await bob.engine.decryptRoomEvents(ROOM, [{ type: "m.room.encrypted", event_id: "$now", sender: alice.userId, origin_server_ts: 1, content }]);
    assert.equal(JSON.parse(ok(d).plaintextJson).content.body, "now");
  });
});

describe("engine: a share round with nothing to share writes nothing", () => {
  it("shareRoomKey after the key reached everyone returns no request and commits no change (no store write, no fsync)", async () => {
    const { alice } = await pair({ algorithm: "m.megolm.v1.aes-sha2" });
    await alice.encrypt(ROOM, "first", "$1");
    const orig = alice.store.saveChanges.bind(alice.store);
    let writes = 0;
    alice.store.saveChanges = (c) => {
      writes++;
      return orig(c);
    };
    assert.deepEqual(await alice.engine.shareRoomKey(ROOM, false), []);
    assert.equal(writes, 0, "the outbound session was rewritten although nothing changed");
  });
});
