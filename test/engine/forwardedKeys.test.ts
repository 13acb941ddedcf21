/**
 * Forwarded and imported room keys, end to end in the engine (real libolm): an
 * `m.forwarded_room_key` is accepted only when we asked for it and only from one of our own
 * devices that is verified (locally or by our cross-signing); a forwarded or imported session
 * decrypts only events of the room and sender it claims. Regression tests for issue 13 item 4.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { Peer, ownDevicesWithHistory, requestAndForward, roomState } from "./helpers.js";
import { OlmPeer, type Recipient } from "../support/olmPeer.js";
import { MemoryCryptoStore } from "../../workers/store/memory/MemoryCryptoStore.js";
import type { InboundGroupSessionRecord } from "../../src/protocol/store.js";
import type { RoomDecryptResult, SyncChangesResult } from "../../src/protocol/api.js";

const ROOM = "!room:example.org";
const OTHER_ROOM = "!other:example.org";
type Json = Record<string, unknown>;

function ok(r: RoomDecryptResult | undefined): RoomDecryptResult & { ok: true } {
  assert.ok(r, "no result");
  assert.equal(r.ok, true, r.ok ? "" : `${r.code}: ${r.message}`);
  return r as RoomDecryptResult & { ok: true };
}

function failure(r: RoomDecryptResult | undefined): string {
  assert.ok(r, "no result");
  assert.equal(r.ok, false, "the event must not decrypt");
  return r.ok ? "" : r.code;
}

/** The forwarded key was refused with `code`, and nothing was stored for it. */
function assertRefused(p: Peer, got: SyncChangesResult, code: string): void {
  assert.deepEqual(
    got.toDeviceFailures.map((f) => [f.type, f.code]),
    [["m.forwarded_room_key", code]],
  );
  assert.deepEqual(got.forwardedKeys, []);
  assert.deepEqual(got.roomKeys, []);
  assert.equal(p.engine.exportRoomKeysPage(10).total, 0, "no session stored");
}

function recipient(p: Peer): Recipient {
  return { userId: p.userId, deviceId: p.deviceId, curve25519: p.curve25519, ed25519: p.ed25519 };
}

/** A store that finds inbound sessions by session ID alone (as a careless custom store might). */
class SessionIdOnlyStore extends MemoryCryptoStore {
  override getInboundGroupSession(_roomId: string, _senderKey: string, sessionId: string): InboundGroupSessionRecord | null {
    return this.listInboundGroupSessions(1000).find((r) => r.sessionId === sessionId) ?? null;
  }
}

describe("engine: forwarded keys are accepted only when requested, from our own verified devices", () => {
  it("refuses a requested key forwarded by an own device that is not verified (reason forward_unverified_device, no session stored)", async () => {
    const { a1, a2, ev } = await ownDevicesWithHistory(ROOM);
    const got = await requestAndForward(ROOM, a2, a1, ev);
    assertRefused(a2, got, "forward_unverified_device");
    assert.equal(failure((await a2.engine.decryptRoomEvents(ROOM, [ev]))[0]), "missing_session");
  });

  it("refuses a requested key forwarded by another user's verified device (reason forward_not_own_device)", async () => {
    const { server, a1, a2, bob, ev } = await ownDevicesWithHistory(ROOM);
    // Mallory is in the room, her device is known to A2 and even verified there.
    const mallory = new OlmPeer("@mallory:example.org", "MDEV");
    server.deviceKeys.set(mallory.userId, new Map([["MDEV", mallory.deviceKeys()]]));
    await a2.sync({ rooms: [roomState(ROOM, { [a2.userId]: "join", [bob.userId]: "join", [mallory.userId]: "join" })] });
    await a2.flush();
    await a2.engine.setDeviceFlags(mallory.userId, "MDEV", { verified: true });
    a2.engine.setKeyRequestsEnabled(true);
    await a2.engine.decryptRoomEvents(ROOM, [ev]);
    for (const x of await a2.engine.outgoingRequests()) await a2.send(x);
    // She answers with the real session (a valid key: only her being another user refuses it).
    const held = a1.engine.exportRoomKeysPage(10).keys[0]!;
    const pool = server.otks.get(`${a2.userId}|${a2.deviceId}`)!;
    const [otkId, otk] = [...pool.entries()][0]!;
    pool.delete(otkId);
    mallory.openSession(recipient(a2), otk.key as string);
    const forward = { algorithm: "m.megolm.v1.aes-sha2", room_id: ROOM, sender_key: held.sender_key, session_id: held.session_id, session_key: held.session_key, sender_claimed_ed25519_key: (held.sender_claimed_keys as Json).ed25519, forwarding_curve25519_key_chain: [] };
    const got = await a2.sync({ toDevice: [mallory.olmToDevice(recipient(a2), "m.forwarded_room_key", forward)] });
    assertRefused(a2, got, "forward_not_own_device");
    mallory.free();
  });

  it("refuses a key a verified own device forwards without our request (reason forward_unrequested)", async () => {
    const { a1, a2 } = await ownDevicesWithHistory(ROOM);
    await a2.engine.setDeviceFlags(a1.userId, "A1", { verified: true });
    const held = a1.engine.exportRoomKeysPage(10).keys[0]!;
    const claim = a1.engine.prepareKeyForwarding(["A2"]);
    if (claim) await a1.send(claim);
    const answer = await a1.engine.answerKeyRequests([{ requestId: "never-sent", deviceId: "A2", roomId: ROOM, senderKey: String(held.sender_key), sessionId: String(held.session_id) }]);
    assert.equal(answer.length, 1, "A1 sends the key");
    for (const x of answer) await a1.send(x);
    assertRefused(a2, await a2.sync(), "forward_unrequested");
  });

  it("accepts a requested key from an own device verified locally, and labels its events unauthenticated", async () => {
    const { a1, a2, ev } = await ownDevicesWithHistory(ROOM);
    await a2.engine.setDeviceFlags(a1.userId, "A1", { verified: true });
    const got = await requestAndForward(ROOM, a2, a1, ev);
    assert.deepEqual(got.toDeviceFailures, []);
    assert.equal(got.forwardedKeys.length, 1);
    assert.equal(ok(got.redecrypted[0]?.results[0]).verification, "unauthenticated");
    assert.equal(ok((await a2.engine.decryptRoomEvents(ROOM, [ev]))[0]).verification, "unauthenticated");
  });

  it("accepts a requested key from an own device verified only by our cross-signing (our self-signing key signed it)", async () => {
    const { server, a1, a2, ev } = await ownDevicesWithHistory(ROOM);
    // A1 creates Alice's identity and signs itself; A2 restores the identity from secret storage.
    const boot = await a1.engine.prepareCrossSigning();
    server.uploadCrossSigning(a1.userId, boot.deviceSigningUpload, boot.signatureUpload);
    await a1.engine.commitCrossSigning(boot.masterKey);
    await a2.sync({ deviceLists: { changed: [a1.userId] } });
    await a2.flush();
    await a2.engine.restoreCrossSigning({ ...boot.secretStorage, recoveryKey: boot.recoveryKey });
    const seenA1 = a2.engine.getDevices(a1.userId).find((d) => d.deviceId === "A1");
    assert.deepEqual([seenA1?.verified, seenA1?.crossSigningVerified], [false, true], "A1 is verified by cross-signing only");
    const got = await requestAndForward(ROOM, a2, a1, ev);
    assert.deepEqual(got.toDeviceFailures, []);
    assert.equal(got.forwardedKeys.length, 1);
    assert.equal(ok(got.redecrypted[0]?.results[0]).verification, "unauthenticated");
  });
});

