/**
 * The `autoJoin` option (every invite, or an allow-list callback) and the example command bot
 * (`examples/command-bot.ts`, run as its own process) through a real Synapse.
 */
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";
import { after, before, describe, it } from "node:test";
import type { MatrixClient, RoomEvent } from "../../src/index.js";
import type { SynapseHandle } from "../harness/synapse.js";
import { PASSWORD, type Recorder, startClient, synapse, tempDir, uniqueName, waitUntil } from "./helpers.js";

describe("autoJoin and the command bot example", { timeout: 300_000 }, () => {
  let hs: SynapseHandle;
  let alice: { client: MatrixClient; rec: Recorder };
  let carol: { client: MatrixClient; rec: Recorder };
  const others: MatrixClient[] = [];

  before(async () => {
    hs = await synapse();
    alice = await startClient(hs, (await hs.registerUser(uniqueName("ajalice"), PASSWORD)).userId, tempDir());
    carol = await startClient(hs, (await hs.registerUser(uniqueName("ajcarol"), PASSWORD)).userId, tempDir());
  });
  after(async () => {
    for (const c of [alice.client, carol.client, ...others]) await c.close();
  });

  const joined = async (by: MatrixClient, roomId: string, userId: string): Promise<boolean> => (await by.getRoom(roomId).getJoinedMembers()).includes(userId);

  it("autoJoin: true joins a room the client is invited to", async () => {
    const botId = (await hs.registerUser(uniqueName("ajbot"), PASSWORD)).userId;
    const bot = await startClient(hs, botId, tempDir(), { autoJoin: true });
    others.push(bot.client);
    const room = await alice.client.createRoom({ encrypted: true, invite: [botId] });
    await waitUntil(() => joined(alice.client, room.roomId, botId), "the bot joining");
  });

  it("an allow-list callback is asked with the room and the inviter; only what it accepts is joined", async () => {
    const botId = (await hs.registerUser(uniqueName("ajlist"), PASSWORD)).userId;
    const asked: { roomId: string; inviter: string | null; answer: boolean }[] = [];
    const bot = await startClient(hs, botId, tempDir(), {
      autoJoin: (roomId, inviter) => {
        const answer = inviter === alice.client.userId;
        asked.push({ roomId, inviter, answer });
        return Promise.resolve(answer);
      },
    });
    others.push(bot.client);
    const refused = await carol.client.createRoom({ invite: [botId] });
    await bot.rec.waitFor(() => asked.some((a) => a.roomId === refused.roomId), "the callback asked about carol's invite");
    const accepted = await alice.client.createRoom({ encrypted: true, invite: [botId] });
    await waitUntil(() => joined(alice.client, accepted.roomId, botId), "the bot joining alice's room");
    assert.deepEqual(asked, [
      { roomId: refused.roomId, inviter: carol.client.userId, answer: false },
      { roomId: accepted.roomId, inviter: alice.client.userId, answer: true },
    ]);
    assert.equal(await joined(carol.client, refused.roomId, botId), false);
    const state = await carol.client.getRoom(refused.roomId).getState("m.room.member", botId);
    assert.equal(state?.membership, "invite");
  });

  it("examples/command-bot answers !ping and !echo with replies in an encrypted room", async () => {
    const botId = (await hs.registerUser(uniqueName("ajcmd"), PASSWORD)).userId;
    const script = fileURLToPath(new URL("../../examples/command-bot.js", import.meta.url));
    const child: ChildProcess = spawn(process.execPath, [script], {
      env: { ...process.env, MATRIX_HOMESERVER: hs.baseUrl, MATRIX_USER: botId, MATRIX_PASSWORD: PASSWORD, MATRIX_STORE_DIR: tempDir(), MATRIX_ADMINS: alice.client.userId! },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let output = "";
    child.stdout?.on("data", (d: Buffer) => (output += d.toString()));
    child.stderr?.on("data", (d: Buffer) => (output += d.toString()));
    try {
      const room = await alice.client.createRoom({ encrypted: true, invite: [botId] });
      await waitUntil(() => joined(alice.client, room.roomId, botId), `the command bot joining (output: ${output})`, 60_000);
      const ping = await room.sendText("!ping");
      const echo = await room.sendText("!echo hello there");
      const replyTo = (id: string): RoomEvent | undefined =>
        alice.rec.messages(room.roomId).find((e) => e.sender === botId && (e.content["m.relates_to"] as { "m.in_reply_to"?: { event_id?: string } } | undefined)?.["m.in_reply_to"]?.event_id === id);
      await alice.rec.waitFor(() => replyTo(ping) !== undefined && replyTo(echo) !== undefined, `the bot's replies (output: ${output})`, 60_000);
      assert.equal(replyTo(ping)!.content.msgtype, "m.notice");
      assert.equal(replyTo(ping)!.content.body, `> <${alice.client.userId}> !ping\n\npong`);
      assert.equal(replyTo(echo)!.content.body, `> <${alice.client.userId}> !echo hello there\n\nhello there`);
      assert.ok(replyTo(echo)!.encryption, "the reply came encrypted");
    } finally {
      const exited = new Promise((resolve) => child.once("exit", resolve));
      child.kill("SIGTERM");
      await exited;
    }
  });
});
