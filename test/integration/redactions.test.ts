/**
 * Redactions through a real Synapse: a redacted encrypted event comes out as a redacted event
 * (`redactedBecause`), never as a decryption failure, whether it arrives by sync, by history or by
 * `getEvent`.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { MatrixClient, RoomEvent } from "../../src/index.js";
import type { SynapseHandle } from "../harness/synapse.js";
import { PASSWORD, type Recorder, startClient, synapse, tempDir, uniqueName } from "./helpers.js";

describe("redactions of encrypted events", { timeout: 300_000 }, () => {
  let hs: SynapseHandle;
  let alice: { client: MatrixClient; rec: Recorder };
  let bob: { client: MatrixClient; rec: Recorder };
  let bobId = "";
  let roomId = "";
  let secretId = "";
  let redactionId = "";

  before(async () => {
    hs = await synapse();
    const aliceId = (await hs.registerUser(uniqueName("redalice"), PASSWORD)).userId;
    bobId = (await hs.registerUser(uniqueName("redbob"), PASSWORD)).userId;
    alice = await startClient(hs, aliceId, tempDir());
    bob = await startClient(hs, bobId, tempDir());
    const room = await alice.client.createRoom({ encrypted: true, invite: [bobId] });
    roomId = room.roomId;
    await bob.rec.waitFor(() => bob.client.getRooms().some((r) => r.roomId === roomId), "the invite");
    await bob.client.joinRoom(roomId);
    await alice.rec.waitFor(() => alice.client.getRoom(roomId).members.get(bobId) === "join", "bob joining");
    secretId = await room.sendText("a secret, soon redacted");
    await bob.rec.waitFor(() => bob.rec.messages(roomId).some((e) => e.eventId === secretId), "bob decrypting the message");
    redactionId = await alice.client.redactEvent(roomId, secretId, "oops");
    await bob.rec.waitFor(() => bob.rec.events.some((e) => e.eventId === redactionId), "bob seeing the redaction");
  });
  after(async () => {
    await alice.client.close();
    await bob.client.close();
  });

  it("client.redactEvent sends an m.room.redaction naming the event and the reason", () => {
    const redaction = bob.rec.events.find((e) => e.eventId === redactionId)!;
    assert.equal(redaction.type, "m.room.redaction");
    assert.equal(redaction.sender, alice.client.userId);
    assert.equal(redaction.content.reason, "oops");
  });

  it("getEvent and history give the redacted encrypted event as a redacted RoomEvent, not an undecryptable one", async () => {
    const ev = await bob.client.getEvent(roomId, secretId);
    assert.equal("code" in ev, false, `came out as undecryptable: ${JSON.stringify(ev)}`);
    const redacted = ev as RoomEvent;
    assert.equal(redacted.type, "m.room.encrypted");
    assert.deepEqual(redacted.content, {});
    assert.equal(redacted.redactedBecause?.event_id, redactionId);
    const page = await bob.client.getRoom(roomId).getMessages({ limit: 20 });
    const inHistory = page.events.find((e) => e.eventId === secretId);
    assert.ok(inHistory && !("code" in inHistory), "the history holds the event, not as a failure");
    assert.equal((inHistory as RoomEvent).redactedBecause?.event_id, redactionId);
  });

  it("a device that syncs after the redaction gets the event as redacted (room.event), never room.undecryptable", async () => {
    const late = await startClient(hs, bobId, tempDir());
    try {
      await late.rec.waitFor(() => late.rec.events.some((e) => e.eventId === redactionId), "the new device's first sync");
      const ev = late.rec.events.find((e) => e.eventId === secretId);
      assert.ok(ev, "the redacted event was emitted as room.event");
      assert.equal(ev.redactedBecause?.event_id, redactionId);
      assert.deepEqual(late.rec.failures.filter((f) => f.eventId === secretId), []);
    } finally {
      await late.client.close();
    }
  });
});
