/**
 * Session provenance end to end in the engine: what a room key's origin (bound at receipt) does
 * to the label, or the refusal, of the events decrypted with it. Regression tests for the trust
 * defects "forged own labels", "sender device lookup ignores the user" and "Megolm sender must
 * match the Olm sender".
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { KeyServer, Peer, roomState } from "./helpers.js";
import { OlmPeer, initOlm, type Recipient } from "../support/olmPeer.js";
import type { RoomDecryptResult } from "../../src/protocol/api.js";

const ROOM = "!room:example.org";
type Json = Record<string, unknown>;

function recipient(p: Peer): Recipient {
  return { userId: p.userId, deviceId: p.deviceId, curve25519: p.curve25519, ed25519: p.ed25519 };
}

/** One of `p`'s published one-time keys, taken off the server as /keys/claim would. */
function claimOtk(server: KeyServer, p: Peer): string {
  const pool = server.otks.get(`${p.userId}|${p.deviceId}`)!;
  const [id, obj] = [...pool.entries()][0]!;
  pool.delete(id);
  return obj.key as string;
}

function ok(r: RoomDecryptResult | undefined): RoomDecryptResult & { ok: true } {
  assert.ok(r, "no result");
  assert.equal(r.ok, true, r.ok ? "" : `${r.code}: ${r.message}`);
  return r as RoomDecryptResult & { ok: true };
}

describe("engine: session provenance decides labels", () => {
  it("an imported session that claims our own keys labels its events unauthenticated, never own", async () => {
    await initOlm();
    const server = new KeyServer();
    const bob = await Peer.create(server, "@bob:example.org", "BOBDEV");
    await bob.sync({ rooms: [roomState(ROOM, { [bob.userId]: "join" })] });
    const mallory = new OlmPeer("@mallory:example.org", "MDEV");
    const { sessionId } = mallory.newMegolm("forged");
    // A key file entry that claims to be one of Bob's own sessions.
    const r = await bob.engine.importRoomKeys([
      { algorithm: "m.megolm.v1.aes-sha2", room_id: ROOM, sender_key: bob.curve25519, sender_claimed_keys: { ed25519: bob.ed25519 }, session_id: sessionId, session_key: mallory.exportedSessionKey("forged"), forwarding_curve25519_key_chain: [] },
    ]);
    assert.equal(r.imported, 1);
    const ev = mallory.megolmEvent("forged", ROOM, { msgtype: "m.text", body: "I am Bob" }, "$forged", { sender: bob.userId });
    (ev.content as Json).sender_key = bob.curve25519;
    (ev.content as Json).device_id = bob.deviceId;
    const [d] = await bob.engine.decryptRoomEvents(ROOM, [ev]);
    assert.equal(ok(d).verification, "unauthenticated");
    mallory.free();
  });

  it("another user's device that copies Alice's curve25519 key does not make Alice's room keys refused", async () => {
    await initOlm();
    const server = new KeyServer();
    const alice = await Peer.create(server, "@alice:example.org", "ALICEDEV");
    const bob = await Peer.create(server, "@bob:example.org", "BOBDEV");
    // Mallory publishes a device with Alice's curve25519 key, self-signed with her own ed25519 key.
    const mallory = new OlmPeer("@aaron:example.org", "MDEV");
    server.deviceKeys.set(mallory.userId, new Map([["MDEV", mallory.deviceKeys({ keys: { "curve25519:MDEV": alice.curve25519, "ed25519:MDEV": mallory.ed25519 } })]]));
    // Bob learns Mallory's device first, then Alice's (and her user ID sorts first: no lookup order may pick it).
    await bob.sync({ rooms: [roomState(ROOM, { [bob.userId]: "join", [mallory.userId]: "join" })] });
    await bob.flush();
    const all = { [alice.userId]: "join", [bob.userId]: "join", [mallory.userId]: "join" };
    await bob.sync({ rooms: [roomState(ROOM, all)] });
    await bob.flush();
    assert.equal((await bob.engine.getDevices(mallory.userId)).length, 1, "Bob knows Mallory's copycat device");
    await alice.sync({ rooms: [roomState(ROOM, { [alice.userId]: "join", [bob.userId]: "join" })] });
    await alice.flush();
    const ev = await alice.encrypt(ROOM, "hello", "$e1");
    const res = await bob.sync();
    assert.deepEqual(res.toDeviceFailures, []);
    assert.equal(res.roomKeys.length, 1, "Alice's room key was accepted");
    const d = ok((await bob.engine.decryptRoomEvents(ROOM, [ev]))[0]);
    assert.equal(d.verification, "unverified");
    assert.equal(d.senderDeviceId, "ALICEDEV");
    mallory.free();
  });

  it("a room key sent over Olm by one user does not decrypt events claiming another sender, even from a device we do not know", async () => {
    await initOlm();
    const server = new KeyServer();
    const bob = await Peer.create(server, "@bob:example.org", "BOBDEV");
    await bob.sync({ rooms: [roomState(ROOM, { [bob.userId]: "join", "@alice:example.org": "join", "@mallory:example.org": "join" })] });
    // Mallory's device is never published: Bob cannot know it.
    const mallory = new OlmPeer("@mallory:example.org", "MDEV");
    mallory.openSession(recipient(bob), claimOtk(server, bob));
    mallory.newMegolm("s");
    const res = await bob.sync({ toDevice: [mallory.olmToDevice(recipient(bob), "m.room_key", mallory.roomKeyContent("s", ROOM))] });
    assert.equal(res.roomKeys.length, 1);
    const asAlice = mallory.megolmEvent("s", ROOM, { msgtype: "m.text", body: "I am Alice" }, "$a", { sender: "@alice:example.org" });
    const asMallory = mallory.megolmEvent("s", ROOM, { msgtype: "m.text", body: "I am Mallory" }, "$m");
    const [a, m] = await bob.engine.decryptRoomEvents(ROOM, [asAlice, asMallory]);
    assert.equal(a?.ok, false);
    assert.equal(a?.ok === false && a.code, "sender_mismatch");
    assert.equal(ok(m).verification, "unknown_device");
    mallory.free();
  });
});

