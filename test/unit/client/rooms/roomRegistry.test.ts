/**
 * What a sync saves of the main thread's rooms (issue 17, item 1): only the rooms whose state it
 * changed, so that a sync carrying messages in 1,000 rooms writes no room at all.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import type { SyncChangesInput } from "../../../../src/protocol/api.js";
import type { RoomHost } from "../../../../src/client/rooms/Room.js";
import { RoomRegistry } from "../../../../src/client/rooms/RoomRegistry.js";

type Rooms = SyncChangesInput["rooms"];
const ids = Array.from({ length: 1000 }, (_, i) => `!r${i}:x`);
const member = (userId: string, membership: string): Record<string, unknown> => ({ type: "m.room.member", state_key: userId, content: { membership } });
const joinedWith = (stateEvents: (roomId: string) => unknown[]): Rooms => ids.map((roomId) => ({ roomId, membership: "join", stateEvents: stateEvents(roomId) }));

function registry(): RoomRegistry {
  return new RoomRegistry({} as RoomHost, { verifyDevices: false, onlyCrossSignedDevices: false }, { onSyncApplied: () => undefined });
}

/** One sync as `SyncProcessor` runs it: state applied, then the changed rooms saved. */
function sync(reg: RoomRegistry, rooms: Rooms, fullState = false): { joined: string[]; left: string[] } {
  reg.applySyncState(rooms, fullState);
  const { joined, left, saved } = reg.persisted(rooms);
  saved();
  return { joined: joined.map((r) => r.roomId), left };
}

describe("RoomRegistry: rooms saved per sync", () => {
  it("a sync carrying 1,000 rooms with messages only saves none; one that changes a room's members or encryption saves that room", () => {
    const reg = registry();
    assert.equal(sync(reg, joinedWith(() => [member("@a:x", "join")]), true).joined.length, 1000, "the first sync saves every room");
    assert.deepEqual(sync(reg, joinedWith(() => [])).joined, [], "rooms whose state did not change were saved again");
    assert.deepEqual(sync(reg, joinedWith((r) => (r === "!r7:x" ? [member("@b:x", "invite")] : []))).joined, ["!r7:x"]);
    // The same membership again changes nothing.
    assert.deepEqual(sync(reg, joinedWith((r) => (r === "!r7:x" ? [member("@b:x", "invite")] : []))).joined, []);
    // Encryption learnt outside a sync (the server's answer to a send), members loaded for a send: saved with the next sync carrying the room.
    reg.get("!r3:x").encryption = { algorithm: "m.megolm.v1.aes-sha2" };
    reg.get("!r4:x").members.set("@c:x", "join");
    assert.deepEqual(sync(reg, joinedWith(() => [])).joined, ["!r3:x", "!r4:x"]);
    assert.deepEqual(sync(reg, joinedWith(() => [])).joined, []);
  });

  it("a room left and joined again is saved again; rooms read back from the client state store are not saved until they change", () => {
    const reg = registry();
    sync(reg, [{ roomId: "!a:x", membership: "join", stateEvents: [member("@a:x", "join")] }], true);
    assert.deepEqual(sync(reg, [{ roomId: "!a:x", membership: "leave", stateEvents: [] }]).left, ["!a:x"]);
    assert.deepEqual(sync(reg, [{ roomId: "!a:x", membership: "join", stateEvents: [] }]).joined, ["!a:x"], "a room joined again was not saved");

    const restored = registry();
    restored.restore([{ roomId: "!b:x", members: { "@a:x": "join" }, encryption: null }]);
    assert.deepEqual(sync(restored, [{ roomId: "!b:x", membership: "join", stateEvents: [] }]).joined, []);
    assert.deepEqual(sync(restored, [{ roomId: "!b:x", membership: "join", stateEvents: [member("@d:x", "join")] }]).joined, ["!b:x"]);
  });

  it("rooms are saved again when the save did not happen (the sync failed before its commit)", () => {
    const reg = registry();
    const rooms: Rooms = [{ roomId: "!c:x", membership: "join", stateEvents: [member("@a:x", "join")] }];
    reg.applySyncState(rooms, true);
    assert.equal(reg.persisted(rooms).joined.length, 1); // never confirmed with saved()
    assert.equal(sync(reg, rooms).joined.length, 1);
  });
});
