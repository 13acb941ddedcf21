import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { KeyServer, Peer } from "../helpers.js";
import { OlmPeer, initOlm } from "../../support/olmPeer.js";

describe("engine: one-time keys are never published beyond what the account keeps", () => {
  it("stale sync counts (computed before our upload) never make the server hold keys whose private half libolm dropped", async () => {
    await initOlm();
    const server = new KeyServer();
    const alice = await Peer.create(server, "@alice:example.org", "A1");
    const pool = server.otks.get(`${alice.userId}|A1`)!;
    assert.equal(pool.size, 50);
    // Syncs whose counts were computed before the uploads they cross.
    for (let i = 0; i < 4; i++) {
      await alice.sync({ oneTimeKeyCounts: { signed_curve25519: 0 } });
      await alice.flush();
    }
    assert.ok(pool.size <= 100, `the server holds ${pool.size} one-time keys; libolm keeps at most 100`);
    // Every key the server hands out still opens an Olm channel to Alice.
    const bob = new OlmPeer("@bob:example.org", "B1");
    const to = { userId: alice.userId, deviceId: "A1", curve25519: alice.curve25519, ed25519: alice.ed25519 };
    const events = [...pool.values()].map((k) => {
      bob.openSession(to, k.key as string, true);
      return bob.olmToDevice(to, "m.dummy", {});
    });
    const res = await alice.sync({ toDevice: events, oneTimeKeyCounts: { signed_curve25519: 0 } });
    assert.deepEqual(res.toDeviceFailures.map((f) => f.code), []);
    assert.equal(res.toDevice.filter((e) => e.type === "m.dummy").length, events.length);
    bob.free();
  });
});
