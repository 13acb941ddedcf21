/**
 * The everyday API through a real Synapse: profile, account data (global and per room), aliases
 * (set up through the `client.request` escape hatch), single events decrypted, room state and
 * power levels, history pages from a token, typing and read receipts as another user sees them.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { p, type MatrixClient, type Room, type RoomEvent } from "../../src/index.js";
import type { SynapseHandle } from "../harness/synapse.js";
import { PASSWORD, type Recorder, startClient, synapse, tempDir, uniqueName } from "./helpers.js";

type Json = Record<string, unknown>;

describe("everyday API", { timeout: 300_000 }, () => {
  let hs: SynapseHandle;
  let alice: { client: MatrixClient; rec: Recorder };
  let bob: { client: MatrixClient; rec: Recorder };
  let bobId = "";
  let room: Room;

  before(async () => {
    hs = await synapse();
    const aliceId = (await hs.registerUser(uniqueName("evalice"), PASSWORD)).userId;
    bobId = (await hs.registerUser(uniqueName("evbob"), PASSWORD)).userId;
    alice = await startClient(hs, aliceId, tempDir());
    bob = await startClient(hs, bobId, tempDir());
    room = await alice.client.createRoom({ encrypted: true, invite: [bobId] });
    await bob.rec.waitFor(() => bob.client.getRooms().some((r) => r.roomId === room.roomId), "the invite");
    await bob.client.joinRoom(room.roomId);
    await alice.rec.waitFor(() => room.members.get(bobId) === "join", "bob joining");
  });
  after(async () => {
    await alice.client.close();
    await bob.client.close();
  });

  /** A raw /sync of bob's through the escape hatch (since `since`, waiting up to 5 s for news): its next_batch and one room's ephemeral events of `type`. */
  async function bobSync(since: string | undefined, type: string): Promise<{ next: string; events: Json[] }> {
    const filter = JSON.stringify({ room: { rooms: [room.roomId], timeline: { limit: 1 } } });
    const res = await bob.client.request<Json>("GET", "/_matrix/client/v3/sync", { query: { filter, timeout: since ? 5000 : 0, since } });
    const joined = (((res.rooms as Json | undefined)?.join ?? {}) as Record<string, { ephemeral?: { events?: Json[] } }>)[room.roomId];
    return { next: String(res.next_batch), events: (joined?.ephemeral?.events ?? []).filter((e) => e.type === type) };
  }

  it("profile: setDisplayName and setAvatarUrl show in getUserProfile (also for another user)", async () => {
    const mxc = await alice.client.uploadContent(new Uint8Array([1, 2, 3]), { contentType: "image/png" });
    await alice.client.setDisplayName("Alice Bot");
    await alice.client.setAvatarUrl(mxc);
    assert.deepEqual(await bob.client.getUserProfile(alice.client.userId!), { displayName: "Alice Bot", avatarUrl: mxc });
  });

  it("account data: global and per room, null when unset", async () => {
    assert.equal(await alice.client.getAccountData("org.example.settings"), null);
    await alice.client.setAccountData("org.example.settings", { volume: 3 });
    await alice.client.setRoomAccountData(room.roomId, "org.example.settings", { volume: 7 });
    assert.deepEqual(await alice.client.getAccountData("org.example.settings"), { volume: 3 });
    assert.deepEqual(await alice.client.getRoomAccountData(room.roomId, "org.example.settings"), { volume: 7 });
    assert.equal(await alice.client.getRoomAccountData(room.roomId, "org.example.unset"), null);
  });

  it("resolveRoomAlias finds an alias made through client.request, and gives null for an unknown one", async () => {
    const alias = `#${uniqueName("alias")}:${alice.client.userId!.split(":")[1]}`;
    await alice.client.request("PUT", p`/_matrix/client/v3/directory/room/${alias}`, { body: { room_id: room.roomId } });
    const resolved = await bob.client.resolveRoomAlias(alias);
    assert.equal(resolved?.roomId, room.roomId);
    assert.equal(await bob.client.resolveRoomAlias(`#nothing-${uniqueName("x")}:${alice.client.userId!.split(":")[1]}`), null);
  });

  it("getEvent gives one encrypted event decrypted", async () => {
    const id = await room.sendText("fetch me");
    const ev = await bob.client.getEvent(room.roomId, id);
    assert.equal("code" in ev, false, JSON.stringify(ev));
    assert.equal((ev as RoomEvent).type, "m.room.message");
    assert.equal((ev as RoomEvent).content.body, "fetch me");
    assert.equal((ev as RoomEvent).encryption?.senderDeviceId, alice.client.deviceId);
  });

  it("room state: name, topic, any state event, power levels and userCanSend", async () => {
    await room.setName("Ops");
    await room.setTopic("alerts go here");
    const bobRoom = bob.client.getRoom(room.roomId);
    assert.equal(await bobRoom.getName(), "Ops");
    assert.equal(await bobRoom.getTopic(), "alerts go here");
    assert.equal((await bobRoom.getState("m.room.encryption"))?.algorithm, "m.megolm.v1.aes-sha2");
    assert.equal(await bobRoom.getState("org.example.none", "x"), null);
    const pl = await bobRoom.getPowerLevels();
    // The creator: level 100 in room versions before 12, above every level from 12 on.
    assert.ok(pl.users[alice.client.userId!] === 100 || pl.creators.includes(alice.client.userId!), JSON.stringify(pl));
    assert.equal(await bobRoom.userCanSend(bobId, "m.room.message"), true);
    assert.equal(await bobRoom.userCanSend(bobId, "m.room.power_levels", { state: true }), false);
    assert.equal(await bobRoom.userCanSend(alice.client.userId!, "m.room.power_levels", { state: true }), true);
  });

  it("history pages from a token: getMessages walks back page by page from a sync's prev_batch, decrypted", async () => {
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push(await room.sendText(`page ${i}`));
    // A sync's prev_batch is the same kind of token as the one room.timelineGap hands out.
    const filter = JSON.stringify({ room: { rooms: [room.roomId], timeline: { limit: 1 } } });
    const sync = await bob.client.request<Json>("GET", "/_matrix/client/v3/sync", { query: { filter, timeout: 0 } });
    const timeline = ((sync.rooms as Json).join as Record<string, { timeline: { prev_batch: string; events: Json[] } }>)[room.roomId]!.timeline;
    assert.equal(timeline.events.at(-1)?.event_id, ids[4]);
    const bobRoom = bob.client.getRoom(room.roomId);
    const first = await bobRoom.getMessages({ from: timeline.prev_batch, limit: 2 });
    assert.deepEqual(first.events.map((e) => e.eventId), [ids[2], ids[3]]);
    assert.deepEqual(first.events.map((e) => (e as RoomEvent).content.body), ["page 2", "page 3"]);
    assert.ok(first.end);
    const second = await bobRoom.getMessages({ from: first.end, limit: 2 });
    assert.deepEqual(second.events.map((e) => e.eventId), [ids[0], ids[1]]);
    const forward = await bobRoom.getMessages({ from: second.end!, dir: "f", limit: 2 });
    assert.deepEqual(forward.events.map((e) => e.eventId), [ids[0], ids[1]]);
  });

  it("typing and read receipts reach the other member", async () => {
    const id = await room.sendText("read me");
    let since = (await bobSync(undefined, "m.typing")).next;
    await room.setTyping(true, 20_000);
    const typing = await bobSync(since, "m.typing");
    assert.deepEqual((typing.events[0]?.content as Json | undefined)?.user_ids, [alice.client.userId]);
    since = typing.next;
    await room.sendReadReceipt(id);
    const receipts = await bobSync(since, "m.receipt");
    const forEvent = receipts.events.map((r) => (r.content as Record<string, Record<string, Record<string, unknown>>>)[id]).find((c) => c !== undefined);
    assert.ok(forEvent?.["m.read"]?.[alice.client.userId!], `no m.read receipt of alice for ${id}: ${JSON.stringify(receipts.events)}`);
    since = receipts.next;
    await room.setTyping(false);
    const stopped = await bobSync(since, "m.typing");
    assert.deepEqual((stopped.events[0]?.content as Json | undefined)?.user_ids, []);
  });
});