describe("engine: a forwarded or imported session decrypts only events of the room and sender it claims", () => {
  it("a session forwarded for Bob's event refuses an event of the same session whose sender is another user (sender_mismatch), and does not decrypt in another room", async () => {
    const { a1, a2, bob, ev } = await ownDevicesWithHistory(ROOM);
    await a2.engine.setDeviceFlags(a1.userId, "A1", { verified: true });
    assert.equal((await requestAndForward(ROOM, a2, a1, ev)).forwardedKeys.length, 1);
    const next = await bob.encrypt(ROOM, "second", "$next"); // same outbound session, next index
    const [asMallory] = await a2.engine.decryptRoomEvents(ROOM, [{ ...next, sender: "@mallory:example.org" }]);
    assert.equal(failure(asMallory), "sender_mismatch");
    const [elsewhere] = await a2.engine.decryptRoomEvents(OTHER_ROOM, [{ ...next, event_id: "$elsewhere" }]);
    assert.equal(failure(elsewhere), "missing_session");
    assert.equal(ok((await a2.engine.decryptRoomEvents(ROOM, [next]))[0]).verification, "unauthenticated");
  });

  it("an imported session is bound to its room and sender key, even with a store that finds sessions by session ID alone", async () => {
    const server = (await ownDevicesWithHistory(ROOM)).server;
    const store = new SessionIdOnlyStore();
    await store.open();
    const bob = await Peer.create(server, "@bob:example.org", "BOB2", store);
    const mallory = new OlmPeer("@mallory:example.org", "MDEV");
    const { sessionId } = mallory.newMegolm("s");
    const alice = new OlmPeer("@alice:example.org", "ALICE9");
    // A key file entry for ROOM whose messages claim OTHER_ROOM.
    const r = await bob.engine.importRoomKeys([
      { algorithm: "m.megolm.v1.aes-sha2", room_id: ROOM, sender_key: mallory.curve25519, sender_claimed_keys: { ed25519: mallory.ed25519 }, session_id: sessionId, session_key: mallory.exportedSessionKey("s"), forwarding_curve25519_key_chain: [] },
    ]);
    assert.equal(r.imported, 1);
    const inOther = mallory.megolmEvent("s", OTHER_ROOM, { msgtype: "m.text", body: "moved" }, "$o");
    assert.equal(failure((await bob.engine.decryptRoomEvents(OTHER_ROOM, [inOther]))[0]), "room_mismatch");
    const asAlice = mallory.megolmEvent("s", ROOM, { msgtype: "m.text", body: "I am Alice" }, "$a", { sender: alice.userId });
    (asAlice.content as Json).sender_key = alice.curve25519;
    assert.equal(failure((await bob.engine.decryptRoomEvents(ROOM, [asAlice]))[0]), "sender_mismatch");
    assert.equal(ok((await bob.engine.decryptRoomEvents(ROOM, [mallory.megolmEvent("s", ROOM, { msgtype: "m.text", body: "hi" }, "$ok")]))[0]).verification, "unauthenticated");
    mallory.free();
    alice.free();
  });
});
