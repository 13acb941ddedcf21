/**
 * A client with two decrypt workers (`encryptionConf.decryptWorkers: 2`) through a real Synapse:
 * every message of several rooms arrives decrypted, in order per room, most of them deciphered by
 * the pool; a decrypt worker killed between syncs loses nothing.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import type { MatrixClient } from "../../src/index.js";
import type { SynapseHandle } from "../harness/synapse.js";
import { PASSWORD, Recorder, startClient, synapse, tempDir, uniqueName } from "./helpers.js";

describe("decrypt pool through a real Synapse", { timeout: 240_000 }, () => {
  let hs: SynapseHandle;
  const clients: MatrixClient[] = [];
  let alice: { client: MatrixClient; rec: Recorder };
  let bob: { client: MatrixClient; rec: Recorder };
  const rooms: string[] = [];

  before(async () => {
    hs = await synapse();
    const a = await hs.registerUser(uniqueName("poola"), PASSWORD);
    const b = await hs.registerUser(uniqueName("poolb"), PASSWORD);
    alice = await startClient(hs, a.userId, tempDir());
    bob = await startClient(hs, b.userId, tempDir(), { encryptionConf: { storeConf: { dbPath: tempDir() }, decryptWorkers: 2 } });
    clients.push(alice.client, bob.client);
    for (let i = 0; i < 4; i++) {
      const room = await alice.client.createRoom({ encrypted: true, invite: [b.userId] });
      rooms.push(room.roomId);
      await bob.rec.waitFor(() => bob.client.getRooms().some((r) => r.roomId === room.roomId), "Bob's invite");
      await bob.client.joinRoom(room.roomId);
    }
    const joined = (r: string): boolean => alice.rec.events.some((e) => e.roomId === r && e.type === "m.room.member" && e.stateKey === b.userId && e.content.membership === "join");
    await alice.rec.waitFor(() => rooms.every(joined), "Alice seeing Bob in every room", 60_000);
  });

  after(async () => {
    await Promise.all(clients.map((c) => c.close()));
  });

  async function round(tag: string, n: number): Promise<void> {
    for (let i = 0; i < n; i++) for (const r of rooms) await alice.client.getRoom(r).sendText(`${tag} ${i}`);
    await bob.rec.waitFor(() => rooms.every((r) => bob.rec.bodies(r).filter((x) => x.startsWith(`${tag} `)).length === n), `Bob decrypting round ${tag}`, 60_000);
    for (const r of rooms) assert.deepEqual(bob.rec.bodies(r).filter((x) => x.startsWith(`${tag} `)), Array.from({ length: n }, (_, i) => `${tag} ${i}`), `order in ${r}`);
  }

  it("messages of several rooms arrive decrypted and in order, deciphered by the pool once it holds the sessions", async () => {
    const pool = bob.client.decryptPoolForTesting;
    assert.ok(pool, "the client has a decrypt pool");
    assert.equal(alice.client.decryptPoolForTesting, null, "decryptWorkers 1 (the default) is the crypto worker alone, no pool");
    await round("first", 3); // the crypto worker deciphers and hands the sessions to the pool
    const before = pool.stats.deciphered;
    await round("second", 5);
    assert.ok(pool.stats.deciphered - before >= 15, `the pool deciphered ${pool.stats.deciphered - before} of the 20 events of the second round`);
    assert.equal(bob.rec.failures.length, 0);
    for (const e of bob.rec.messages(rooms[0]!)) assert.equal(e.encryption?.verification, "unverified");
  });

  it("room keys that arrive in the same sync as their events are deciphered by the pool in that sync", async (t) => {
    const pool = bob.client.decryptPoolForTesting!;
    // Two rooms whose Megolm session Alice replaces every 2 messages.
    const fresh: string[] = [];
    for (let i = 0; i < 2; i++) {
      const room = await alice.client.createRoom({ encrypted: true, invite: [bob.client.userId!], encryptionSettings: { rotationPeriodMsgs: 2 } });
      await bob.rec.waitFor(() => bob.client.getRooms().some((r) => r.roomId === room.roomId), "Bob's invite");
      await bob.client.joinRoom(room.roomId);
      fresh.push(room.roomId);
    }
    const joined = (r: string): boolean => alice.rec.events.some((e) => e.roomId === r && e.type === "m.room.member" && e.stateKey === bob.client.userId && e.content.membership === "join");
    await alice.rec.waitFor(() => fresh.every(joined), "Alice seeing Bob in the new rooms", 60_000);
    for (const r of fresh) await alice.client.getRoom(r).sendText("rot 0");
    await bob.rec.waitFor(() => fresh.every((r) => bob.rec.bodies(r).includes("rot 0")), "Bob decrypting the first messages", 60_000);
    // Bob stops syncing; Alice sends the second message of each session, then two of a new one:
    // Bob's next sync carries the new sessions' keys (to-device) with their events.
    await bob.client.stop();
    t.after(() => bob.client.start());
    for (let i = 1; i <= 3; i++) for (const r of fresh) await alice.client.getRoom(r).sendText(`rot ${i}`);
    const before = { ...pool.stats };
    await bob.client.syncOnce();
    for (const r of fresh) assert.deepEqual(bob.rec.bodies(r), ["rot 0", "rot 1", "rot 2", "rot 3"], `Bob's messages in ${r}`);
    for (const r of fresh) {
      const sessions = bob.rec.messages(r).map((e) => e.encryption?.sessionId);
      assert.equal(new Set(sessions).size, 2, `two sessions in ${r}: the second came with its events`);
      assert.equal(sessions[1], sessions[0]);
    }
    assert.equal(pool.stats.deciphered - before.deciphered, 6, `deciphered by the pool: ${pool.stats.deciphered - before.deciphered}, by the crypto worker: ${pool.stats.toCryptoWorker - before.toCryptoWorker}`);
    assert.equal(bob.rec.failures.length, 0);
  });

  it("a decrypt worker killed between syncs loses nothing", async () => {
    const pool = bob.client.decryptPoolForTesting!;
    await pool.terminateForTesting(0);
    await pool.terminateForTesting(1);
    await round("third", 3);
    assert.equal(bob.rec.failures.length, 0);
  });
});
