/**
 * A big sync's events are emitted in slices (at most 200 events, or 2 ms, per task): the
 * application's timers and I/O run between slices, and the events still come in order, each
 * once. A client with encryption off on a scripted fake homeserver (undici MockAgent).
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { MatrixClient } from "../../src/index.js";
import { FAKE_ORIGIN, FAKE_SERVER_NAME, FakeHomeserver, joinedRoom, memberEvent } from "../faults/fakeServer.js";

const ME = `@me:${FAKE_SERVER_NAME}`;
const ROOMS = [`!a:${FAKE_SERVER_NAME}`, `!b:${FAKE_SERVER_NAME}`];

describe("sync event emission in slices", () => {
  let fake: FakeHomeserver;
  let client: MatrixClient;

  before(async () => {
    fake = new FakeHomeserver(ME);
    client = new MatrixClient(FAKE_ORIGIN, { dispatcher: fake.agent, stateStore: { inMemory: true } });
    await client.login(ME, "pw");
  });

  after(async () => {
    await client?.close();
    await fake?.close();
  });

  it("1,000 events of one sync: other tasks run between slices; order and count are kept", async () => {
    const message = (roomId: string, n: number) => ({ type: "m.room.message", event_id: `$${roomId.slice(1, 2)}${n}`, sender: ME, origin_server_ts: n, content: { msgtype: "m.text", body: `${n}` } });
    fake.queueSync({
      rooms: { join: Object.fromEntries(ROOMS.map((r) => [r, joinedRoom([memberEvent(ME, "join", `$m${r.slice(1, 2)}`)], Array.from({ length: 500 }, (_, n) => message(r, n)))])) },
    });
    const got: string[] = [];
    const between: number[] = []; // how many events were out when another task got to run
    let probing = true;
    const probe = (): void => {
      between.push(got.length);
      if (probing) setImmediate(probe);
    };
    client.on("room.event", (e) => {
      if (e.type !== "m.room.message") return;
      if (got.length === 0) setImmediate(probe); // from the first event on, a task asks for its turn
      got.push(`${e.roomId} ${String(e.content.body)}`);
    });
    await client.syncOnce();
    probing = false;
    assert.deepEqual(got, ROOMS.flatMap((r) => Array.from({ length: 500 }, (_, n) => `${r} ${n}`)), "every event once, in order");
    const during = between.filter((n) => n > 0 && n < 1000);
    assert.ok(during.length >= 4, `other tasks ran ${during.length} times while the sync's 1,000 events were emitted (want at least 4 slices)`);
  });
});
