/**
 * The package as installed (issue 16 items 6 and 8): this checkout packed with `npm pack` and
 * installed with real npm into a fresh app (dependencies from a local registry serving the
 * repository's node_modules: no network). The key CLI runs through npm's `.bin` link; every module
 * shipped imports only what is shipped; the LICENSE ships; without better-sqlite3's native module
 * the store says so and how to build it.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { builtinModules } from "node:module";
import { dirname, join, posix } from "node:path";
import { USAGE } from "../../src/cli/keys.js";
import { spawn, type ChildProcess } from "node:child_process";
import { createInterface } from "node:readline";
import { pathToFileURL } from "node:url";
import type { MatrixClient } from "../../src/index.js";
import type { SynapseHandle } from "../harness/synapse.js";
import { installPackedSdk, REPO_ROOT, run, type InstalledSdk } from "../support/installedPackage.js";
import { PASSWORD, Recorder, startClient, synapse, tempDir, uniqueName } from "./helpers.js";

/**
 * An encrypted bot written against the installed package: answers `!ping …` with a rich reply
 * `pong …` (a relation to the command); on `!redact`, sends a message and redacts it; prints JSON lines.
 */
const BOT = `import { MatrixClient } from "matrix-e2ee-worker-sdk";
const [hs, user, password, dir] = process.argv.slice(2);
const client = new MatrixClient(hs, { encryption: true, restoreDeviceId: true, encryptionConf: { storeConf: { dbPath: dir } }, syncTimeoutMs: 1000 });
const out = (o) => process.stdout.write(JSON.stringify(o) + "\\n");
await client.login(user, password);
out({ k: "ready", rooms: client.getRooms().map((r) => r.roomId) });
client.on("room.invite", (roomId) => void client.joinRoom(roomId).then(() => out({ k: "joined", roomId })));
client.on("room.event", (ev) => {
  if (ev.type !== "m.room.message" || ev.sender === client.userId) return;
  const body = String(ev.content.body);
  if (body.startsWith("!redact")) {
    const room = client.getRoom(ev.roomId);
    return void room.sendText("soon gone").then((own) => room.redact(own, "asked to").then((id) => out({ k: "redacted", eventId: own, id }))).catch((e) => out({ k: "error", message: String(e) }));
  }
  if (!body.startsWith("!ping")) return;
  out({ k: "command", body });
  void client.getRoom(ev.roomId).replyText(ev, "pong " + body);
});
client.start();
process.on("SIGTERM", () => void client.close().then(() => process.exit(0)));
`;

/** A running bot process and the JSON lines it printed. */
class BotProcess {
  readonly lines: Record<string, unknown>[] = [];
  readonly exited: Promise<number | null>;
  private readonly child: ChildProcess;
  constructor(cwd: string, args: string[]) {
    this.child = spawn(process.execPath, ["bot.mjs", ...args], { cwd, stdio: ["ignore", "pipe", "inherit"] });
    createInterface({ input: this.child.stdout! }).on("line", (l) => this.lines.push(JSON.parse(l) as Record<string, unknown>));
    this.exited = new Promise((resolve) => this.child.on("exit", (code) => resolve(code)));
  }
  of(kind: string): Record<string, unknown>[] {
    return this.lines.filter((l) => l.k === kind);
  }
  async stop(): Promise<number | null> {
    this.child.kill("SIGTERM");
    return this.exited;
  }
}

/** Module specifiers a compiled file loads: static and dynamic imports, and `new URL(…, import.meta.url)`. */
function specifiers(code: string): string[] {
  const out: string[] = [];
  for (const re of [/(?:\bfrom\s*|\bimport\s*\(\s*|^import\s+)"([^"]+)"/gm, /new URL\(\s*"([^"]+)",\s*import\.meta\.url\)/g]) {
    for (const m of code.matchAll(re)) out.push(m[1]!);
  }
  return out;
}

