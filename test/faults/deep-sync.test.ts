/**
 * Poison-pill syncs: a `/sync` whose crypto parts (device lists, one-time key counts, fallback key
 * types, to-device events) are nested 100,000 levels deep cannot be serialised for the worker
 * (`JSON.stringify` and structured clone overflow the stack). Such a part is dropped and logged,
 * the rest of the sync is processed and committed, and the next `/sync` asks from its token, so
 * the same batch is not fetched forever. Real client and worker, scripted fake homeserver.
 *
 * (Next to `hostile-input.test.ts`, which is at the file-size limit.)
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import type { MatrixClient } from "../../src/index.js";
import { FakeHomeserver, FAKE_SERVER_NAME, joinedRoom, memberEvent } from "./fakeServer.js";
import { ClientEvents, LogCapture, fakeClient, waitFor } from "./helpers.js";

type Json = Record<string, unknown>;

const ME = `@me:${FAKE_SERVER_NAME}`;
const PEER = `@peer:${FAKE_SERVER_NAME}`;
const ROOM = `!plain:${FAKE_SERVER_NAME}`;
const DEPTH = 100_000;
/** A JSON value nested DEPTH levels deep (JSON.parse takes it; JSON.stringify cannot). */
const DEEP = '{"a":'.repeat(DEPTH) + "1" + "}".repeat(DEPTH);
const MARK = "__DEEP__";

describe("syncs with parts nested 100,000 levels deep are processed, the bad part dropped and logged", { timeout: 120_000 }, () => {
  const logs = new LogCapture();
  let fake: FakeHomeserver;
  let client: MatrixClient;
  let ev: ClientEvents;
  let n = 0;

  before(async () => {
    fake = new FakeHomeserver(ME);
    client = fakeClient(fake, logs);
    ev = new ClientEvents(client);
    await client.login(ME, "pw");
    client.start();
    const idx = fake.queueSync({ rooms: { join: { [ROOM]: joinedRoom([memberEvent(ME, "join", fake.eventId("m")), memberEvent(PEER, "join", fake.eventId("m"))]) } } });
    await waitFor(() => ev.syncs.includes(FakeHomeserver.tokenAfter(idx)), "the first sync");
  });

  after(async () => {
    await client?.close();
    await fake?.close();
  });

  /**
   * Serve one batch with a clear room message and a clear to-device event, changed by `poison` to
   * carry the deep value (MARK stands for it); check those two are emitted, the token advances,
   * the batch is served once and the warning names `dropped`.
   */
  async function poisonPill(poison: (body: { device_lists?: Json; to_device: { events: Json[] }; state: Json[]; [k: string]: unknown }) => void, dropped: string): Promise<void> {
    const tag = `case ${++n}`;
    const idx = fake.batchCount;
    const token = FakeHomeserver.tokenAfter(idx);
    const message = { type: "m.room.message", event_id: fake.eventId(), sender: PEER, origin_server_ts: Date.now(), content: { msgtype: "m.text", body: `next to ${tag}` } };
    const parts = { to_device: { events: [{ type: "org.example.ping", sender: PEER, content: { tag } }] as Json[] }, state: [] as Json[] };
    poison(parts);
    const { state, ...rest } = parts;
    const body = { ...rest, next_batch: token, rooms: { join: { [ROOM]: joinedRoom(state, [message]) } } };
    fake.queueSync({ rawBody: JSON.stringify(body).replaceAll(`"${MARK}"`, DEEP) });
    await waitFor(() => ev.syncs.includes(token), `the sync with a deep ${dropped} to be processed (a batch that fails is re-served forever)`, 15_000);
    const isSyncFrom = (path: string): boolean => {
      const u = new URL(path, "https://x");
      return u.pathname === "/_matrix/client/v3/sync" && u.searchParams.get("since") === token;
    };
    await waitFor(() => fake.calls.some((c) => c.method === "GET" && isSyncFrom(c.path)), `a /sync from ${token}`);
    assert.equal(fake.served.get(idx), 1, "the batch was served more than once");
    assert.equal(fake.rerequested.has(idx), false);
    assert.deepEqual(
      ev.events.filter((e) => e.content.body === `next to ${tag}`).map((e) => e.roomId),
      [ROOM],
      "the sync's room message was not emitted once",
    );
    assert.deepEqual(
      ev.toDevice.filter((t) => t.type === "org.example.ping" && t.content.tag === tag).map((t) => t.sender),
      [PEER],
      "the sync's clear to-device event was not emitted once",
    );
    const expected = `W dropped ${dropped} of sync ${token}: it cannot be serialised (reason: unserializable)`;
    assert.equal(logs.lines.filter((l) => l === expected).length, 1, `no warning "${expected}"; warnings: ${JSON.stringify(logs.lines.filter((l) => l.startsWith("W ")).slice(-5))}`);
  }

  it("a deep entry in device_lists.changed", async () => {
    await poisonPill((b) => (b.device_lists = { changed: [PEER, MARK], left: [] }), "device_lists.changed[1]");
  });

  it("a deep device_lists.left", async () => {
    await poisonPill((b) => (b.device_lists = { changed: [], left: MARK }), "device_lists.left.a");
  });

  it("a deep device_one_time_keys_count entry", async () => {
    await poisonPill((b) => (b.device_one_time_keys_count = { signed_curve25519: 50, evil: MARK }), "device_one_time_keys_count.evil");
  });

  it("a deep device_unused_fallback_key_types", async () => {
    await poisonPill((b) => (b.device_unused_fallback_key_types = ["signed_curve25519", MARK]), "device_unused_fallback_key_types[1]");
  });

  it("a deep to-device event", async () => {
    await poisonPill((b) => b.to_device.events.unshift({ type: "m.room.encrypted", sender: PEER, content: MARK }), "to_device.events[0]");
  });

  it("a deep state event of a room", async () => {
    await poisonPill((b) => b.state.push({ type: "m.room.member", state_key: PEER, sender: PEER, event_id: "$deepstate", content: MARK }), `rooms.join.${ROOM}.state[0]`);
  });

  it("the client still syncs afterwards and the worker never crashed", async () => {
    const idx = fake.queueSync({ to_device: { events: [{ type: "org.example.ping", sender: PEER, content: { tag: "final" } }] } });
    await waitFor(() => ev.syncs.includes(FakeHomeserver.tokenAfter(idx)), "a good sync after the deep ones");
    assert.equal(ev.crashed, 0);
    assert.deepEqual([...fake.rerequested], []);
  });
});
