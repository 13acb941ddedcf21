/**
 * The crypto worker dies in the middle of a key backup upload (real Synapse): the server got the
 * batch, the worker never learnt it. After the restart the unconfirmed sessions are uploaded
 * again, and every session ends up in the backup exactly once.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { Agent } from "undici";
import type { MatrixClient } from "../../src/index.js";
import type { SynapseHandle } from "../harness/synapse.js";
import { PASSWORD, startClient, synapse, tempDir, uniqueName, waitUntil } from "../integration/helpers.js";

describe("key backup: a worker crash during an upload", { timeout: 180_000 }, () => {
  let hs: SynapseHandle;
  let client: MatrixClient | null = null;
  before(async () => {
    hs = await synapse();
  });
  after(async () => {
    await client?.close();
  });

  it("after the restart every session ends up in the backup once", async () => {
    const alice = (await hs.registerUser(uniqueName("bkcrash"), PASSWORD)).userId;
    let puts = 0;
    let crashed = false;
    // Kill the worker as the first upload leaves: the server stores the batch, the worker never marks it.
    const dispatcher = new Agent().compose((dispatch) => (opts, handler) => {
      if (opts.method === "PUT" && String(opts.path).startsWith("/_matrix/client/v3/room_keys/keys")) {
        puts++;
        if (!crashed && client) {
          crashed = true;
          void client.cryptoHostForTesting!.api.crashForTesting("exit").catch(() => undefined);
        }
      }
      return dispatch(opts, handler);
    });
    const started = await startClient(hs, alice, tempDir(), { dispatcher });
    client = started.client;
    let restarts = 0;
    client.on("crypto.workerRestarted", () => restarts++);
    client.on("error", () => undefined);
    const sessions = 3;
    for (let i = 0; i < sessions; i++) await (await client.createRoom({ encrypted: true })).sendText(`message ${i}`);
    const info = await client.enableKeyBackup();
    const c = client;
    const serverCount = async (): Promise<number> => {
      const res = await fetch(`${hs.baseUrl}/_matrix/client/v3/room_keys/version/${info.version}`, { headers: { authorization: `Bearer ${c.accessToken}` } });
      return ((await res.json()) as { count: number }).count;
    };
    const remaining = async (): Promise<number> => {
      try {
        return (await c.cryptoHostForTesting!.api.keyBackupStatus(null)).remaining;
      } catch {
        return -1; // the worker is restarting
      }
    };
    await waitUntil(async () => restarts > 0 && (await remaining()) === 0, "every session confirmed after the restart", 60_000);
    assert.equal(crashed, true);
    assert.ok(puts >= 2, `the unconfirmed batch went out again (${puts} uploads)`);
    assert.equal(await serverCount(), sessions, "each session once in the backup");
    const keys = (await (await fetch(`${hs.baseUrl}/_matrix/client/v3/room_keys/keys?version=${info.version}`, { headers: { authorization: `Bearer ${c.accessToken}` } })).json()) as { rooms: Record<string, { sessions: Record<string, unknown> }> };
    assert.equal(Object.values(keys.rooms).reduce((n, r) => n + Object.keys(r.sessions).length, 0), sessions);
  });
});
