/**
 * A `/keys/query` answer that leaves a user out (their server failed, or the user does not exist):
 * sends go on without asking for them again and again, and they are asked for again later.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { KeyServer, Peer, roomState } from "./helpers.js";
import { FAILED_QUERY_RETRY_MS } from "../../workers/engine/identities/DeviceTracker.js";

const ROOM = "!room:example.org";
const CAROL = "@carol:unreachable.example";

describe("engine: users a keys/query answer left out", () => {
  it("are not queried again at every send; the send proceeds to the others and they are asked for again after the back-off", async () => {
    const server = new KeyServer();
    const clock = { t: Date.UTC(2026, 0, 1) };
    const alice = await Peer.create(server, "@alice:example.org", "A", undefined, { now: () => clock.t });
    const bob = await Peer.create(server, "@bob:example.org", "B");
    // Carol is a member whose server never answers: the KeyServer leaves her out of every answer.
    await alice.sync({ rooms: [roomState(ROOM, { [alice.userId]: "join", [bob.userId]: "join", [CAROL]: "join" })] });
    await bob.sync({ rooms: [roomState(ROOM, { [alice.userId]: "join", [bob.userId]: "join", [CAROL]: "join" })] });
    await alice.flush();
    await bob.flush();

    const queriesFor = async (): Promise<string[][]> => {
      const asked: string[][] = [];
      for (let i = 0; i < 4; i++) {
        const step = await alice.engine.prepareRoomKeyShare(ROOM, false);
        if (step.ready) break;
        if (step.request.kind === "keys_query") asked.push(Object.keys((JSON.parse(step.request.body) as { device_keys: Record<string, unknown> }).device_keys));
        await alice.send(step.request);
      }
      return asked;
    };
    const first = await queriesFor();
    assert.ok(first.flat().includes(CAROL) || first.length === 0, "the first send may ask for Carol once");
    const ev = await alice.encrypt(ROOM, "to Bob", "$1");
    assert.deepEqual(await queriesFor(), [], "the next send asked for Carol again although her server just failed");
    await bob.sync();
    const got = await bob.engine.decryptRoomEvents(ROOM, [ev]);
    assert.equal(got[0]?.ok, true, "Bob decrypts the message sent while Carol's devices are unknown");
    assert.deepEqual(await alice.engine.outgoingRequests().then((rs) => rs.filter((r) => r.kind === "keys_query")), [], "the outgoing loop asks for Carol again too");

    clock.t += FAILED_QUERY_RETRY_MS;
    const later = await queriesFor();
    assert.deepEqual(later, [[CAROL]], "after the back-off Carol is asked for again, once");
  });
});
