/**
 * What a sync's decryption reads from the store beyond the sessions: rooms whose events all
 * decrypt cost no count of the waiting events, and one sync counts them at most once.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { KeyServer, Peer, roomState } from "./helpers.js";

type Json = Record<string, unknown>;

describe("engine: per-sync store reads of decryption", () => {
  it("a sync whose events all decrypt does not count the waiting events; one with failures in several rooms counts them once", async () => {
    const server = new KeyServer();
    const alice = await Peer.create(server, "@alice:example.org", "A");
    const bob = await Peer.create(server, "@bob:example.org", "B");
    const rooms = Array.from({ length: 20 }, (_, i) => `!r${i}:example.org`);
    for (const p of [alice, bob]) {
      await p.sync({ rooms: rooms.map((r) => roomState(r, { [alice.userId]: "join", [bob.userId]: "join" })) });
      await p.flush();
    }
    const events: { roomId: string; events: Json[] }[] = [];
    for (const r of rooms) events.push({ roomId: r, events: [await alice.encrypt(r, `hello ${r}`, `$e${r}`)] });
    const sync = await bob.sync();
    let counts = 0;
    const orig = bob.store.countPendingEvents.bind(bob.store);
    bob.store.countPendingEvents = () => {
      counts++;
      return orig();
    };
    const ok = bob.engine.decryptSyncTimelines(events);
    assert.ok(ok.every((b) => b.results.every((r) => r.ok)));
    assert.equal(counts, 0, "rooms whose events decrypt counted the waiting events");
    await bob.engine.commitSyncToken("s1", sync.batchId);

    // Events of unknown sessions in every room: they wait, and the count is read once for the sync.
    const unknown = rooms.map((r) => ({ roomId: r, events: [{ type: "m.room.encrypted", event_id: `$u${r}`, sender: alice.userId, origin_server_ts: 1, content: { algorithm: "m.megolm.v1.aes-sha2", sender_key: alice.curve25519, session_id: "unknownsession", ciphertext: "AwgA", device_id: "A" } }] }));
    const sync2 = await bob.sync();
    bob.engine.decryptSyncTimelines(unknown);
    await bob.engine.commitSyncToken("s2", sync2.batchId);
    assert.equal(counts, 1);
    assert.equal(orig(), rooms.length, "every undecryptable event waits for its key");
  });
});
