/**
 * The main job: start a local Synapse (installed from PyPI into .cache/ on first run), let three
 * SDK clients — each with its own crypto worker and SQLite store — create an encrypted room and
 * talk, then print what was decrypted and how fast.
 *
 *   npm run demo            (DEMO_MESSAGES=500 npm run demo for a longer burst)
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { MatrixClient, type RoomEvent } from "../src/index.js";
import { startSynapse } from "../test/harness/synapse.js";

const PASSWORD = "demo password";
const BURST = Number(process.env.DEMO_MESSAGES ?? 200);

function waitFor(pred: () => boolean, what: string, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  return new Promise((resolve, reject) => {
    const tick = (): void => {
      if (pred()) return resolve();
      if (Date.now() > deadline) return reject(new Error(`timed out waiting for ${what}`));
      setTimeout(tick, 20);
    };
    tick();
  });
}

async function main(): Promise<void> {
  console.log("starting Synapse on 127.0.0.1 (first run installs it from PyPI into .cache/) …");
  const hs = await startSynapse();
  const dir = mkdtempSync(join(tmpdir(), "sdk-demo-"));
  const clients: MatrixClient[] = [];
  try {
    const names = ["alice", "bob", "carol"];
    const stamp = Date.now().toString(36);
    const people: { name: string; client: MatrixClient; got: RoomEvent[] }[] = [];
    for (const name of names) {
      const u = await hs.registerUser(`${name}${stamp}`, PASSWORD);
      const client = new MatrixClient(hs.baseUrl, { encryption: true, restoreDeviceId: true, encryptionConf: { storeConf: { dbPath: join(dir, name) } }, syncTimeoutMs: 5000 });
      const got: RoomEvent[] = [];
      client.on("room.event", (e) => {
        if (e.type === "m.room.message") got.push(e);
      });
      client.on("room.undecryptable", (e) => console.log(`  ${name}: could not decrypt ${e.eventId}: ${e.code}`));
      await client.login(u.userId, PASSWORD);
      client.start();
      clients.push(client);
      people.push({ name, client, got });
      console.log(`${name.padEnd(6)} ${u.userId} device ${client.deviceId}  fingerprint ${client.getFingerprintForDisplay()}`);
    }
    const [alice, bob, carol] = people as [(typeof people)[0], (typeof people)[0], (typeof people)[0]];

    const room = await alice.client.createRoom({ encrypted: true, name: "demo", invite: [bob.client.userId!, carol.client.userId!] });
    console.log(`\nalice created encrypted room ${room.roomId}`);
    for (const p of [bob, carol]) {
      await waitFor(() => p.client.getRooms().some((r) => r.roomId === room.roomId), `${p.name}'s invite`);
      await p.client.joinRoom(room.roomId);
    }
    await waitFor(() => [bob, carol].every((p) => room.members.get(p.client.userId!) === "join"), "joins to reach alice");

    await room.sendText("Hello from alice — this is end-to-end encrypted.");
    await bob.client.getRoom(room.roomId).sendText("Bob here, reading you loud and clear.");
    await carol.client.getRoom(room.roomId).sendNotice("Carol's notice, also encrypted.");
    await waitFor(() => people.every((p) => p.got.length >= 3), "the first messages");
    console.log("\nwhat bob decrypted:");
    for (const e of bob.got) console.log(`  ${e.sender}: ${String(e.content.body)}  [${e.encryption?.verification}, device ${e.encryption?.senderDeviceId}]`);

    console.log(`\nalice sends ${BURST} messages; bob and carol decrypt them in their workers …`);
    const before = bob.got.length;
    const t0 = performance.now();
    const sends = [];
    for (let i = 0; i < BURST; i++) sends.push(room.sendText(`message ${i}`));
    await Promise.all(sends);
    const tSent = performance.now();
    await waitFor(() => bob.got.length >= before + BURST && carol.got.length >= before + BURST, "the burst");
    const tDone = performance.now();
    const inOrder = bob.got.slice(before).every((e, i) => e.content.body === `message ${i}`);
    console.log(`  sent (encrypt + PUT, in order per room): ${(BURST / ((tSent - t0) / 1000)).toFixed(0)} msg/s`);
    console.log(`  received and decrypted by both: ${(BURST / ((tDone - t0) / 1000)).toFixed(0)} msg/s end to end (through Synapse)`);
    console.log(`  bob's copy in order: ${inOrder ? "yes" : "NO"}; room keys used: ${new Set(bob.got.slice(before).map((e) => e.encryption?.sessionId)).size} (rotation every 100 messages)`);
    console.log("\nraw events on the server are all m.room.encrypted:", (await room.getHistory(20)).every((e) => "code" in e || e.encryption !== undefined || e.type !== "m.room.message"));
  } finally {
    await Promise.all(clients.map((c) => c.close()));
    await hs.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
