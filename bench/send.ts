/**
 * `npm run bench:send` — what a send costs the client, against a fixture server (its own process)
 * that answers `PUT /send` at once.
 *
 *   node dist/bench/send.js [--messages N] [--rounds R] [--out FILE]
 *
 * Each SDK mode is paired with a plain undici `PUT` loop (the same work without the SDK) measured
 * in the same process right before and right after it, and reported as the ratio of its rate to
 * the mean of those two, so the host's drift between minutes cancels out. Modes: encrypted sends
 * into 1 room sequentially, into 10 rooms at once (one sequential sender per room), and plain-room
 * sends sequentially. The room keys are shared before measuring (the first send of each room is a
 * warm-up). Medians over `--rounds` with min/max; targets printed PASS/FAIL (exit code 0 anyway).
 */
import { fork } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync, mkdirSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { Agent, request } from "undici";
import { MatrixClient } from "../src/index.js";
import { encryptedRoomId, plainRoomId, type SendServerConfig } from "./sendRooms.js";
import { SEND_LABELS, SEND_ROOMS, SEND_TARGETS, renderSend, type SendMode, type SendReport } from "./sendReport.js";

type Mode = keyof typeof SEND_TARGETS;

const HERE = dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const opt = (name: string, d: number): number => {
  const i = args.indexOf(name);
  const v = i >= 0 ? Number(args[i + 1]) : d;
  if (!Number.isFinite(v) || v <= 0) throw new Error(`${name} needs a positive number`);
  return Math.floor(v);
};
const MESSAGES = opt("--messages", 300);
const ROUNDS = opt("--rounds", 3);
const outIdx = args.indexOf("--out");
const OUT = outIdx >= 0 ? args[outIdx + 1]! : join(HERE, "..", "..", "bench", "results", "send.json");
const ROOMS = SEND_ROOMS;

async function startServer(cfg: SendServerConfig): Promise<{ url: string; stop: () => void }> {
  const child = fork(join(HERE, "sendServer.js"), [JSON.stringify(cfg)], { stdio: ["ignore", "inherit", "inherit", "ipc"] });
  const port = await new Promise<number>((resolve, reject) => {
    child.once("message", (m: { type: string; port: number }) => (m.type === "ready" ? resolve(m.port) : reject(new Error("fixture failed"))));
    child.once("exit", (code) => reject(new Error(`fixture exited with ${code}`)));
  });
  return { url: `http://127.0.0.1:${port}`, stop: () => child.kill() };
}

/** Messages per second of `senders` concurrent loops sending `perSender` messages each. */
async function rate(senders: number, perSender: number, send: (sender: number, i: number) => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await Promise.all(Array.from({ length: senders }, async (_, s) => {
    for (let i = 0; i < perSender; i++) await send(s, i);
  }));
  return (senders * perSender) / ((performance.now() - t0) / 1000);
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}

async function main(): Promise<void> {
  const userId = "@sender:bench.local";
  const server = await startServer({ userId, peerUserId: "@peer:bench.local", peerDevices: 3, encryptedRooms: ROOMS, plainRooms: ROOMS });
  const dir = mkdtempSync(join(tmpdir(), "sdk-bench-send-"));
  const client = new MatrixClient(server.url, { encryption: true, encryptionConf: { storeConf: { dbPath: dir } }, syncTimeoutMs: 30_000 });
  const agent = new Agent({ connections: 16 });
  let txn = 0;
  const rawPut = (roomId: string): Promise<unknown> =>
    request(`${server.url}/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/send/m.room.message/raw${txn++}`, {
      method: "PUT",
      dispatcher: agent,
      headers: { authorization: "Bearer bench", "content-type": "application/json" },
      body: JSON.stringify({ msgtype: "m.text", body: `message ${txn}` }),
    }).then((r) => r.body.json());
  try {
    await client.login(userId, "pw");
    client.start();
    while (client.getRooms().length < 2 * ROOMS) await new Promise((r) => setTimeout(r, 50));
    // Warm-up: every room's key shared, every plain room checked once, connections open.
    for (let r = 0; r < ROOMS; r++) {
      await client.getRoom(encryptedRoomId(r)).sendText("warm-up");
      await client.getRoom(plainRoomId(r)).sendText("warm-up");
      await rawPut(plainRoomId(r));
    }
    const modes: Record<Mode, { senders: number; sdk: (s: number, i: number) => Promise<unknown> }> = {
      encryptedSequential: { senders: 1, sdk: (_s, i) => client.getRoom(encryptedRoomId(0)).sendText(`message ${i}`) },
      encryptedConcurrent: { senders: ROOMS, sdk: (s, i) => client.getRoom(encryptedRoomId(s)).sendText(`message ${i}`) },
      plainSequential: { senders: 1, sdk: (_s, i) => client.getRoom(plainRoomId(0)).sendText(`message ${i}`) },
    };
    const results: Record<Mode, { ratios: number[]; sdkRates: number[]; rawRates: number[] }> = {
      encryptedSequential: { ratios: [], sdkRates: [], rawRates: [] },
      encryptedConcurrent: { ratios: [], sdkRates: [], rawRates: [] },
      plainSequential: { ratios: [], sdkRates: [], rawRates: [] },
    };
    for (let round = 0; round < ROUNDS; round++) {
      for (const [name, m] of Object.entries(modes) as [Mode, (typeof modes)[Mode]][]) {
        const per = Math.max(1, Math.floor(MESSAGES / m.senders));
        const raw = (): Promise<number> => rate(m.senders, per, (s) => rawPut(plainRoomId(s)));
        const before = await raw();
        const sdk = await rate(m.senders, per, m.sdk);
        const after = await raw();
        const r = results[name];
        r.sdkRates.push(sdk);
        r.rawRates.push((before + after) / 2);
        r.ratios.push(sdk / ((before + after) / 2));
      }
    }
    const report: SendReport = {
      date: new Date().toISOString(),
      machine: { cpus: cpus().length, model: cpus()[0]?.model ?? "unknown", node: process.version },
      messages: MESSAGES,
      rounds: ROUNDS,
      modes: Object.fromEntries(
        (Object.keys(results) as Mode[]).map((k) => {
          const r = results[k];
          const ratio = median(r.ratios);
          const m: SendMode = { label: SEND_LABELS[k], ratio, ratioMin: Math.min(...r.ratios), ratioMax: Math.max(...r.ratios), ratios: r.ratios, sdkPerSecond: median(r.sdkRates), rawPerSecond: median(r.rawRates), target: SEND_TARGETS[k], pass: ratio >= SEND_TARGETS[k] };
          return [k, m];
        }),
      ) as Record<Mode, SendMode>,
    };
    console.log(renderSend(report).join("\n"));
    mkdirSync(dirname(OUT), { recursive: true });
    writeFileSync(OUT, JSON.stringify(report, null, 2) + "\n");
    console.log(`written to ${OUT}`);
  } finally {
    await client.close();
    await agent.close();
    server.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
