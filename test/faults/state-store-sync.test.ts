/**
 * The client state store's write of a sync does not wait for the disk on the main thread when
 * there is a crypto worker: the main thread writes it to the WAL file without a sync, and the
 * crypto worker syncs that file before it commits the sync's token (so the state store is never
 * behind the token the client resumes from). Fake homeserver, real worker, real SQLite files.
 */
import { after, describe, it } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { ClientStateStore } from "../../src/client/state/ClientStateStore.js";
import { stateStorePath } from "../../src/client/options.js";
import { FakeHomeserver, FAKE_SERVER_NAME, joinedRoom, memberEvent } from "./fakeServer.js";
import { ClientEvents, LogCapture, fakeClient, waitFor } from "./helpers.js";

const ME = `@me:${FAKE_SERVER_NAME}`;

describe("client state store: the sync's write is synced by the crypto worker before the token", { timeout: 60_000 }, () => {
  const logs = new LogCapture();
  const cleanup: (() => Promise<void>)[] = [];
  after(async () => {
    for (const c of cleanup.reverse()) await c().catch(() => undefined);
  });

  it("every token commit names the state store's WAL file, which holds the sync's token by then", async () => {
    const fake = new FakeHomeserver(ME);
    const client = fakeClient(fake, logs);
    cleanup.push(async () => {
      await client.close();
      await fake.close();
    });
    const path = stateStorePath((client as unknown as { opts: Parameters<typeof stateStorePath>[0] }).opts);
    await client.login(ME, "pw");
    const host = client.cryptoHostForTesting!;
    const commits: { token: unknown; syncFirst: unknown; stateToken: string | null }[] = [];
    const orig = host.call.bind(host);
    host.call = async (m: string, args: unknown[]) => {
      if (m === "commitSyncToken") {
        // What another connection reads at this moment: the state store's write came first.
        const peek = ClientStateStore.open(path, ME);
        commits.push({ token: args[0], syncFirst: args[2], stateToken: peek.syncToken() });
        peek.close();
      }
      return orig(m, args);
    };
    const ev = new ClientEvents(client);
    client.start();
    const room = `!r:${FAKE_SERVER_NAME}`;
    const token = FakeHomeserver.tokenAfter(fake.queueSync({ rooms: { join: { [room]: joinedRoom([memberEvent(ME, "join", "$m1")]) } } }));
    await waitFor(() => ev.syncs.includes(token), "the sync to be processed");
    await client.stop();
    const mine = commits.find((c) => c.token === token);
    assert.ok(mine, `a commit of ${token} (got ${commits.map((c) => String(c.token)).join(", ")})`);
    assert.deepEqual(mine.syncFirst, [`${path}-wal`]);
    assert.equal(mine.stateToken, token);
    assert.ok(existsSync(`${path}-wal`));
    assert.ok(commits.every((c) => Array.isArray(c.syncFirst) && c.syncFirst[0] === `${path}-wal`), "every sync's commit syncs the state store first");
  });
});
