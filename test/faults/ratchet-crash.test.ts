/**
 * Outbound Megolm ratchets live in the crypto worker's memory between a session's in-use mark and
 * a clean close (fake homeserver, real worker, real SQLite, real libolm):
 * - a worker killed after encryptions that were never written, between sends and right before a
 *   send's encrypt call, is replaced by one that shares a new session: the peer decrypts every
 *   message, and no (session, message index) pair is ever used twice;
 * - a client closed cleanly and started again on the same store goes on with the same session at
 *   the next index, encrypting in one worker call, without sharing the key again.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import type { MatrixClient } from "../../src/index.js";
import type { CryptoWorkerHost } from "../../src/client/CryptoWorkerHost.js";
import { FakeHomeserver, FAKE_SERVER_NAME, encryptedRoomState, joinedRoom } from "./fakeServer.js";
import { ClientEvents, LogCapture, fakeClient, tempDir, waitFor } from "./helpers.js";
import { OlmPeer, PeerInbox, initOlm } from "../support/olmPeer.js";

type Json = Record<string, unknown>;

const ME = `@me:${FAKE_SERVER_NAME}`;
const PEER = `@peer:${FAKE_SERVER_NAME}`;

/** Record the worker calls made through `host`; `beforeCall` may act (kill the worker) before one goes out. */
function watchCalls(host: CryptoWorkerHost, beforeCall: (method: string) => Promise<void> = async () => undefined): { calls: string[] } {
  const orig = host.call.bind(host);
  const seen = { calls: [] as string[] };
  host.call = async (m: string, args: unknown[]) => {
    seen.calls.push(m);
    await beforeCall(m);
    return orig(m, args);
  };
  return seen;
}

/** What the peer reads of every room send: body, session and message index; each send must decrypt. */
function peerReads(fake: FakeHomeserver, peer: OlmPeer): { txnId: string; body: unknown; sessionId: string; index: number }[] {
  const inbox = new PeerInbox(peer);
  for (const td of fake.toDevice.filter((m) => m.eventType === "m.room.encrypted")) {
    const content = (td.body.messages as Record<string, Record<string, Json>>)[PEER]?.PEERDEV;
    if (content) inbox.olm(content);
  }
  assert.ok(fake.roomSends.every((s) => s.eventType === "m.room.encrypted"), "something was sent in plaintext");
  return fake.roomSends.map((s) => {
    const d = inbox.megolmIndexed(s.body);
    return { txnId: s.txnId, body: (d.event.content as Json).body, sessionId: d.sessionId, index: d.index };
  });
}

