/**
 * State that survives a restart (issue 16 item 5), through a real Synapse: a plain bot (encryption
 * off) answers `!ping`, is closed and started again with the same state folder; it does not
 * answer the old command again, `getRooms()` has the room right after login (before any sync),
 * it answers a new command, and the application's key-value store kept its value. An encrypted
 * client's joined rooms (and their encryption) are back after a restart too.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import type { MatrixClient } from "../../src/index.js";
import type { SynapseHandle } from "../harness/synapse.js";
import { PASSWORD, Recorder, startClient, synapse, tempDir, uniqueName } from "./helpers.js";

describe("client state across restarts (real Synapse)", { timeout: 180_000 }, () => {
  let hs: SynapseHandle;
  const users: Record<string, string> = {};
  const clients: MatrixClient[] = [];
  let alice: { client: MatrixClient; rec: Recorder };
  const botDir = tempDir("sdk-plainbot-");
  let roomId = "";

  /** The bot: answers every `!ping` with `pong <event ID>`; returns the commands it answered. */
  async function startBot(): Promise<{ client: MatrixClient; answered: string[] }> {
    const bot = await startClient(hs, users.bot!, botDir, { encryption: false, noStart: true });
    clients.push(bot.client);
    const answered: string[] = [];
    bot.client.on("room.event", (ev) => {
      if (ev.type === "m.room.message" && ev.sender !== users.bot && typeof ev.content.body === "string" && ev.content.body.startsWith("!ping")) {
        answered.push(ev.content.body);
        void bot.client.getRoom(ev.roomId).sendText(`pong ${ev.content.body}`);
      }
    });
    return { client: bot.client, answered };
  }

  before(async () => {
    hs = await synapse();
    for (const name of ["alice", "bot"]) users[name] = (await hs.registerUser(uniqueName(name), PASSWORD)).userId;
    alice = await startClient(hs, users.alice!, tempDir("sdk-alice-"), { encryption: false });
    clients.push(alice.client);
  });

  after(async () => {
    await Promise.all(clients.map((c) => c.close()));
  });

  it("a plain bot restarted does not re-answer old commands, has its rooms at once, keeps its storage", async () => {
    const room = await alice.client.createRoom({ invite: [users.bot!] });
    roomId = room.roomId;
    const first = await startBot();
    await first.client.joinRoom(roomId);
    await room.sendText("!ping 1");
    first.client.start();
    await alice.rec.waitFor(() => alice.rec.bodies(roomId).includes("pong !ping 1"), "the bot's first answer");
    first.client.storage.set("answered", "1");
    await first.client.close();

    const second = await startBot();
    assert.deepEqual(second.client.getRooms().map((r) => r.roomId), [roomId], "rooms before the first sync");
    assert.equal(second.client.getRoom(roomId).members.get(users.alice!), "join");
    assert.equal(second.client.getRoom(roomId).encrypted, false);
    assert.equal(second.client.storage.get("answered"), "1");
    await second.client.syncOnce();
    await room.sendText("!ping 2");
    second.client.start();
    await alice.rec.waitFor(() => alice.rec.bodies(roomId).includes("pong !ping 2"), "the bot's answer after the restart");
    await second.client.stop();
    assert.deepEqual(second.answered, ["!ping 2"]);
    assert.deepEqual(alice.rec.bodies(roomId).filter((b) => b.startsWith("pong")), ["pong !ping 1", "pong !ping 2"]);
  });

  it("an encrypted client's joined rooms and their encryption are back right after a restart", async () => {
    const dir = tempDir("sdk-encbot-");
    const enc = await startClient(hs, users.alice!, dir, { noStart: true, restoreDeviceId: true });
    clients.push(enc.client);
    const room = await enc.client.createRoom({ encrypted: true });
    await enc.client.syncOnce();
    await enc.client.close();
    const again = await startClient(hs, users.alice!, dir, { noStart: true, restoreDeviceId: true });
    clients.push(again.client);
    const restored = again.client.getRooms().find((r) => r.roomId === room.roomId);
    assert.equal(restored?.encrypted, true);
    assert.equal(restored.encryption?.algorithm, "m.megolm.v1.aes-sha2");
  });
});
