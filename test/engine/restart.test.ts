/**
 * An engine replaced by a new one over the same store (what a crypto worker restart does): work
 * whose requests the old engine handed out is resumed, not lost.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { Peer, pairInRoom, wedgedOlmEvent } from "./helpers.js";

const ROOM = "!restart:example.org";

describe("engine: restart with requests in flight", () => {
  it("a channel repair (unwedging claim) handed out before a restart is done by the new engine: the peer gets the m.dummy", async () => {
    const { server, alice, bob } = await pairInRoom(ROOM);
    await alice.encrypt(ROOM, "hi", "$1");
    await bob.sync();
    await alice.sync();
    const garbage = wedgedOlmEvent(alice, bob);
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