describe("engine: withheld notices count only from the session's sender", () => {
  it("a withheld notice from another user neither changes the failure code nor stops our key request; the sender's own notice does", async () => {
    await initOlm();
    const server = new KeyServer();
    const bob = await Peer.create(server, "@bob:example.org", "BOBDEV");
    await bob.sync({ rooms: [roomState(ROOM, { [bob.userId]: "join", "@alice:example.org": "join" })] });
    bob.engine.setKeyRequestsEnabled(true);
    const alice = new OlmPeer("@alice:example.org", "ADEV");
    const { sessionId } = alice.newMegolm("s");
    const notice = (sender: string): Json => ({
      type: "m.room_key.withheld",
      sender,
      content: { algorithm: "m.megolm.v1.aes-sha2", room_id: ROOM, session_id: sessionId, sender_key: alice.curve25519, code: "m.blacklisted", reason: "no" },
    });
    await bob.sync({ toDevice: [notice("@mallory:example.org")] });
    const ev = alice.megolmEvent("s", ROOM, { msgtype: "m.text", body: "hi" }, "$1");
    const [r] = await bob.engine.decryptRoomEvents(ROOM, [ev]);
    assert.equal(r?.ok === false && r.code, "missing_session");
    const requests = (await bob.engine.outgoingRequests()).filter((q) => q.kind === "to_device" && q.eventType === "m.room_key_request");
    assert.equal(requests.length, 1, "the key is still requested");
    // Alice's own notice is believed.
    await bob.sync({ toDevice: [notice(alice.userId)] });
    const [r2] = await bob.engine.decryptRoomEvents(ROOM, [alice.megolmEvent("s", ROOM, { msgtype: "m.text", body: "again" }, "$2")]);
    assert.equal(r2?.ok === false && r2.code, "withheld");
    alice.free();
  });
});
