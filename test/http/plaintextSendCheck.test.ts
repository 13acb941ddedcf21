/**
 * Before a plaintext send the client checks the room's `m.room.encryption` with the server, at
 * most once per room per sync interval (issue 13 item 7, issue 17): a check holds until the next
 * sync is applied; a sync that carried the room without `m.room.encryption` renews it; one that did
 * not carry the room, or a failed send, ends it. Clients with encryption off (and one with it on,
 * real worker) on a scripted fake homeserver (undici MockAgent) that counts the state requests.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { EncryptionDisabledError, MatrixClient, MatrixHttpError } from "../../src/index.js";
import { FAKE_ORIGIN, FAKE_SERVER_NAME, FakeHomeserver, joinedRoom, memberEvent } from "../faults/fakeServer.js";
import { fakeClient } from "../faults/helpers.js";

const ME = `@me:${FAKE_SERVER_NAME}`;
const PEER = `@peer:${FAKE_SERVER_NAME}`;
const PLAIN = `!plain:${FAKE_SERVER_NAME}`;
const OTHER = `!other:${FAKE_SERVER_NAME}`;

describe("plaintext sends check the room's encryption with the server once per sync interval", () => {
  let fake: FakeHomeserver;
  let client: MatrixClient;

  const stateChecks = (roomId: string): number =>
    fake.calls.filter((c) => c.method === "GET" && new URL(c.path, FAKE_ORIGIN).pathname === `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/state/m.room.encryption/`).length;
  const message = (body: string) => ({ type: "m.room.message", event_id: fake.eventId(), sender: PEER, origin_server_ts: Date.now(), content: { msgtype: "m.text", body } });
  const plainSends = (): number => fake.roomSends.filter((s) => s.roomId === PLAIN && s.eventType === "m.room.message").length;

  before(async () => {
    fake = new FakeHomeserver(ME);
    client = new MatrixClient(FAKE_ORIGIN, { dispatcher: fake.agent, stateStore: { inMemory: true } });
    await client.login(ME, "pw");
    // Initial (full-state) sync: both rooms joined, neither encrypted.
    fake.queueSync({ rooms: { join: { [PLAIN]: joinedRoom([memberEvent(ME, "join", "$m1"), memberEvent(PEER, "join", "$m2")]), [OTHER]: joinedRoom([memberEvent(ME, "join", "$m3")]) } } });
    await client.syncOnce();
  });

  after(async () => {
    await client?.close();
    await fake?.close();
  });

  it("right after a sync that carried the room, sends need no state request", async () => {
    await client.getRoom(PLAIN).sendText("one");
    await Promise.all([client.getRoom(PLAIN).sendText("two"), client.getRoom(PLAIN).sendText("three")]);
    assert.equal(stateChecks(PLAIN), 0);
    assert.equal(plainSends(), 3);
  });

  it("after a sync that did not carry the room, five sends (concurrent and sequential) make exactly one state request", async () => {
    fake.queueSync({ rooms: { join: { [OTHER]: joinedRoom([], [message("elsewhere")]) } } });
    await client.syncOnce();
    await Promise.all([1, 2, 3].map((i) => client.getRoom(PLAIN).sendText(`burst ${i}`)));
    await client.getRoom(PLAIN).sendText("four");
    await client.getRoom(PLAIN).sendText("five");
    assert.equal(stateChecks(PLAIN), 1);
    assert.equal(plainSends(), 8);
  });

  it("each sync that does not carry the room ends the check: the next send checks again, once", async () => {
    for (let round = 1; round <= 2; round++) {
      fake.queueSync({});
      await client.syncOnce();
      await client.getRoom(PLAIN).sendText(`round ${round} a`);
      await client.getRoom(PLAIN).sendText(`round ${round} b`);
      assert.equal(stateChecks(PLAIN), 1 + round);
    }
  });

  it("a sync that carried the room without m.room.encryption renews the check", async () => {
    const before = stateChecks(PLAIN);
    fake.queueSync({ rooms: { join: { [PLAIN]: joinedRoom([], [message("in the room")]) } } });
    await client.syncOnce();
    await client.getRoom(PLAIN).sendText("after a sync with the room");
    assert.equal(stateChecks(PLAIN), before);
  });

  it("a failed send ends the check: the retry checks again", async () => {
    const before = stateChecks(PLAIN);
    fake.fail(/\/rooms\/[^/]+\/send\//, { kind: "status", status: 403, body: { errcode: "M_FORBIDDEN", error: "injected" } });
    await assert.rejects(client.getRoom(PLAIN).sendText("refused"), (e: unknown) => e instanceof MatrixHttpError && e.status === 403);
    await client.getRoom(PLAIN).sendText("retried");
    assert.equal(stateChecks(PLAIN), before + 1);
  });

  it("a room that turned encrypted since the last sync is refused with EncryptionDisabledError, nothing sent", async () => {
    // The next sync does not carry the room; the server's state says it is encrypted now.
    fake.queueSync({});
    await client.syncOnce();
    const sendsBefore = plainSends();
    const checksBefore = stateChecks(PLAIN);
    fake.fail(/\/rooms\/[^/]+\/state\/m\.room\.encryption/, { kind: "status", status: 200, body: { algorithm: "m.megolm.v1.aes-sha2" } });
    await assert.rejects(client.getRoom(PLAIN).sendText("must not leave"), EncryptionDisabledError);
    await assert.rejects(client.getRoom(PLAIN).sendText("nor this"), EncryptionDisabledError);
    assert.equal(stateChecks(PLAIN), checksBefore + 1);
    assert.equal(plainSends(), sendsBefore);
    assert.equal(client.getRoom(PLAIN).encrypted, true);
  });
});

describe("with encryption on, plaintext sends to a plain room also make one state request per sync interval", () => {
  let fake: FakeHomeserver;
  let client: MatrixClient;

  before(async () => {
    fake = new FakeHomeserver(ME);
    client = fakeClient(fake, null);
    await client.login(ME, "pw");
    fake.queueSync({ rooms: { join: { [PLAIN]: joinedRoom([memberEvent(ME, "join", "$m1"), memberEvent(PEER, "join", "$m2")]) } } });
    await client.syncOnce();
  });

  after(async () => {
    await client?.close();
    await fake?.close();
  });

  it("after a sync that did not carry the room, four sends make exactly one state request and go out in plaintext", async () => {
    fake.queueSync({});
    await client.syncOnce();
    await Promise.all([1, 2].map((i) => client.getRoom(PLAIN).sendText(`burst ${i}`)));
    await client.getRoom(PLAIN).sendText("three");
    await client.getRoom(PLAIN).sendText("four");
    const checks = fake.calls.filter((c) => c.method === "GET" && new URL(c.path, FAKE_ORIGIN).pathname === `/_matrix/client/v3/rooms/${encodeURIComponent(PLAIN)}/state/m.room.encryption/`);
    assert.equal(checks.length, 1);
    assert.deepEqual(fake.roomSends.filter((s) => s.roomId === PLAIN).map((s) => s.eventType), ["m.room.message", "m.room.message", "m.room.message", "m.room.message"]);
  });
});
