/**
 * An engine replaced by a new one over the same store (what a crypto worker restart does): work
 * whose requests the old engine handed out is resumed, not lost.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { KeyServer, Peer, roomState } from "./helpers.js";

const ROOM = "!restart:example.org";

describe("engine: restart with requests in flight", () => {
  it("a channel repair (unwedging claim) handed out before a restart is done by the new engine: the peer gets the m.dummy", async () => {
    const server = new KeyServer();
    const alice = await Peer.create(server, "@alice:example.org", "A");
    const bob = await Peer.create(server, "@bob:example.org", "B");
    const members = { [alice.userId]: "join", [bob.userId]: "join" };
    for (const p of [alice, bob]) {
      await p.sync({ rooms: [roomState(ROOM, members)] });
      await p.flush();
    }
    await alice.encrypt(ROOM, "hi", "$1");
    await bob.sync();
    await alice.sync();
    const garbage = { type: "m.room.encrypted", sender: alice.userId, content: { algorithm: "m.olm.v1.curve25519-aes-sha2", sender_key: alice.curve25519, ciphertext: { [bob.curve25519]: { type: 1, body: "AwogAAAA" } } } };
    const r = await bob.sync({ toDevice: [garbage] });
    assert.equal(r.toDeviceFailures[0]!.code, "olm_no_session");
    // The repair's claim is handed out; the engine dies before its answer comes back.
    const claims = (await bob.engine.outgoingRequests()).filter((x) => x.kind === "keys_claim");
    assert.equal(claims.length, 1);

    // A new engine over the same store (Peer.create runs its outgoing requests to the end).
    const restarted = await Peer.create(server, bob.userId, bob.deviceId, bob.store);
    const got = await alice.sync();
    assert.deepEqual(got.toDevice.map((t) => t.type), ["m.dummy"], "the restarted engine did not finish the repair");
    assert.deepEqual(await restarted.engine.outgoingRequests(), [], "the repair is done once");
  });
});
