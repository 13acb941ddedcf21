/**
 * No plaintext to a room that became encrypted (issue 13 item 7), through a real Synapse: Alice
 * turns encryption on in a plain room while Bob (encryption off) and Carol (encryption on) have
 * not synced it, and their last sync is older than their last look at the room. Bob's send is
 * refused with `EncryptionDisabledError` and never reaches the server; Carol's goes out encrypted
 * and Alice decrypts it.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { EncryptionDisabledError, type MatrixClient } from "../../src/index.js";
import type { SynapseHandle } from "../harness/synapse.js";
import { PASSWORD, Recorder, startClient, synapse, tempDir, uniqueName } from "./helpers.js";

type Json = Record<string, unknown>;

describe("no plaintext to a room that turned encrypted after the sender's last sync (real Synapse)", { timeout: 180_000 }, () => {
  let hs: SynapseHandle;
  const users: Record<string, string> = {};
  const clients: MatrixClient[] = [];
  let alice: { client: MatrixClient; rec: Recorder };
  let bob: { client: MatrixClient; rec: Recorder };
  let carol: { client: MatrixClient; rec: Recorder };
  let roomId = "";

  /** Raw events of the room as the server stores them (newest 100). */
  async function rawEvents(): Promise<Json[]> {
    const r = await fetch(`${hs.baseUrl}/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/messages?dir=b&limit=100`, { headers: { authorization: `Bearer ${alice.client.accessToken!}` } });
    return ((await r.json()) as { chunk: Json[] }).chunk;
  }
  const plaintextFrom = (events: Json[], userId: string, body: string): Json[] =>
    events.filter((e) => e.type === "m.room.message" && e.sender === userId && (e.content as Json | undefined)?.body === body);

  /**
   * Sync until a sync that did not carry the room (nothing new in it): the client's last look at
   * the room is then older than its last sync.
   */
  async function syncPastTheRoom(c: { client: MatrixClient }): Promise<void> {
    for (let i = 0; i < 5; i++) {
      let carried = false;
      const onEvent = (e: { roomId: string }): void => {
        if (e.roomId === roomId) carried = true;
      };
      c.client.on("room.event", onEvent);
      await c.client.syncOnce();
      c.client.off("room.event", onEvent);
      if (!carried) return;
    }
    throw new Error("every sync carried the room");
  }

  before(async () => {
    hs = await synapse();
    for (const name of ["alice", "bob", "carol"]) users[name] = (await hs.registerUser(uniqueName(name), PASSWORD)).userId;
    alice = await startClient(hs, users.alice!, tempDir("sdk-alice-"));
    bob = await startClient(hs, users.bob!, tempDir("sdk-bob-"), { encryption: false, noStart: true });
    carol = await startClient(hs, users.carol!, tempDir("sdk-carol-"), { noStart: true });
    clients.push(alice.client, bob.client, carol.client);
    const room = await alice.client.createRoom({ invite: [users.bob!, users.carol!] });
    roomId = room.roomId;
    for (const c of [bob, carol]) {
      await c.client.joinRoom(roomId);
      await c.client.syncOnce();
    }
    // Both talk in the clear while the room is plain.
    await bob.client.getRoom(roomId).sendText("bob, room still plain");
    await carol.client.getRoom(roomId).sendText("carol, room still plain");
    await alice.rec.waitFor(() => alice.rec.bodies(roomId).includes("bob, room still plain") && alice.rec.bodies(roomId).includes("carol, room still plain"), "Alice seeing the plain messages");
    for (const c of [bob, carol]) await syncPastTheRoom(c);
    // Alice turns encryption on; neither Bob nor Carol syncs it.
    assert.equal(await alice.client.getRoom(roomId).enableEncryption(), true);
  });

  after(async () => {
    await Promise.all(clients.map((c) => c.close()));
  });

  it("Bob (encryption off) is refused with EncryptionDisabledError; the server and Alice's timeline have no plaintext from him", async () => {
    const room = bob.client.getRoom(roomId);
    assert.equal(room.encrypted, false, "Bob must not have synced the encryption yet");
    await assert.rejects(room.sendText("bob, must never leave in plaintext"), EncryptionDisabledError);
    assert.equal(room.encrypted, true);
    // Alice sends a marker after it and sees it: her timeline is past the moment of Bob's attempt.
    await alice.client.getRoom(roomId).sendText("alice's marker");
    await alice.rec.waitFor(() => alice.rec.bodies(roomId).includes("alice's marker"), "Alice's marker");
    assert.deepEqual(plaintextFrom(await rawEvents(), users.bob!, "bob, must never leave in plaintext"), []);
    assert.deepEqual(alice.rec.events.filter((e) => e.roomId === roomId && e.sender === users.bob && e.content.body === "bob, must never leave in plaintext"), []);
  });

  it("Carol (encryption on, not synced) sends encrypted; Alice decrypts it; the server has it only as m.room.encrypted", async () => {
    const room = carol.client.getRoom(roomId);
    assert.equal(room.encrypted, false, "Carol must not have synced the encryption yet");
    const eventId = await room.sendText("carol, encrypted although not synced");
    await alice.rec.waitFor(() => alice.rec.bodies(roomId).includes("carol, encrypted although not synced"), "Alice decrypting Carol's message");
    const got = alice.rec.messages(roomId).find((e) => e.content.body === "carol, encrypted although not synced")!;
    assert.equal(got.eventId, eventId);
    assert.equal(got.encryption?.senderDeviceId, carol.client.deviceId);
    const raw = await rawEvents();
    assert.equal(raw.find((e) => e.event_id === eventId)?.type, "m.room.encrypted");
    assert.deepEqual(plaintextFrom(raw, users.carol!, "carol, encrypted although not synced"), []);
  });
});
