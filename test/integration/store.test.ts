/**
 * Store placement, device-ID reuse and a custom store, with real clients and a real Synapse.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { existsSync, statSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { MatrixClient, InvalidArgumentError } from "../../src/index.js";
import type { SynapseHandle } from "../harness/synapse.js";
import { PASSWORD, startClient, synapse, tempDir, uniqueName } from "./helpers.js";

const journalModule = fileURLToPath(new URL("../../examples/JournalCryptoStore.js", import.meta.url));

describe("crypto store with real clients", { timeout: 180_000 }, () => {
  let hs: SynapseHandle;
  const clients: MatrixClient[] = [];
  before(async () => {
    hs = await synapse();
  });
  after(async () => {
    await Promise.all(clients.map((c) => c.close()));
  });

  it("validates restoreDeviceId before any request", async () => {
    assert.throws(() => new MatrixClient(hs.baseUrl, { restoreDeviceId: true }), InvalidArgumentError);
    const c = new MatrixClient("http://127.0.0.1:9", { encryption: true, restoreDeviceId: true, encryptionConf: { storeConf: { dbPath: tempDir() } } });
    await assert.rejects(c.login("bare-localpart", "x"), InvalidArgumentError);
    await c.close();
  });

  it("creates dbPath/dbName with mode 0600 and reuses the device ID; an explicit device ID starts a new account, kept until deleted", async () => {
    const user = (await hs.registerUser(uniqueName("dave"), PASSWORD)).userId;
    const dir = join(tempDir(), "nested", "store");
    const opts = { restoreDeviceId: true, encryptionConf: { storeConf: { dbPath: dir, dbName: "dave.db" } }, noStart: true };
    const a = await startClient(hs, user, dir, opts);
    const file = join(dir, "dave.db");
    assert.ok(existsSync(file));
    assert.equal(statSync(file).mode & 0o777, 0o600);
    const dev1 = a.client.deviceId!;
    const fp1 = a.client.getFingerprint();
    await a.client.close();

    const b = await startClient(hs, user, dir, opts);
    assert.equal(b.client.deviceId, dev1);
    assert.equal(b.client.getFingerprint(), fp1);
    await b.client.close();

    const c = await startClient(hs, user, dir, { ...opts, deviceId: "SECONDDEV" });
    assert.equal(c.client.deviceId, "SECONDDEV");
    assert.notEqual(c.client.getFingerprint(), fp1);
    await c.client.deleteStoredDevice(user, dev1);
    await c.client.close();
    const d = await startClient(hs, user, dir, opts);
    assert.equal(d.client.deviceId, "SECONDDEV", "restoreDeviceId picks the remaining account");
    await d.client.close();
  });

  it("runs a real encrypted conversation on the custom store from examples/, across a restart", async () => {
    const alice = (await hs.registerUser(uniqueName("jalice"), PASSWORD)).userId;
    const bob = (await hs.registerUser(uniqueName("jbob"), PASSWORD)).userId;
    const journal = join(tempDir(), "alice.jsonl");
    // A custom crypto store names no folder: the client's state store goes to a temp one, not the user data directory.
    const custom = { restoreDeviceId: true, encryptionConf: { store: { module: journalModule, export: "JournalCryptoStore", options: { path: journal } } }, stateStore: { dbPath: tempDir() } };
    const a = await startClient(hs, alice, "", custom);
    const b = await startClient(hs, bob, tempDir());
    clients.push(b.client);
    const room = await a.client.createRoom({ encrypted: true, invite: [bob] });
    await b.rec.waitFor(() => b.client.getRooms().some((r) => r.roomId === room.roomId), "invite");
    await b.client.joinRoom(room.roomId);
    await a.rec.waitFor(() => a.rec.events.some((e) => e.type === "m.room.member" && e.stateKey === bob && e.content.membership === "join"), "join");
    await room.sendText("from a journal store");
    await b.rec.waitFor(() => b.rec.bodies(room.roomId).includes("from a journal store"), "Bob decrypting");
    await b.client.getRoom(room.roomId).sendText("reply to the journal store");
    await a.rec.waitFor(() => a.rec.bodies(room.roomId).includes("reply to the journal store"), "Alice decrypting");
    const dev = a.client.deviceId;
    await a.client.close();

    const a2 = await startClient(hs, alice, "", custom);
    clients.push(a2.client);
    assert.equal(a2.client.deviceId, dev);
    const history = await a2.client.getRoom(room.roomId).getHistory(50);
    const bodies = history.filter((e) => !("code" in e) && e.type === "m.room.message").map((e) => ("content" in e ? e.content.body : ""));
    assert.ok(bodies.includes("reply to the journal store") && bodies.includes("from a journal store"));
  });
});
