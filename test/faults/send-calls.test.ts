/**
 * The cost of an encrypted send in worker calls (fake homeserver, real worker, real libolm): once
 * the room's key reached every recipient, a send is one worker call; a new recipient device, or a
 * rotation, takes the full path again, and the peer decrypts every message either way.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import type { CryptoWorkerHost } from "../../src/client/CryptoWorkerHost.js";
import { FakeHomeserver, FAKE_SERVER_NAME, encryptedRoomState, joinedRoom } from "./fakeServer.js";
import { ClientEvents, LogCapture, fakeClient, waitFor } from "./helpers.js";
import { OlmPeer, PeerInbox, initOlm } from "../support/olmPeer.js";

type Json = Record<string, unknown>;

const ME = `@me:${FAKE_SERVER_NAME}`;
const PEER = `@peer:${FAKE_SERVER_NAME}`;

/** Count the worker calls made through `host` (by method name). */
function countCalls(host: CryptoWorkerHost): { calls: string[]; restore: () => void } {
  const orig = host.call.bind(host);
  const calls: string[] = [];
  host.call = async (m: string, args: unknown[]) => {
    calls.push(m);
    return orig(m, args);
  };
  return { calls, restore: () => void (host.call = orig) };
}

describe("encrypted sends in worker calls (fake homeserver)", { timeout: 120_000 }, () => {
  const logs = new LogCapture();
  const cleanup: (() => Promise<void>)[] = [];
  before(async () => {
    await initOlm();
  });
  after(async () => {
    for (const c of cleanup.reverse()) await c().catch(() => undefined);
  });

  it("a send into a room whose key reached every recipient is one worker call; a new recipient device takes the full path; the peer decrypts all", async () => {
    const ROOM = `!fast:${FAKE_SERVER_NAME}`;
    const fake = new FakeHomeserver(ME);
    const peer = new OlmPeer(PEER, "PEERDEV");
    const peer2 = new OlmPeer(PEER, "PEERDEV2");
    fake.publishDevice(PEER, "PEERDEV", peer.deviceKeys());
    fake.publishOtks(PEER, "PEERDEV", peer.signedOtks(5));
    fake.setMember(ROOM, ME);
    fake.setMember(ROOM, PEER);
    const client = fakeClient(fake, logs);
    const ev = new ClientEvents(client);
    cleanup.push(async () => {
      await client.close();
      await fake.close();
      peer.free();
      peer2.free();
    });
    await client.login(ME, "pw");
    client.start();
    const token = FakeHomeserver.tokenAfter(fake.queueSync({ rooms: { join: { [ROOM]: joinedRoom(encryptedRoomState(ROOM, PEER, [ME, PEER])) } } }));
    await waitFor(() => ev.syncs.includes(token), "the room to be known");
    const room = client.getRoom(ROOM);

    await room.sendText("first (shares the key)");
    const counter = countCalls(client.cryptoHostForTesting!);
    for (let i = 0; i < 5; i++) await room.sendText(`fast ${i}`);
    assert.deepEqual(counter.calls, Array(5).fill("encryptRoomEventIfReady"), "each send after the key was shared must be one worker call");

    // A new device of the peer: the next send queries, claims and shares again.
    fake.publishDevice(PEER, "PEERDEV2", peer2.deviceKeys());
    fake.publishOtks(PEER, "PEERDEV2", peer2.signedOtks(5));
    const t2 = FakeHomeserver.tokenAfter(fake.queueSync({ device_lists: { changed: [PEER] } }));
    await waitFor(() => ev.syncs.includes(t2), "the device-list change to be processed");
    counter.calls.length = 0;
    await room.sendText("to both devices");
    assert.ok(counter.calls.includes("shareRoomKey"), `the send after a new device did not share the key: ${counter.calls.join(", ")}`);
    counter.calls.length = 0;
    await room.sendText("fast again");
    assert.deepEqual(counter.calls, ["encryptRoomEventIfReady"]);
    counter.restore();

    // Both devices decrypt what they were sent, and nothing left in plaintext.
    for (const [p, dev] of [[peer, "PEERDEV"], [peer2, "PEERDEV2"]] as const) {
      const inbox = new PeerInbox(p);
      for (const td of fake.toDevice.filter((m) => m.eventType === "m.room.encrypted")) {
        const content = (td.body.messages as Record<string, Record<string, Json>>)[PEER]?.[dev];
        if (content) inbox.olm(content);
      }
      const bodies = fake.roomSends.flatMap((s) => {
        try {
          return [(inbox.megolm(s.body).content as Json).body];
        } catch {
          return [];
        }
      });
      const expected = dev === "PEERDEV" ? ["first (shares the key)", "fast 0", "fast 1", "fast 2", "fast 3", "fast 4", "to both devices", "fast again"] : ["to both devices", "fast again"];
      assert.deepEqual(bodies, expected, `${dev} decrypts`);
    }
    assert.ok(fake.roomSends.every((s) => s.eventType === "m.room.encrypted"), "something was sent in plaintext");
  });
});
