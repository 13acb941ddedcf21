/**
 * Load (real Synapse): 20 clients in this one process — each with its own crypto worker thread
 * and SQLite store — in one encrypted room, all sending at once. Every member must decrypt every
 * message (its own ones too: they come back through sync and decrypt with its own session).
 * Process RSS is sampled and reported (only a generous bound is asserted, never timing), and at
 * the end every client closes and no worker thread is left.
 *
 * Size: LOAD_CLIENTS (default 20) × LOAD_MESSAGES (default 100 per client: 2,000 messages, 40,000
 * deliveries); about 1.5 minutes on 2 cores.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import type { Dispatcher } from "undici";
import type { MatrixClient } from "../../src/index.js";
import type { SynapseHandle } from "../harness/synapse.js";
import { PASSWORD, startClient, synapse, uniqueName } from "../integration/helpers.js";
import { hasLiveWorker, mb, recordingAgent, sleep, tempDir, threadCount, waitFor, waitForProgress, type SyncLog } from "./helpers.js";

const CLIENTS = Number(process.env.LOAD_CLIENTS ?? 20);
const PER_CLIENT = Number(process.env.LOAD_MESSAGES ?? 100);

interface Member {
  client: MatrixClient;
  agent: Dispatcher;
  log: SyncLog;
  /** event ID → times decrypted */
  got: Map<string, number>;
  /** event IDs emitted as undecryptable (and not decrypted since) */
  utd: Map<string, string>;
  /** every event ID seen in a sync */
  seen: Set<string>;
}

