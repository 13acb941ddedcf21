/**
 * End-to-end encrypted messaging between real SDK clients (each with its worker and SQLite
 * store) through a real Synapse on 127.0.0.1.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import type { MatrixClient } from "../../src/index.js";
import type { SynapseHandle } from "../harness/synapse.js";
import { PASSWORD, Recorder, startClient, synapse, tempDir, uniqueName } from "./helpers.js";

type Json = Record<string, unknown>;

describe("E2EE through a real Synapse", { timeout: 240_000 }, () => {
  let hs: SynapseHandle;
  const users: Record<string, string> = {};
  const dirs: Record<string, string> = {};
  const clients: MatrixClient[] = [];
  let alice: { client: MatrixClient; rec: Recorder };
  let bob: { client: MatrixClient; rec: Recorder };
  let roomId = "";

  const track = <T extends { client: MatrixClient }>(c: T): T => {
    clients.push(c.client);
    return c;
  };

  before(async () => {
    hs = await synapse();
    for (const name of ["alice", "bob", "carol"]) {
      const u = await hs.registerUser(uniqueName(name), PASSWORD);
      users[name] = u.userId;
      dirs[name] = tempDir(`sdk-${name}-`);
    }
    alice = track(await startClient(hs, users.alice!, dirs.alice!));
    bob = track(await startClient(hs, users.bob!, dirs.bob!, { restoreDeviceId: true }));
  });

  after(async () => {
    await Promise.all(clients.map((c) => c.close()));
  });

  const memberJoined = (rec: Recorder, room: string, userId: string): boolean =>
    rec.events.some((e) => e.roomId === room && e.type === "m.room.member" && e.stateKey === userId && e.content.membership === "join");

  /** Raw events of a room as the server stores them. */
  async function rawMessages(token: string, room: string): Promise<Json[]> {
    const r = await fetch(`${hs.baseUrl}/_matrix/client/v3/rooms/${encodeURIComponent(room)}/messages?dir=b&limit=100`, { headers: { authorization: `Bearer ${token}` } });
    return ((await r.json()) as { chunk: Json[] }).chunk;
  }

  it("Alice and Bob exchange encrypted messages both ways in a new encrypted room, never in plaintext", async () => {
    const room = await alice.client.createRoom({ encrypted: true, invite: [users.bob!] });
    roomId = room.roomId;
    await bob.rec.waitFor(() => bob.client.getRooms().some((r) => r.roomId === roomId), "Bob's invite");
    await bob.client.joinRoom(roomId);
    await alice.rec.waitFor(() => memberJoined(alice.rec, roomId, users.bob!), "Alice seeing Bob join");

    await room.sendText("hello bob");
    await bob.rec.waitFor(() => bob.rec.bodies(roomId).includes("hello bob"), "Bob decrypting");
    const got = bob.rec.messages(roomId).find((e) => e.content.body === "hello bob")!;
    assert.equal(got.sender, users.alice);
    assert.equal(got.encryption?.senderDeviceId, alice.client.deviceId);
    assert.equal(got.encryption?.claimedEd25519, alice.client.getFingerprint());
    assert.equal(got.encryption?.verification, "unverified");

    await bob.client.getRoom(roomId).sendNotice("hello alice");
    await bob.client.getRoom(roomId).sendEmote("waves");
    await bob.client.getRoom(roomId).sendHtml("<b>bold</b>");
    await alice.rec.waitFor(() => alice.rec.bodies(roomId).includes("bold"), "Alice decrypting Bob's messages");
    assert.deepEqual(
      alice.rec.messages(roomId).filter((e) => e.sender === users.bob).map((e) => e.content.msgtype),
      ["m.notice", "m.emote", "m.text"],
    );

    const raw = await rawMessages(alice.client.accessToken!, roomId);
    assert.ok(raw.some((e) => e.type === "m.room.encrypted"));
    assert.equal(raw.filter((e) => e.type === "m.room.message").length, 0, "a message was sent in plaintext");
  });

  it("ten concurrent sendText calls share the key once and arrive in call order", async () => {
    const room = alice.client.getRoom(roomId);
    const keysBefore = bob.rec.roomKeys.filter((k) => k.roomId === roomId).length;
    // Force a fresh session: rotation happens when the outbound session is discarded.
    const texts = Array.from({ length: 10 }, (_, i) => `burst ${i}`);
    await Promise.all(texts.map((t) => room.sendText(t)));
    await bob.rec.waitFor(() => texts.every((t) => bob.rec.bodies(roomId).includes(t)), "Bob receiving the burst");
    const burst = bob.rec.bodies(roomId).filter((b) => b.startsWith("burst "));
    assert.deepEqual(burst, texts);
    const sessions = new Set(bob.rec.messages(roomId).filter((e) => String(e.content.body).startsWith("burst ")).map((e) => e.encryption?.sessionId));
    assert.equal(sessions.size, 1);
    assert.ok(bob.rec.roomKeys.filter((k) => k.roomId === roomId).length - keysBefore <= 1, "the room key was shared more than once");
  });

  it("Bob's second device receives the room key and decrypts", async () => {
    const bob2 = track(await startClient(hs, users.bob!, tempDir("sdk-bob2-")));
    await bob2.client.joinRoom(roomId).catch(() => undefined); // already joined as a user
    // Alice learns about the new device through device_lists.changed.
    const deadline = Date.now() + 30_000;
    while (!(await alice.client.getDevices(users.bob!)).some((d) => d.deviceId === bob2.client.deviceId)) {
      if (Date.now() > deadline) throw new Error("Alice never saw Bob's second device");
      await new Promise((r) => setTimeout(r, 200));
    }
    await alice.client.getRoom(roomId).sendText("to both of bob's devices");
    await bob2.rec.waitFor(() => bob2.rec.bodies(roomId).includes("to both of bob's devices"), "Bob's second device decrypting");
    await bob.rec.waitFor(() => bob.rec.bodies(roomId).includes("to both of bob's devices"), "Bob's first device decrypting");
    await bob2.client.close();
  });

  it("Bob restarts on the same database: same device ID and keys, old and new messages decrypt", async () => {
    const deviceId = bob.client.deviceId;
    const fingerprint = bob.client.getFingerprint();
    const curve = bob.client.getIdentityKey();
    await bob.client.close();
    bob = track(await startClient(hs, users.bob!, dirs.bob!, { restoreDeviceId: true }));
    assert.equal(bob.client.deviceId, deviceId);
    assert.equal(bob.client.getFingerprint(), fingerprint);
    assert.equal(bob.client.getIdentityKey(), curve);

    const history = await bob.client.getRoom(roomId).getHistory(100);
    const old = history.filter((e) => "type" in e && e.type === "m.room.message").map((e) => (e as { content: Json }).content.body);
    assert.ok(old.includes("hello bob"), `old message not decrypted after restart: ${JSON.stringify(old)}`);
    assert.equal(history.filter((e) => "code" in e).length, 0, "undecryptable events in history");

    await alice.client.getRoom(roomId).sendText("after bob restarted");
    await bob.rec.waitFor(() => bob.rec.bodies(roomId).includes("after bob restarted"), "restarted Bob decrypting");
  });

  it("Carol joins later and reads new messages; after she leaves the session rotates and she gets no new key", async () => {
    const carol = track(await startClient(hs, users.carol!, dirs.carol!));
    const room = alice.client.getRoom(roomId);
    await room.invite(users.carol!);
    await carol.rec.waitFor(() => carol.client.getRooms().some((r) => r.roomId === roomId), "Carol's invite");
    await carol.client.joinRoom(roomId);
    await alice.rec.waitFor(() => memberJoined(alice.rec, roomId, users.carol!), "Alice seeing Carol join");
    await room.sendText("welcome carol");
    await carol.rec.waitFor(() => carol.rec.bodies(roomId).includes("welcome carol"), "Carol decrypting");
    await bob.rec.waitFor(() => bob.rec.bodies(roomId).includes("welcome carol"), "Bob decrypting");
    const before = bob.rec.messages(roomId).find((e) => e.content.body === "welcome carol")!.encryption!.sessionId;

    await carol.client.getRoom(roomId).leave();
    await alice.rec.waitFor(
      () => alice.rec.events.some((e) => e.roomId === roomId && e.type === "m.room.member" && e.stateKey === users.carol && e.content.membership === "leave"),
      "Alice seeing Carol leave",
    );
    await room.sendText("carol is gone");
    await bob.rec.waitFor(() => bob.rec.bodies(roomId).includes("carol is gone"), "Bob decrypting after Carol left");
    const afterId = bob.rec.messages(roomId).find((e) => e.content.body === "carol is gone")!.encryption!.sessionId;
    assert.notEqual(afterId, before, "the session did not rotate when Carol left");
    // Give Carol's sync loop time to receive anything that might have been sent to her.
    await new Promise((r) => setTimeout(r, 3000));
    assert.ok(!carol.rec.roomKeys.some((k) => k.sessionId === afterId), "Carol received the new room key");
    await carol.client.close();
  });

  it("a malformed to-device message and a corrupted ciphertext give reason-coded failures while sync goes on", async () => {
    const toDeviceFailures: string[] = [];
    bob.client.on("toDevice.failure", (f) => toDeviceFailures.push(f.code));
    await alice.client.sendToDevice("m.room.encrypted", {
      [users.bob!]: {
        [bob.client.deviceId!]: {
          algorithm: "m.olm.v1.curve25519-aes-sha2",
          sender_key: alice.client.getIdentityKey(),
          ciphertext: { [bob.client.getIdentityKey()]: { type: 0, body: "not an olm message" } },
        },
      },
    });
    await bob.rec.waitFor(() => toDeviceFailures.length > 0, "Bob's to-device failure");

    const sample = bob.rec.messages(roomId).find((e) => e.content.body === "carol is gone")!;
    const token = alice.client.accessToken!;
    const put = await fetch(`${hs.baseUrl}/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/send/m.room.encrypted/corrupt${Date.now()}`, {
      method: "PUT",
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      body: JSON.stringify({
        algorithm: "m.megolm.v1.aes-sha2",
        sender_key: sample.encryption!.senderCurve25519,
        session_id: sample.encryption!.sessionId,
        device_id: alice.client.deviceId,
        ciphertext: "AwgAEnACgAkLmt6qF84IK++J7UDH2Za1YVchHyprqTqsg2yyOwAtHaZTwyNg37afzg8f3r9IsN9rH4RNFg7MaZencUJe4qvELiDiopUjy5wYVDAtqdBzer5bWRD9ldxp1FLgbQvBcjkkywYjCsmsq6+hArLd9oAQZnGKn/qLsK+5uNX3PaWzDRC9wZPQvWYYPCTov3jCwXKTPsLKIiTrcCXDqMvbGz8ByIQY8uiTvPT1bSQF3k8J8f8jMxHZgJmfDh9wIE4T0h4m8yMPSr0DqhS1pbCJFkVzqWeMbNiN7aAR/nZCHVNyEWFLT1SYfKfkMz3w9JSNOM4uWYiqWqNd0iU+rWq2zRJBYu1sdf8gQeW4XMA",
      }),
    });
    assert.equal(put.status, 200);
    await bob.rec.waitFor(() => bob.rec.failures.some((f) => f.sessionId === sample.encryption!.sessionId), "Bob's decryption failure");
    const f = bob.rec.failures.find((x) => x.sessionId === sample.encryption!.sessionId)!;
    assert.equal(f.code, "malformed");

    await alice.client.getRoom(roomId).sendText("still syncing");
    await bob.rec.waitFor(() => bob.rec.bodies(roomId).includes("still syncing"), "Bob still syncing");
  });

  it("a throwing room.event listener is reported as an error and does not stall the sync", async () => {
    const errors: Error[] = [];
    const onError = (e: Error): void => void errors.push(e);
    const boom = (e: { content: Record<string, unknown> }): void => {
      if (e.content.body === "make the listener throw") throw new Error("listener bug");
    };
    bob.client.on("error", onError);
    bob.client.on("room.event", boom);
    await alice.client.getRoom(roomId).sendText("make the listener throw");
    await alice.client.getRoom(roomId).sendText("after the throwing listener");
    await bob.rec.waitFor(() => bob.rec.bodies(roomId).includes("after the throwing listener"), "Bob still receiving");
    assert.ok(errors.some((e) => e.message === "listener bug"));
    assert.equal(bob.rec.bodies(roomId).filter((b) => b === "make the listener throw").length, 1, "the sync was processed again");
    bob.client.off("room.event", boom);
    bob.client.off("error", onError);
  });
});
