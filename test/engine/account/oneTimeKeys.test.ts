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

  it("a sync requested before our upload was answered (keyCountsStale) does not publish a second batch (the server keeps the target, not 95)", async () => {
    await initOlm();
    const server = new KeyServer();
    const alice = await Peer.create(server, "@alice:example.org", "A1");
    const pool = server.otks.get(`${alice.userId}|A1`)!;
    const claim = (n: number): void => {
      for (const id of [...pool.keys()].slice(0, n)) pool.delete(id);
    };
    await alice.sync({ oneTimeKeyCounts: { signed_curve25519: pool.size } });
    await alice.flush();
    assert.equal(pool.size, 50);
    for (const claimed of [45, 10, 50]) {
      claim(claimed);
      const before: number = pool.size;
      // A sync reports the drained count: Alice tops the server up to the target.
      await alice.sync({ oneTimeKeyCounts: { signed_curve25519: before } });
      await alice.flush();
      assert.equal(pool.size, 50);
      // The sync that was already requested when the upload went out still says `before`.
      await alice.sync({ oneTimeKeyCounts: { signed_curve25519: before } }, { keyCountsStale: true });
      await alice.flush();
      assert.equal(pool.size, 50, `after a stale count of ${before}, the server holds ${pool.size} one-time keys`);
      // Later syncs report what the server really holds.
      await alice.sync({ oneTimeKeyCounts: { signed_curve25519: pool.size } });
      await alice.flush();
      assert.equal(pool.size, 50);
    }
  });
});
