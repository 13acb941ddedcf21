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
import type { CryptoWorkerHost } from "../../src/client/CryptoWorkerHost.js";
import { FakeHomeserver, FAKE_SERVER_NAME, encryptedRoomState, joinedRoom } from "./fakeServer.js";
import { ClientEvents, LogCapture, fakeClient, waitFor } from "./helpers.js";
import { OlmPeer, initOlm, recipientFromUpload } from "../support/olmPeer.js";

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
    logs.start();
    await initOlm();
  });
  after(async () => {
    for (const c of cleanup.reverse()) await c().catch(() => undefined);
    logs.stop();
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
});
