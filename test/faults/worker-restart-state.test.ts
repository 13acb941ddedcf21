/**
 * What a crypto worker restart must not lose (fake homeserver, real worker, real libolm):
 * - the staged state of a sync (replay records) when the worker dies between decrypting the sync's
 *   timelines and committing its token: the commit names the sync's batch, the restarted worker
 *   refuses it, and the client processes the same sync again;
 * - requests in flight (a room-key share, a key claim) when the worker dies before their answer is
 *   reported: the send completes (or fails with a typed error) and the next send works.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { CryptoWorkerCrashedError, InternalError, MatrixSdkError, type MatrixClient } from "../../src/index.js";
import type { CryptoWorkerHost } from "../../src/client/CryptoWorkerHost.js";
import { FakeHomeserver, FAKE_SERVER_NAME, encryptedRoomState, joinedRoom } from "./fakeServer.js";
import { ClientEvents, LogCapture, fakeClient, waitFor } from "./helpers.js";
import { OlmPeer, PeerInbox, initOlm, recipientFromUpload } from "../support/olmPeer.js";

type Json = Record<string, unknown>;

const ME = `@me:${FAKE_SERVER_NAME}`;
const PEER = `@peer:${FAKE_SERVER_NAME}`;

/**
 * Kill the worker once, right before the first call of `method` whose arguments `match`, and let
 * the call go to the restarted worker (calls wait for the restart).
 */
function killBefore(host: CryptoWorkerHost, method: string, match: (args: unknown[]) => boolean = () => true): { fired: () => boolean; restore: () => void } {
  const orig = host.call.bind(host);
  let fired = false;
  host.call = async (m: string, args: unknown[]) => {
    if (!fired && m === method && match(args)) {
      fired = true;
      await host.terminateForTesting();
    }
    return orig(m, args);
  };
  return { fired: () => fired, restore: () => void (host.call = orig) };
}

describe("crypto worker restarts: staged sync state and requests in flight (fake homeserver)", { timeout: 120_000 }, () => {
  const logs = new LogCapture();
  const cleanup: (() => Promise<void>)[] = [];

  before(async () => {
    await initOlm();
  });
  after(async () => {
    for (const c of cleanup.reverse()) await c().catch(() => undefined);
  });

  async function rig(room: string, beforeLogin: (fake: FakeHomeserver, peer: OlmPeer) => void = () => undefined) {
    const fake = new FakeHomeserver(ME);
    const peer = new OlmPeer(PEER, "PEERDEV");
    fake.publishDevice(PEER, "PEERDEV", peer.deviceKeys());
    beforeLogin(fake, peer);
    const client = fakeClient(fake, logs);
    const ev = new ClientEvents(client);
    cleanup.push(async () => {
      await client.close();
      await fake.close();
      peer.free();
    });
    await client.login(ME, "pw");
    client.start();
    const deliver = async (batch: Json): Promise<void> => {
      const token = FakeHomeserver.tokenAfter(fake.queueSync(batch));
      await waitFor(() => ev.syncs.includes(token), "the batch to be processed");
    };
    await deliver({ rooms: { join: { [room]: joinedRoom(encryptedRoomState(room, PEER, [ME, PEER])) } } });
    return { fake, peer, client, ev, deliver };
  }

  it("a replayed message index is rejected after the worker died between a sync's decryption and its token commit; the original event is emitted once", async () => {
    const ROOM = `!replay:${FAKE_SERVER_NAME}`;
    const { fake, peer, client, ev, deliver } = await rig(ROOM);
    await waitFor(async () => (await client.getDevices(PEER)).length === 1, "the peer's device");
    const { recipient, otks } = recipientFromUpload(fake.uploads.find((u) => u.status === 200)!.body, ME, client.deviceId!);
    peer.openSession(recipient, otks[0]!);
    peer.newMegolm("S");
    const roomKey = peer.roomKeyContent("S", ROOM); // shared from index 0
    const original = peer.megolmEvent("S", ROOM, { msgtype: "m.text", body: "original" }, fake.eventId("orig"));

    // The sync with the key and the event: decrypted, then the worker dies before the token commit.
    const kill = killBefore(client.cryptoHostForTesting!, "commitSyncToken");
    await deliver({ to_device: { events: [peer.olmToDevice(recipient, "m.room_key", roomKey)] }, rooms: { join: { [ROOM]: joinedRoom([], [original]) } } });
    kill.restore();
    assert.ok(kill.fired(), "the worker was not killed before the commit");
    assert.ok(ev.crashed >= 1 && ev.restarted >= 1, "the worker did not crash and restart");

    // A later sync replays the same ciphertext (message index 0) under another event ID.
    const replayed = { ...original, event_id: fake.eventId("replayed") };
    await deliver({ rooms: { join: { [ROOM]: joinedRoom([], [replayed]) } } });

    const originals = ev.events.filter((e) => e.eventId === original.event_id);
    assert.deepEqual(originals.map((e) => e.content.body), ["original"], "the original event must be emitted decrypted exactly once");
    assert.deepEqual(ev.events.filter((e) => e.eventId === replayed.event_id), [], "the replayed event must not decrypt");
    assert.equal(ev.utds.find((u) => u.eventId === replayed.event_id)?.code, "replay");
  });

  for (const point of ["room-key share", "key claim"] as const) {
    it(`a send whose ${point} is in flight when the worker dies completes, and the next send works (decryptable by the peer, no InternalError)`, async () => {
      const ROOM = `!inflight${point === "key claim" ? "claim" : "share"}:${FAKE_SERVER_NAME}`;
      const { fake, peer, client } = await rig(ROOM, (f, p) => {
        f.publishOtks(PEER, "PEERDEV", p.signedOtks(5));
        f.setMember(ROOM, ME);
        f.setMember(ROOM, PEER);
      });
      const room = client.getRoom(ROOM);
      // Killed after the request was produced and sent, before its answer reached the engine.
      const kind = point === "key claim" ? "keys_claim" : "to_device";
      const kill = killBefore(client.cryptoHostForTesting!, "markRequestAsSent", (args) => args[1] === kind);
      const first = await room.sendText("sent across a restart").then(
        (id) => ({ id, err: null }),
        (err: unknown) => ({ id: null, err }),
      );
      kill.restore();
      assert.ok(kill.fired(), `the worker was not killed before the ${kind} answer`);
      const firstErr = first.err === null ? "none" : MatrixSdkError.isSdkError(first.err) ? first.err.name : `untyped ${String(first.err)}`;
      assert.ok(!(first.err instanceof InternalError), `the interrupted send failed with InternalError: ${String(first.err)}`);
      assert.ok(first.err === null || first.err instanceof CryptoWorkerCrashedError, `the interrupted send failed with ${firstErr}`);
      const secondId = await room.sendText("sent after the restart");

      // The peer decrypts every room key it was sent, then the messages.
      const inbox = new PeerInbox(peer);
      for (const td of fake.toDevice.filter((m) => m.eventType === "m.room.encrypted")) {
        const msgs = td.body.messages as Record<string, Record<string, Json>>;
        const content = msgs[PEER]?.PEERDEV;
        if (content) inbox.olm(content);
      }
      const bodies = new Map(fake.roomSends.map((s) => [`$sent_${s.txnId}`, (inbox.megolm(s.body).content as Json).body]));
      assert.equal(bodies.get(secondId), "sent after the restart");
      if (first.id !== null) assert.equal(bodies.get(first.id), "sent across a restart");
      assert.ok(fake.roomSends.every((s) => s.eventType === "m.room.encrypted"), "something was sent in plaintext");
    });
  }
});
