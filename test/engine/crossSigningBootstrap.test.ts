/**
 * Bootstrapping cross-signing in the engine: the prepared keys are not our identity until the
 * server accepted their upload (commit), a failed upload (discard) leaves the stored identity
 * byte-for-byte as it was, and a crash between the accepted upload and the commit is repaired by
 * the next `/keys/query` (regression tests for "a failed bootstrapCrossSigning changes the local
 * identity").
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import type { CrossSigningBootstrap } from "../../src/protocol/api.js";
import { InvalidArgumentError } from "../../src/protocol/errors.js";
import { KeyServer, Peer } from "./helpers.js";

/** The stored cross-signing state of `p`'s own user, as raw store values. */
function storedIdentity(p: Peer): (string | null)[] {
  return ["xsign:seeds", `xsign:pin:${p.userId}`, `xsign:identity:${p.userId}`, `xsign:verified:${p.userId}`].map((k) => p.store.getValue(k));
}

/** A `/keys/query` answer publishing the cross-signing keys of a bootstrap for `userId`. */
function queryAnswer(userId: string, boot: CrossSigningBootstrap): string {
  const up = boot.deviceSigningUpload;
  return JSON.stringify({ device_keys: {}, failures: {}, master_keys: { [userId]: up.master_key }, self_signing_keys: { [userId]: up.self_signing_key }, user_signing_keys: { [userId]: up.user_signing_key } });
}

/** A peer whose first cross-signing identity was prepared, accepted and committed. */
async function bootstrapped(): Promise<{ p: Peer; first: CrossSigningBootstrap }> {
  const p = await Peer.create(new KeyServer(), "@alice:example.org", "ADEV");
  const first = await p.engine.prepareCrossSigning();
  await p.engine.commitCrossSigning(first.masterKey);
  await p.engine.markRequestAsSent("q1", "keys_query", queryAnswer(p.userId, first));
  return { p, first };
}

describe("engine: cross-signing bootstrap commits only what the server accepted", () => {
  it("preparing new keys and discarding them after a failed upload leaves the stored identity byte-for-byte unchanged", async () => {
    const { p, first } = await bootstrapped();
    const before = storedIdentity(p);
    const identityBefore = p.engine.getUserIdentity(p.userId);
    assert.deepEqual(identityBefore, { userId: p.userId, masterKey: first.masterKey, pinnedMasterKey: first.masterKey, changed: false, verified: true });

    const second = await p.engine.prepareCrossSigning();
    assert.notEqual(second.masterKey, first.masterKey);
    assert.deepEqual(storedIdentity(p), before, "preparing must not touch the identity");
    assert.deepEqual(p.engine.getUserIdentity(p.userId), identityBefore);
    await p.engine.discardCrossSigning();
    assert.deepEqual(storedIdentity(p), before);
    assert.equal(p.store.getValue("xsign:pending"), null);

    // The server still publishes the first identity: nothing to report.
    const { identityChanges } = await p.engine.markRequestAsSent("q2", "keys_query", queryAnswer(p.userId, first));
    assert.deepEqual(identityChanges, []);
    assert.deepEqual(p.engine.getUserIdentity(p.userId), identityBefore);
    // Discarded keys cannot be committed any more.
    await assert.rejects(p.engine.commitCrossSigning(second.masterKey), InvalidArgumentError);
    assert.deepEqual(storedIdentity(p), before);
  });

  it("commit refuses a master key that is not the prepared one (typed error, nothing changed)", async () => {
    const { p } = await bootstrapped();
    const before = storedIdentity(p);
    await p.engine.prepareCrossSigning();
    await assert.rejects(p.engine.commitCrossSigning("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"), InvalidArgumentError);
    assert.deepEqual(storedIdentity(p), before);
  });

  it("after a crash between the accepted upload and the commit, the /keys/query publishing the pending keys makes them our identity without reporting a change", async () => {
    const { p, first } = await bootstrapped();
    const second = await p.engine.prepareCrossSigning();
    // The upload succeeded, then the worker died before commitCrossSigning: a new engine on the same store.
    const restarted = await Peer.create(p.server, p.userId, p.deviceId, p.store);
    assert.equal(restarted.engine.getUserIdentity(p.userId).masterKey, first.masterKey);
    const { identityChanges } = await restarted.engine.markRequestAsSent("q3", "keys_query", queryAnswer(p.userId, second));
    assert.deepEqual(identityChanges, []);
    assert.deepEqual(restarted.engine.getUserIdentity(p.userId), { userId: p.userId, masterKey: second.masterKey, pinnedMasterKey: second.masterKey, changed: false, verified: true });
    assert.equal(p.store.getValue("xsign:pending"), null);
  });
});
