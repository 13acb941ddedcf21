/**
 * Secret sharing between our own devices through a real Synapse: a new device verified by emoji
 * with our first device asks for our secrets and receives the cross-signing keys and the backup
 * key over `m.secret.send`, without the recovery key.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import type { MatrixClient, VerificationRequest } from "../../src/index.js";
import type { SynapseHandle } from "../harness/synapse.js";
import { PASSWORD, runSas, startClient, synapse, tempDir, uniqueName, waitUntil } from "./helpers.js";

describe("secret sharing between our own devices (real Synapse)", { timeout: 240_000 }, () => {
  let hs: SynapseHandle;
  const clients: MatrixClient[] = [];
  before(async () => {
    hs = await synapse();
  });
  after(async () => {
    await Promise.all(clients.map((c) => c.close()));
  });

  it("a device verified by emoji with our first device receives the cross-signing keys and the backup key", async () => {
    const alice = (await hs.registerUser(uniqueName("ssalice"), PASSWORD)).userId;
    const a1 = await startClient(hs, alice, tempDir());
    clients.push(a1.client);
    await a1.client.setupRecovery({ password: PASSWORD });
    const a2 = await startClient(hs, alice, tempDir());
    clients.push(a2.client);
    await waitUntil(async () => {
      await a1.client.refreshUserKeys(alice);
      await a2.client.refreshUserKeys(alice);
      return (await a1.client.getDevice(alice, a2.client.deviceId!)) !== null && (await a2.client.getDevice(alice, a1.client.deviceId!)) !== null;
    }, "the two devices seeing each other");
    const info = (await (await fetch(`${hs.baseUrl}/_matrix/client/v3/room_keys/version`, { headers: { authorization: `Bearer ${a2.client.accessToken}` } })).json()) as Record<string, unknown>;
    const api = (): NonNullable<MatrixClient["cryptoHostForTesting"]>["api"] => a2.client.cryptoHostForTesting!.api;
    assert.equal((await api().keyBackupStatus(info)).trust!.matchesKey, false, "the new device holds no backup key");

    const theirs = new Promise<VerificationRequest>((resolve) => a1.client.once("verification.request", resolve));
    await runSas(await a2.client.requestVerification(alice, a1.client.deviceId!), theirs);
    await waitUntil(async () => (await api().keyBackupStatus(info)).trust!.matchesKey, "the backup key over m.secret.send", 60_000);
    // Nothing left to ask for: the three cross-signing keys arrived too (and matched our identity).
    assert.deepEqual(await api().requestSecrets(), []);
    const backup = await a2.client.enableKeyBackup();
    assert.deepEqual([backup.created, backup.trust.matchesKey], [false, true]);
  });
});