describe("outbound ratchets in the worker's memory across kills and clean restarts (fake homeserver)", { timeout: 120_000 }, () => {
  const logs = new LogCapture();
  const cleanup: (() => Promise<void>)[] = [];
  before(async () => {
    await initOlm();
  });
  after(async () => {
    for (const c of cleanup.reverse()) await c().catch(() => undefined);
  });

  async function rig(room: string, dbPath: string): Promise<{ fake: FakeHomeserver; peer: OlmPeer; client: MatrixClient }> {
    const fake = new FakeHomeserver(ME);
    const peer = new OlmPeer(PEER, "PEERDEV");
    fake.publishDevice(PEER, "PEERDEV", peer.deviceKeys());
    fake.publishOtks(PEER, "PEERDEV", peer.signedOtks(10));
    fake.setMember(room, ME);
    fake.setMember(room, PEER);
    const client = await start(fake, dbPath);
    cleanup.push(async () => {
      await fake.close();
      peer.free();
    });
    const ev = new ClientEvents(client);
    const token = FakeHomeserver.tokenAfter(fake.queueSync({ rooms: { join: { [room]: joinedRoom(encryptedRoomState(room, PEER, [ME, PEER])) } } }));
    await waitFor(() => ev.syncs.includes(token), "the room to be known");
    return { fake, peer, client };
  }

  async function start(fake: FakeHomeserver, dbPath: string): Promise<MatrixClient> {
    const client = fakeClient(fake, logs, { encryptionConf: { storeConf: { dbPath } } });
    cleanup.push(() => client.close());
    await client.login(ME, "pw");
    client.start();
    return client;
  }

  it("a worker killed after unwritten encryptions (between sends, and right before a send's encrypt call) never lets an index be used twice; the peer decrypts everything", async () => {
    const ROOM = `!kill:${FAKE_SERVER_NAME}`;
    const { fake, peer, client } = await rig(ROOM, tempDir("sdk-ratchet-kill-"));
    const host = client.cryptoHostForTesting!;
    const room = client.getRoom(ROOM);
    const ev = new ClientEvents(client);
    for (let i = 0; i < 5; i++) await room.sendText(`life 1 #${i}`);

    // 1. Killed between two sends: the ratchet had moved five times past its stored pickle.
    await host.terminateForTesting();
    for (let i = 0; i < 3; i++) await room.sendText(`life 2 #${i}`);

    // 2. Killed right before the next send's one-call encryption; the send goes to the new worker.
    let armed = true;
    watchCalls(host, async (m) => {
      if (armed && m === "encryptRoomEventIfReady") {
        armed = false;
        await host.terminateForTesting();
      }
    });
    for (let i = 0; i < 3; i++) await room.sendText(`life 3 #${i}`);
    assert.equal(armed, false, "the worker was not killed before an encrypt call");
    assert.ok(ev.crashed >= 2 && ev.restarted >= 2, `expected two crashes and restarts, saw ${ev.crashed} / ${ev.restarted}`);

    const reads = peerReads(fake, peer);
    const pairs = reads.map((r) => `${r.sessionId}#${r.index}`);
    assert.equal(new Set(pairs).size, pairs.length, `a (session, message index) pair was used twice: ${pairs.join(" ")}`);
    const bodies = new Set(reads.map((r) => r.body));
    for (const life of [[1, 5], [2, 3], [3, 3]] as const) for (let i = 0; i < life[1]; i++) assert.ok(bodies.has(`life ${life[0]} #${i}`), `the peer did not get "life ${life[0]} #${i}"`);
    const sessionsOf = (life: number): Set<string> => new Set(reads.filter((r) => String(r.body).startsWith(`life ${life} `)).map((r) => r.sessionId));
    assert.equal(sessionsOf(1).size, 1);
    for (const [a, b] of [[1, 2], [2, 3]] as const) {
      for (const s of sessionsOf(b)) assert.ok(!sessionsOf(a).has(s), `life ${b} went on with a session of the killed worker (life ${a})`);
    }
  });

  it("a client closed cleanly and started again on the same store sends with the same session at the next index, encrypting in one worker call, without sharing again", async () => {
    const ROOM = `!clean:${FAKE_SERVER_NAME}`;
    const db = tempDir("sdk-ratchet-clean-");
    const { fake, peer, client } = await rig(ROOM, db);
    for (let i = 0; i < 4; i++) await client.getRoom(ROOM).sendText(`before #${i}`);
    await client.close();
    const keyShares = fake.toDevice.length;

    const again = await start(fake, db);
    const ev = new ClientEvents(again);
    await waitFor(() => ev.syncs.length > 0, "the restarted client's first sync");
    const seen = watchCalls(again.cryptoHostForTesting!);
    await again.getRoom(ROOM).sendText("after #0");
    // (The restarted client loads the room's members once: setRoomMembers.)
    assert.deepEqual(seen.calls.filter((m) => m !== "setRoomMembers"), ["encryptRoomEventIfReady"], "the first send after a clean restart must encrypt in one call, without a share");
    seen.calls.length = 0;
    await again.getRoom(ROOM).sendText("after #1");
    assert.deepEqual(seen.calls, ["encryptRoomEventIfReady"]);
    assert.equal(fake.toDevice.length, keyShares, "the room key was shared again after a clean restart");

    const reads = peerReads(fake, peer);
    assert.deepEqual(reads.map((r) => r.body), ["before #0", "before #1", "before #2", "before #3", "after #0", "after #1"]);
    assert.equal(new Set(reads.map((r) => r.sessionId)).size, 1, "the session was replaced although the client closed cleanly");
    assert.deepEqual(reads.map((r) => r.index), [0, 1, 2, 3, 4, 5]);
  });
});