describe("the packed package installed into a fresh app", { timeout: 300_000 }, () => {
  let sdk: InstalledSdk;

  before(async () => {
    sdk = await installPackedSdk();
  });
  after(() => sdk?.remove());

  it("matrix-e2ee-keys runs through npm's bin link (node_modules/.bin and npm exec)", async () => {
    const viaBin = await run(join(sdk.appDir, "node_modules", ".bin", "matrix-e2ee-keys"), ["--help"], sdk.appDir);
    assert.deepEqual(viaBin, { code: 0, stdout: "", stderr: `${USAGE}\n` });
    const viaNpx = await run("npm", ["exec", "--offline", "--", "matrix-e2ee-keys", "--help"], sdk.appDir);
    assert.deepEqual(viaNpx, { code: 0, stdout: "", stderr: `${USAGE}\n` });
  });

  it("every shipped module imports only shipped files, node built-ins and the package's dependencies", () => {
    const shipped = new Set(sdk.files);
    const pkg = JSON.parse(readFileSync(join(sdk.packageDir, "package.json"), "utf8")) as { dependencies: Record<string, string> };
    const missing: string[] = [];
    for (const file of sdk.files.filter((f) => f.endsWith(".js"))) {
      for (const spec of specifiers(readFileSync(join(sdk.packageDir, file), "utf8"))) {
        if (spec.startsWith(".")) {
          const target = posix.normalize(posix.join(posix.dirname(file), spec)).replace(/\/$/, "");
          if (!shipped.has(target) && !sdk.files.some((f) => f.startsWith(`${target}/`))) missing.push(`${file} → ${spec}`);
        } else if (!spec.startsWith("node:") && !builtinModules.includes(spec)) {
          const name = spec.startsWith("@") ? spec.split("/").slice(0, 2).join("/") : spec.split("/")[0]!;
          if (!(name in pkg.dependencies)) missing.push(`${file} → ${spec} (not a dependency)`);
        }
      }
    }
    assert.deepEqual(missing, []);
  });

  it("exports the worker entry as matrix-e2ee-worker-sdk/worker (for encryptionConf.workerPath in bundles)", async () => {
    const r = await run(process.execPath, ["--input-type=module", "-e", 'process.stdout.write(import.meta.resolve("matrix-e2ee-worker-sdk/worker"))'], sdk.appDir);
    assert.deepEqual(r, { code: 0, stdout: pathToFileURL(join(sdk.packageDir, "dist", "workers", "crypto-worker.js")).href, stderr: "" });
  });

  it("ships the Apache-2.0 LICENSE its package.json names", () => {
    const pkg = JSON.parse(readFileSync(join(sdk.packageDir, "package.json"), "utf8")) as { license: string };
    assert.equal(pkg.license, "Apache-2.0");
    assert.equal(sdk.files.includes("LICENSE"), true);
    assert.equal(readFileSync(join(sdk.packageDir, "LICENSE"), "utf8"), readFileSync(join(REPO_ROOT, "LICENSE"), "utf8"));
  });

  it("without better-sqlite3's native module, opening the store says that module is missing (typed StoreError)", async () => {
    const build = join(sdk.appDir, "node_modules", "better-sqlite3", "build");
    assert.equal(existsSync(join(build, "Release", "better_sqlite3.node")), true);
    const script = join(sdk.appDir, "open-store.mjs");
    writeFileSync(
      script,
      `import { MatrixClient, StoreError } from "matrix-e2ee-worker-sdk";
const client = new MatrixClient("http://127.0.0.1:9", { encryption: true, restoreDeviceId: true, encryptionConf: { storeConf: { dbPath: process.argv[2] } } });
try { await client.login("@bot:example.org", "pw"); console.log("{}"); }
catch (e) { console.log(JSON.stringify({ storeError: e instanceof StoreError, code: e.code, nativeModuleMissing: e.details?.nativeModuleMissing ?? null })); }
finally { await client.close(); }
`,
    );
    renameSync(build, `${build}.off`);
    try {
      const r = await run(process.execPath, [script, join(dirname(script), "store")], sdk.appDir);
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(JSON.parse(r.stdout), { storeError: true, code: "M_SDK_STORE", nativeModuleMissing: true });
    } finally {
      renameSync(`${build}.off`, build);
    }
  });
});

