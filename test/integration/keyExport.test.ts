/**
 * Key export/import between real clients through a real Synapse, the offline CLI, and
 * interoperability with an independent implementation (matrix-sdk-crypto-wasm).
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import * as wasm from "@matrix-org/matrix-sdk-crypto-wasm";
import { KeyExportError, type MatrixClient } from "../../src/index.js";
import { main as keysCli } from "../../src/cli/keys.js";
import type { SynapseHandle } from "../harness/synapse.js";
import { PASSWORD, Recorder, startClient, synapse, tempDir, uniqueName } from "./helpers.js";

describe("key export and import", { timeout: 240_000 }, () => {
  let hs: SynapseHandle;
  let alice = "";
  let roomId = "";
  const clients: MatrixClient[] = [];
  let a1: { client: MatrixClient; rec: Recorder };
  const a1Dir = tempDir();
  const files = tempDir();

  before(async () => {
    await wasm.initAsync();
    hs = await synapse();
    alice = (await hs.registerUser(uniqueName("kxalice"), PASSWORD)).userId;
    const bobId = (await hs.registerUser(uniqueName("kxbob"), PASSWORD)).userId;
    a1 = await startClient(hs, alice, a1Dir);
    const bob = await startClient(hs, bobId, tempDir());
    clients.push(a1.client, bob.client);
    const room = await bob.client.createRoom({ encrypted: true, invite: [alice] });
    roomId = room.roomId;
    await a1.rec.waitFor(() => a1.client.getRooms().some((r) => r.roomId === roomId), "invite");
    await a1.client.joinRoom(roomId);
    await bob.rec.waitFor(() => bob.rec.events.some((e) => e.type === "m.room.member" && e.stateKey === alice && e.content.membership === "join"), "join");
    for (const t of ["kx one", "kx two", "kx three"]) await room.sendText(t);
    await a1.rec.waitFor(() => a1.rec.bodies(roomId).includes("kx three"), "A1 decrypting");
  });
  after(async () => {
    await Promise.all(clients.map((c) => c.close()));
  });

  it("exports to a 0600 file an independent implementation can read, and another device imports it to read history", async () => {
    const file = join(files, "keys.txt");
    const progress: number[] = [];
    const { exported } = await a1.client.exportKeys(file, "pass phrase", { rounds: 1000, onProgress: (d) => progress.push(d) });
    assert.ok(exported >= 1);
    assert.equal(statSync(file).mode & 0o777, 0o600);
    const text = readFileSync(file, "utf8");
    assert.match(text, /^-----BEGIN MEGOLM SESSION DATA-----\n/);
    const theirs = JSON.parse(wasm.OlmMachine.decryptExportedRoomKeys(text, "pass phrase")) as { room_id: string; session_id: string }[];
    assert.ok(theirs.some((s) => s.room_id === roomId));
    assert.equal(progress.at(-1), exported, "the last progress report arrives before the result");

    const a2 = await startClient(hs, alice, tempDir(), { deviceId: `KX${Date.now()}` });
    clients.push(a2.client);
    await a2.rec.waitFor(() => a2.client.getRooms().some((r) => r.roomId === roomId), "A2 sync");
    const before = await a2.client.getRoom(roomId).getHistory(50);
    assert.ok(before.filter((e) => "code" in e).length >= 3);
    await assert.rejects(a2.client.importKeys(file, "wrong"), (e: unknown) => e instanceof KeyExportError && e.reason === "bad_passphrase_or_mac");
    const r = await a2.client.importKeys(file, "pass phrase");
    assert.equal(r.total, exported);
    assert.equal(r.imported, exported);
    await a2.rec.waitFor(() => ["kx one", "kx two", "kx three"].every((b) => a2.rec.bodies(roomId).includes(b)), "A2 decrypting history after import");
    const late = a2.rec.messages(roomId).find((e) => e.content.body === "kx one")!;
    assert.equal(late.encryption?.verification, "unauthenticated");
    assert.equal((await a2.client.importKeys(file, "pass phrase")).imported, 0, "re-import should skip known sessions");
  });

  it("imports a file written by matrix-sdk-crypto-wasm", async () => {
    const mine = JSON.parse(wasm.OlmMachine.decryptExportedRoomKeys(readFileSync(join(files, "keys.txt"), "utf8"), "pass phrase")) as unknown[];
    const theirFile = join(files, "theirs.txt");
    const { writeFileSync } = await import("node:fs");
    writeFileSync(theirFile, wasm.OlmMachine.encryptExportedRoomKeys(JSON.stringify(mine), "their pass", 1000));
    const a3 = await startClient(hs, alice, tempDir(), { deviceId: `KY${Date.now()}` });
    clients.push(a3.client);
    // A progress callback that throws neither fails the import nor goes unreported.
    const errors: Error[] = [];
    a3.client.on("error", (e) => errors.push(e));
    const r = await a3.client.importKeys(theirFile, "their pass", {
      onProgress: () => {
        throw new Error("progress callback failed");
      },
    });
    assert.equal(r.imported, mine.length);
    assert.ok(errors.some((e) => e.message === "progress callback failed"));
  });

  it("the offline CLI exports from a store file that no client holds", async () => {
    await a1.client.close();
    const out = join(files, "cli.txt");
    process.env.MATRIX_KEYS_PASSPHRASE = "cli pass";
    assert.equal(await keysCli(["export", "--db", join(a1Dir, "crypto.db"), "--out", out, "--rounds", "1000"]), 0);
    delete process.env.MATRIX_KEYS_PASSPHRASE;
    const theirs = JSON.parse(wasm.OlmMachine.decryptExportedRoomKeys(readFileSync(out, "utf8"), "cli pass")) as unknown[];
    assert.ok(theirs.length >= 1);
    assert.equal(await keysCli(["export", "--db", join(a1Dir, "nope.db"), "--out", out]), 1);
  });
});