describe(`load: ${CLIENTS} clients, ${CLIENTS * PER_CLIENT} encrypted messages in one room (real Synapse)`, { timeout: 420_000 }, () => {
  let hs: SynapseHandle;
  const members: Member[] = [];
  const outcome = { deliveries: 0, expected: 0, neverSeen: 0, limited: 0 };

  before(async () => {
    hs = await synapse();
  });
  after(async () => {
    await Promise.all(members.map((m) => m.client.close().catch(() => undefined)));
    await Promise.all(members.map((m) => m.agent.close().catch(() => undefined)));
  });

  it("every member decrypts every message; RSS stays bounded; every worker is closed at the end", async () => {
    const t0 = Date.now();
    const threadsBefore = threadCount();
    const rssBefore = process.memoryUsage().rss;
    const users = [];
    for (let i = 0; i < CLIENTS; i++) users.push(await hs.registerUser(uniqueName(`load${i}_`), PASSWORD));
    // Log in all clients (each starts its worker and opens its store), a few at a time.
    for (let i = 0; i < CLIENTS; i += 5) {
      const batch = await Promise.all(
        users.slice(i, i + 5).map(async (u) => {
          const log: SyncLog = { sinces: [], limited: 0 };
          const agent = recordingAgent(log);
          const { client } = await startClient(hs, u.userId, tempDir("sdk-load-"), { dispatcher: agent, syncTimeoutMs: 5000 });
          const m: Member = { client, agent, log, got: new Map(), utd: new Map(), seen: new Set() };
          client.on("room.event", (e) => {
            if (e.type !== "m.room.message" || !String(e.content.body).startsWith("L ")) return;
            m.seen.add(e.eventId);
            m.utd.delete(e.eventId);
            m.got.set(e.eventId, (m.got.get(e.eventId) ?? 0) + 1);
          });
          client.on("room.undecryptable", (e) => {
            m.seen.add(e.eventId);
            if (!m.got.has(e.eventId)) m.utd.set(e.eventId, e.code);
          });
          return m;
        }),
      );
      members.push(...batch);
    }
    const threadsWithClients = threadCount();
    const rssAfterLogin = process.memoryUsage().rss;
    const tLogin = Date.now();

    // One encrypted room, everybody joined.
    const creator = members[0]!;
    const room = await creator.client.createRoom({ encrypted: true, invite: users.slice(1).map((u) => u.userId) });
    await Promise.all(
      members.slice(1).map(async (m) => {
        await waitFor(() => m.client.getRooms().some((r) => r.roomId === room.roomId), "the invite", 60_000);
        await m.client.joinRoom(room.roomId);
      }),
    );
    await waitFor(async () => (await creator.client.getRoom(room.roomId).getJoinedMembers()).length === CLIENTS, "everybody to join", 60_000);
    const tRoom = Date.now();

    // Everybody sends at once.
    let peakRss = process.memoryUsage().rss;
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        peakRss = Math.max(peakRss, process.memoryUsage().rss);
        await sleep(500);
      }
    })();
    const sentIds = new Set<string>();
    await Promise.all(
      members.map(async (m, c) => {
        const r = m.client.getRoom(room.roomId);
        for (let i = 0; i < PER_CLIENT; i++) sentIds.add(await r.sendText(`L ${c} ${i}`));
      }),
    );
    const tSent = Date.now();
    const total = CLIENTS * PER_CLIENT;
    assert.equal(sentIds.size, total);
    // Wait until every member decrypted everything, or nothing moves any more for 8 s.
    const delivered = (): number => members.reduce((a, m) => a + [...m.got.keys()].filter((id) => sentIds.has(id)).length, 0);
    await waitForProgress(delivered, total * CLIENTS, 8000, 240_000);
    const tDone = Date.now();
    sampling = false;
    await sampler;
    const rssAfterTraffic = process.memoryUsage().rss;

    const deliveries = delivered();
    const duplicates = members.reduce((a, m) => a + [...m.got.values()].reduce((x, n) => x + n - 1, 0), 0);
    const utdLeft = members.reduce((a, m) => a + [...m.utd.keys()].filter((id) => sentIds.has(id)).length, 0);
    const neverSeen = members.reduce((a, m) => a + [...sentIds].filter((id) => !m.seen.has(id)).length, 0);
    const limited = members.reduce((a, m) => a + m.log.limited, 0);
    const worst = Math.min(...members.map((m) => [...m.got.keys()].filter((id) => sentIds.has(id)).length));
    outcome.deliveries = deliveries;
    outcome.expected = total * CLIENTS;
    outcome.neverSeen = neverSeen;
    outcome.limited = limited;

    // Close everything.
    const closed = await Promise.allSettled(members.map((m) => m.client.close()));
    await Promise.all(members.map((m) => m.agent.close()));
    await sleep(200);
    const threadsAfter = threadCount();
    const rssAfterClose = process.memoryUsage().rss;
    const live = members.filter((m) => hasLiveWorker(m.client)).length;

    console.log(
      `# load: ${CLIENTS} clients, ${total} messages sent in ${((tSent - tRoom) / 1000).toFixed(1)} s; deliveries ${deliveries}/${total * CLIENTS} ` +
        `(worst member ${worst}/${total}), duplicates ${duplicates}, left undecryptable ${utdLeft}, never delivered by sync ${neverSeen} (${limited} limited syncs); ` +
        `all decrypted ${((tDone - tSent) / 1000).toFixed(1)} s after the last send`,
    );
    console.log(
      `# load timings: login ${((tLogin - t0) / 1000).toFixed(1)} s, room ${((tRoom - tLogin) / 1000).toFixed(1)} s, sending ${((tSent - tRoom) / 1000).toFixed(1)} s, total ${((Date.now() - t0) / 1000).toFixed(1)} s; ` +
        `RSS MB: before ${mb(rssBefore)}, after login ${mb(rssAfterLogin)}, peak ${mb(peakRss)}, after traffic ${mb(rssAfterTraffic)}, after close ${mb(rssAfterClose)}; ` +
        `threads: before ${threadsBefore}, with clients ${threadsWithClients}, after close ${threadsAfter}`,
    );

    assert.deepEqual(closed.filter((c) => c.status === "rejected"), [], "a client failed to close");
    assert.equal(live, 0, "a crypto worker is still alive after close()");
    if (threadsBefore !== null && threadsAfter !== null && threadsWithClients !== null) {
      assert.ok(threadsWithClients >= threadsBefore + CLIENTS, `expected ≥ ${CLIENTS} worker threads, saw ${threadsWithClients - threadsBefore}`);
      assert.ok(threadsAfter <= threadsBefore + 4, `threads left after close: ${threadsAfter} (before ${threadsBefore})`);
    }
    assert.ok(peakRss - rssBefore < 1.5 * 1024 ** 3, `RSS grew by ${mb(peakRss - rssBefore)} MB`);
    assert.equal(utdLeft, 0, "events a member saw were left undecryptable");
    assert.equal(duplicates, 0, "an event was emitted twice");
  });

  it(
    "no member misses a message because its sync fell behind (limited timelines are back-filled)",
    () => {
      assert.ok(outcome.expected > 0, "the previous test did not run");
      assert.equal(outcome.deliveries, outcome.expected, `${outcome.neverSeen} deliveries never happened (${outcome.limited} limited syncs)`);
    },
  );
});