describe("a bot run from the installed package, against a real Synapse", { timeout: 300_000 }, () => {
  let sdk: InstalledSdk;
  let hs: SynapseHandle;
  let alice: { client: MatrixClient; rec: Recorder };
  let botUser = "";
  const botDir = tempDir("sdk-pkgbot-");
  const bots: BotProcess[] = [];

  before(async () => {
    [sdk, hs] = await Promise.all([installPackedSdk(), synapse()]);
    writeFileSync(join(sdk.appDir, "bot.mjs"), BOT);
    const aliceUser = (await hs.registerUser(uniqueName("alice"), PASSWORD)).userId;
    botUser = (await hs.registerUser(uniqueName("pkgbot"), PASSWORD)).userId;
    alice = await startClient(hs, aliceUser, tempDir("sdk-alice-"));
  });
  after(async () => {
    for (const b of bots) await b.stop();
    await alice?.client.close();
    sdk?.remove();
  });

  it("answers in an encrypted room, and after a restart has its room at once and does not answer old commands again", async () => {
    const start = (): BotProcess => {
      const b = new BotProcess(sdk.appDir, [hs.baseUrl, botUser, PASSWORD, botDir]);
      bots.push(b);
      return b;
    };
    const until = (pred: () => boolean, what: string): Promise<void> => alice.rec.waitFor(pred, what, 60_000);
    const first = start();
    const room = await alice.client.createRoom({ encrypted: true, invite: [botUser] });
    await until(() => first.of("joined").length === 1, "the bot joining");
    await until(() => room.members.get(botUser) === "join", "Alice seeing the bot join");
    const ping1 = await room.sendText("!ping 1");
    // A rich reply: its body may start with the quoted fallback of the command.
    const isAnswer = (m: { content: Record<string, unknown> }, text: string): boolean => String(m.content.body).endsWith(text);
    await until(() => alice.rec.messages(room.roomId).some((m) => isAnswer(m, "pong !ping 1")), "the bot's answer");
    const answer = alice.rec.messages(room.roomId).find((m) => isAnswer(m, "pong !ping 1"))!;
    const rel = answer.content["m.relates_to"] as Record<string, Record<string, unknown>> | undefined;
    assert.equal(rel?.["m.in_reply_to"]?.event_id, ping1, "the answer is a reply to the command (relation in the clear)");
    assert.equal(answer.encryption !== undefined, true);
    await room.sendText("!redact");
    await until(() => first.of("redacted").length === 1, "the bot redacting its message");
    const doomed = first.of("redacted")[0]!.eventId as string;
    await until(() => alice.rec.events.some((e) => e.roomId === room.roomId && e.type === "m.room.redaction" && (e.content.redacts === doomed || (e as unknown as { redacts?: string }).redacts === doomed)), "Alice seeing the redaction");
    const gone = await alice.client.getEvent(room.roomId, doomed);
    assert.ok(gone && "redactedBecause" in gone && gone.redactedBecause, "the redacted (encrypted) message comes back as a redacted event, not a decryption failure");
    assert.equal(await first.stop(), 0);

    const second = start();
    await until(() => second.of("ready").length === 1, "the restarted bot");
    assert.deepEqual(second.of("ready")[0]!.rooms, [room.roomId]);
    await room.sendText("!ping 2");
    await until(() => alice.rec.messages(room.roomId).some((m) => isAnswer(m, "pong !ping 2")), "the answer after the restart");
    assert.equal(await second.stop(), 0);
    assert.deepEqual(second.of("command").map((c) => c.body), ["!ping 2"]);
    assert.deepEqual(alice.rec.failures, []);
    assert.deepEqual(first.of("error"), []);
    assert.equal(alice.rec.messages(room.roomId).every((m) => m.encryption !== undefined), true, "every message was encrypted");
  });
});
