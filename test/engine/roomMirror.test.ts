/**
 * The engine keeps room records in memory (`RoomMirror`): a room whose encryption or history
 * visibility changes is seen changed by the next call (in the same sync and the next one), by
 * calls that read the room before the change, and by an engine restarted over the same store.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { KeyServer, Peer } from "./helpers.js";
import type { SyncChangesInput } from "../../src/protocol/api.js";

type Json = Record<string, unknown>;
const MEGOLM = { algorithm: "m.megolm.v1.aes-sha2" };

/** A joined room's state: member events, and the given state events of other types. */
function state(roomId: string, members: Record<string, string>, extra: Json[] = []): SyncChangesInput["rooms"][number] {
  const stateEvents: Json[] = Object.entries(members).map(([u, m]) => ({ type: "m.room.member", state_key: u, content: { membership: m } }));
  return { roomId, membership: "join", stateEvents: [...stateEvents, ...extra] };
}
const encryptionEvent = (): Json => ({ type: "m.room.encryption", state_key: "", content: MEGOLM });

/** The `m.room_key` messages `from` sent to `to` (taken out of `to`'s inbox as sent). */
function roomKeysTo(server: KeyServer, from: Peer, to: Peer): number {
  return (server.inbox.get(`${to.userId}|${to.deviceId}`) ?? []).filter((m) => m.sender === from.userId).length;
}

describe("engine: room records kept in memory stay coherent", () => {
  it("a room that turns encrypted in a sync is encrypted for the rest of that sync, the next sync, and after a restart", async () => {
    const server = new KeyServer();
    const alice = await Peer.create(server, "@alice:example.org", "A");
    const bob = await Peer.create(server, "@bob:example.org", "B");
    const room = "!late:example.org";
    const members = { [alice.userId]: "join", [bob.userId]: "join" };
    for (const p of [alice, bob]) {
      const s = await p.sync({ rooms: [state(room, members)] });
      await p.engine.commitSyncToken("s0", s.batchId);
      await p.flush();
    }
    // Read (and so kept in memory) while the room is not encrypted.
    assert.equal(alice.engine.getRoomInfo(room).encryption, null);
    await assert.rejects(alice.encrypt(room, "too early", "$0"), /not encrypted/);

    // The sync that carries m.room.encryption: seen by the calls made before its token is committed.
    const s1 = await alice.sync({ rooms: [state(room, {}, [encryptionEvent()])] });
    assert.deepEqual(s1.encryptedRooms, [{ roomId: room, encryption: MEGOLM }]);
    assert.deepEqual(alice.engine.getRoomInfo(room).encryption, MEGOLM, "the sync's own calls saw the room unencrypted");
    const ev1 = await alice.encrypt(room, "same sync", "$1");
    await alice.engine.commitSyncToken("s1", s1.batchId);
    const k1 = await bob.sync({ rooms: [state(room, {}, [encryptionEvent()])] });
    const dec1 = bob.engine.decryptSyncTimelines([{ roomId: room, events: [ev1] }]);
    assert.equal(dec1[0]?.results[0]?.ok, true);
    await bob.engine.commitSyncToken("s2", k1.batchId);

    // The next sync carries the room without state: still encrypted.
    const s2 = await alice.sync({ rooms: [{ roomId: room, membership: "join", stateEvents: [] }] });
    assert.deepEqual(alice.engine.getRoomInfo(room).encryption, MEGOLM);
    await alice.encrypt(room, "next sync", "$2");
    await alice.engine.commitSyncToken("s2", s2.batchId);

    // A restarted engine reads the room from the store.
    const restarted = await Peer.create(server, alice.userId, alice.deviceId, alice.store);
    assert.deepEqual(restarted.engine.getRoomInfo(room).encryption, MEGOLM, "the restarted engine lost the room's encryption");
    const ev3 = await restarted.encrypt(room, "after restart", "$3");
    const k3 = await bob.sync();
    const dec3 = bob.engine.decryptSyncTimelines([{ roomId: room, events: [ev3] }]);
    assert.equal(dec3[0]?.results[0]?.ok, true);
    await bob.engine.commitSyncToken("s3", k3.batchId);
  });

  it("encryption the application learnt (setRoomEncryption) and a loaded member list are seen by the next call", async () => {
    const server = new KeyServer();
    const alice = await Peer.create(server, "@alice:example.org", "A");
    const room = "!told:example.org";
    assert.deepEqual(alice.engine.getRoomInfo(room), { encryption: null, membersKnown: false });
    await alice.engine.setRoomMembers(room, [{ userId: alice.userId, membership: "join" }]);
    assert.deepEqual(alice.engine.getRoomInfo(room), { encryption: null, membersKnown: true });
    await alice.engine.setRoomEncryption(room, MEGOLM);
    assert.deepEqual(alice.engine.getRoomInfo(room), { encryption: MEGOLM, membersKnown: true });
    const restarted = await Peer.create(server, alice.userId, alice.deviceId, alice.store);
    assert.deepEqual(restarted.engine.getRoomInfo(room), { encryption: MEGOLM, membersKnown: true });
  });

  it("history visibility turned to 'joined' in a sync: the next room key skips invited members, also after a restart", async () => {
    const server = new KeyServer();
    const alice = await Peer.create(server, "@alice:example.org", "A");
    const bob = await Peer.create(server, "@bob:example.org", "B");
    const carol = await Peer.create(server, "@carol:example.org", "C");
    const room = "!hist:example.org";
    const members = { [alice.userId]: "join", [bob.userId]: "join", [carol.userId]: "invite" };
    const s0 = await alice.sync({ rooms: [state(room, members, [encryptionEvent()])] });
    await alice.engine.commitSyncToken("s0", s0.batchId);
    await alice.flush();
    await alice.encrypt(room, "shared history", "$1");
    assert.equal(roomKeysTo(server, alice, carol), 1, "an invited member gets the key while history is shared");
    assert.equal(roomKeysTo(server, alice, bob), 1);

    const s1 = await alice.sync({ rooms: [state(room, {}, [{ type: "m.room.history_visibility", state_key: "", content: { history_visibility: "joined" } }])] });
    await alice.encrypt(room, "joined only", "$2");
    await alice.engine.commitSyncToken("s1", s1.batchId);
    assert.equal(roomKeysTo(server, alice, carol), 1, "the invited member got the key of a room whose history is for joined members");
    assert.equal(roomKeysTo(server, alice, bob), 2, "the session was not rotated when the invited member stopped being a recipient");

    const restarted = await Peer.create(server, alice.userId, alice.deviceId, alice.store);
    await restarted.engine.discardRoomKey(room);
    await restarted.encrypt(room, "after restart", "$3");
    assert.equal(roomKeysTo(server, alice, carol), 1, "after a restart the invited member got the key");
    assert.equal(roomKeysTo(server, alice, bob), 3);
  });
});
