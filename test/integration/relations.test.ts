/**
 * Relations in an encrypted room with an independent peer (matrix-sdk-crypto-wasm, the Rust crypto
 * behind matrix-js-sdk and Element) through a real Synapse: the peer and the server see the SDK's
 * replies, edits, reactions and thread messages as such, and the SDK sees the peer's.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { MatrixClient, RoomEvent } from "../../src/index.js";
import type { SynapseHandle } from "../harness/synapse.js";
import { WasmPeer, type PeerRoomEvent } from "../support/wasmPeer.js";
import { PASSWORD, type Recorder, startClient, synapse, tempDir, uniqueName } from "./helpers.js";

type Json = Record<string, unknown>;

describe("relations in an encrypted room with matrix-sdk-crypto-wasm", { timeout: 300_000 }, () => {
  let hs: SynapseHandle;
  let alice: { client: MatrixClient; rec: Recorder };
  let bob: WasmPeer;
  let roomId = "";
  let hello: RoomEvent;

  before(async () => {
    hs = await synapse();
    const aliceId = (await hs.registerUser(uniqueName("relalice"), PASSWORD)).userId;
    const bobId = (await hs.registerUser(uniqueName("relbob"), PASSWORD)).userId;
    alice = await startClient(hs, aliceId, tempDir());
    bob = await WasmPeer.login(hs.baseUrl, bobId, PASSWORD);
    const room = await alice.client.createRoom({ encrypted: true, invite: [bobId] });
    roomId = room.roomId;
    await bob.join(roomId, { encryptedFor: [aliceId, bobId] });
    await bob.sendRoomEvent(roomId, "m.room.message", JSON.stringify({ msgtype: "m.text", body: "hello from rust" }));
    await alice.rec.waitFor(() => alice.rec.messages(roomId).some((e) => e.sender === bobId), "the peer's first message");
    hello = alice.rec.messages(roomId).find((e) => e.sender === bobId)!;
  });
  after(async () => {
    bob.close();
    await alice.client.close();
  });

  /** The peer's view of one event (synced until it is there and decrypted). */
  async function peerSees(eventId: string): Promise<PeerRoomEvent> {
    let found: PeerRoomEvent | undefined;
    await bob.syncUntil(() => (found = bob.roomEvents.find((e) => e.eventId === eventId && e.encrypted)) !== undefined, `the peer decrypting ${eventId}`);
    return found!;
  }
  /** Event IDs the server's `/relations` gives for `eventId`. */
  async function serverRelations(eventId: string, relType?: string): Promise<string[]> {
    const path = `/_matrix/client/v1/rooms/${encodeURIComponent(roomId)}/relations/${encodeURIComponent(eventId)}${relType ? `/${relType}` : ""}`;
    const res = await bob.call("GET", path);
    return ((res.chunk ?? []) as Json[]).map((e) => String(e.event_id));
  }

  it("the peer sees the SDK's rich reply as a reply (relation in the clear, fallback and m.mentions in the content)", async () => {
    const room = alice.client.getRoom(roomId);
    const id = await room.replyText(hello, "pong");
    const seen = await peerSees(id);
    assert.equal(seen.type, "m.room.message");
    assert.deepEqual(seen.clearRelation, { "m.in_reply_to": { event_id: hello.eventId } });
    assert.deepEqual(seen.content["m.relates_to"], { "m.in_reply_to": { event_id: hello.eventId } });
    assert.equal(seen.content.body, `> <${bob.userId}> hello from rust\n\npong`);
    assert.deepEqual(seen.content["m.mentions"], { user_ids: [bob.userId] });
    assert.equal(seen.content.format, "org.matrix.custom.html");
  });

  it("the server's /relations and the peer see the SDK's reaction, edit and thread message", async () => {
    const room = alice.client.getRoom(roomId);
    const reaction = await room.react(hello.eventId, "👍");
    const original = await room.sendText("tpyo");
    const edit = await room.edit(original, { msgtype: "m.text", body: "typo fixed" });
    const threaded = await room.sendThreadText(hello.eventId, "in the thread");

    assert.deepEqual((await peerSees(reaction)).clearRelation, { rel_type: "m.annotation", event_id: hello.eventId, key: "👍" });
    const seenEdit = await peerSees(edit);
    assert.deepEqual(seenEdit.clearRelation, { rel_type: "m.replace", event_id: original });
    assert.deepEqual(seenEdit.content["m.new_content"], { msgtype: "m.text", body: "typo fixed" });
    assert.equal(seenEdit.content.body, "* typo fixed");
    const seenThread = await peerSees(threaded);
    assert.deepEqual(seenThread.clearRelation, { rel_type: "m.thread", event_id: hello.eventId, is_falling_back: true, "m.in_reply_to": { event_id: hello.eventId } });

    assert.deepEqual((await serverRelations(hello.eventId, "m.annotation")).sort(), [reaction]);
    assert.deepEqual(await serverRelations(hello.eventId, "m.thread"), [threaded]);
    assert.deepEqual(await serverRelations(original, "m.replace"), [edit]);
  });

  it("the SDK sees the peer's reply, reaction and edit with their relations", async () => {
    const mine = await alice.client.getRoom(roomId).sendText("rate me");
    const send = async (type: string, content: Json): Promise<string> => String((await bob.sendRoomEvent(roomId, type, JSON.stringify(content))).event_id);
    const reply = await send("m.room.message", { msgtype: "m.text", body: "a reply", "m.relates_to": { "m.in_reply_to": { event_id: mine } } });
    const reaction = await send("m.reaction", { "m.relates_to": { rel_type: "m.annotation", event_id: mine, key: "🎉" } });
    const edit = await send("m.room.message", { msgtype: "m.text", body: "* edited", "m.new_content": { msgtype: "m.text", body: "edited" }, "m.relates_to": { rel_type: "m.replace", event_id: hello.eventId } });
    const byId = (id: string): RoomEvent | undefined => alice.rec.events.find((e) => e.eventId === id);
    await alice.rec.waitFor(() => [reply, reaction, edit].every((id) => byId(id) !== undefined), "the peer's relations");
    assert.deepEqual(byId(reply)!.content["m.relates_to"], { "m.in_reply_to": { event_id: mine } });
    assert.equal(byId(reaction)!.type, "m.reaction");
    assert.deepEqual(byId(reaction)!.content["m.relates_to"], { rel_type: "m.annotation", event_id: mine, key: "🎉" });
    assert.deepEqual(byId(edit)!.content["m.relates_to"], { rel_type: "m.replace", event_id: hello.eventId });
    assert.ok(byId(edit)!.encryption, "the edit arrived encrypted and was decrypted");
    assert.deepEqual(alice.rec.failures.filter((f) => f.roomId === roomId), []);
  });
});
