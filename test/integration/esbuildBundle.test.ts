/**
 * An application bundled with esbuild (one ESM file, as bundlers for Electron main processes
 * emit it) runs against a real Synapse: the crypto worker, kept out of the bundle as the README
 * says, is found through `encryptionConf.workerPath`; the bundled client creates an encrypted
 * room and sends, and an SDK client that was invited decrypts the message.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";
import type { MatrixClient } from "../../src/index.js";
import type { SynapseHandle } from "../harness/synapse.js";
import { PASSWORD, Recorder, startClient, synapse, tempDir, uniqueName } from "./helpers.js";

const DIST = fileURLToPath(new URL("../../", import.meta.url));
const REPO = join(DIST, "..");

/** The application: log in with encryption, create an encrypted room with `peer`, send once they joined. */
const APP = `import { MatrixClient } from "matrix-e2ee-worker-sdk";
const [hs, user, password, dir, workerPath, peer] = process.argv.slice(2);
const client = new MatrixClient(hs, { encryption: true, encryptionConf: { storeConf: { dbPath: dir }, workerPath }, stateStore: { dbPath: dir }, syncTimeoutMs: 1000 });
await client.login(user, password);
client.start();
const room = await client.createRoom({ encrypted: true, invite: [peer] });
process.stdout.write(JSON.stringify({ roomId: room.roomId }) + "\\n");
while (room.members.get(peer) !== "join") await new Promise((r) => setTimeout(r, 100));
await room.sendText("from a bundle");
await client.close();
`;

describe("an esbuild bundle of an application (real Synapse)", { timeout: 180_000 }, () => {
  let hs: SynapseHandle;
  let peer: { client: MatrixClient; rec: Recorder };
  let appUser = "";
  const dir = tempDir("sdk-esbuild-");

  before(async () => {
    hs = await synapse();
    appUser = (await hs.registerUser(uniqueName("bundled"), PASSWORD)).userId;
    const peerUser = (await hs.registerUser(uniqueName("bpeer"), PASSWORD)).userId;
    peer = await startClient(hs, peerUser, tempDir());
  });
  after(async () => {
    await peer?.client.close();
  });

  it("bundles into one file that finds the worker through encryptionConf.workerPath and talks encrypted to another client", async () => {
    writeFileSync(join(dir, "app.mjs"), APP);
    // Native and wasm modules stay external (as with electron-builder); the rest is in the bundle.
    symlinkSync(join(REPO, "node_modules"), join(dir, "node_modules"));
    const outfile = join(dir, "out", "main.mjs");
    const res = await build({
      entryPoints: [join(dir, "app.mjs")],
      bundle: true,
      platform: "node",
      format: "esm",
      target: "node20",
      outfile,
      external: ["better-sqlite3", "@matrix-org/olm"],
      alias: { "matrix-e2ee-worker-sdk": join(DIST, "src", "index.js") },
      banner: { js: 'import { createRequire as __cr } from "node:module"; const require = __cr(import.meta.url);' },
      logLevel: "silent",
    });
    assert.deepEqual(res.errors, []);

    peer.client.on("room.invite", (roomId) => void peer.client.joinRoom(roomId));
    const child = spawn(process.execPath, [outfile, hs.baseUrl, appUser, PASSWORD, join(dir, "store"), join(DIST, "workers", "crypto-worker.js"), peer.client.userId!], { cwd: join(dir, "out"), stdio: ["ignore", "pipe", "pipe"] });
    let stderr = "";
    child.stderr!.on("data", (c: Buffer) => (stderr += c.toString()));
    const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
    await peer.rec.waitFor(() => peer.rec.events.some((e) => e.type === "m.room.message" && e.content.body === "from a bundle"), "the bundled app's message", 90_000);
    assert.equal(await exited, 0, stderr);
    const msg = peer.rec.events.find((e) => e.type === "m.room.message" && e.content.body === "from a bundle")!;
    assert.ok(msg.encryption, "the bundled app's message was not encrypted");
  });
});
