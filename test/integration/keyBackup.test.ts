/**
 * Server-side key backup through a real Synapse, interoperating with matrix-sdk-crypto-wasm (the
 * Rust crypto behind matrix-js-sdk and Element): the Rust machine backs up, the SDK on a fresh
 * store restores and decrypts; the SDK backs up, a fresh Rust machine restores and decrypts; a
 * version deleted on the server stops the upload and is reported.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import * as wasm from "@matrix-org/matrix-sdk-crypto-wasm";
import { InvalidArgumentError, type MatrixClient } from "../../src/index.js";
import type { RoomEvent } from "../../src/client/events.js";
import type { SynapseHandle } from "../harness/synapse.js";
import { decodeRecoveryKey, decryptStoredSecret } from "../../workers/engine/secrets/secretStorage.js";
import { WasmPeer } from "../support/wasmPeer.js";
import { PASSWORD, startClient, synapse, tempDir, uniqueName, waitUntil } from "./helpers.js";

type Json = Record<string, unknown>;
const ALGORITHM = "m.megolm_backup.v1.curve25519-aes-sha2";
const ENCRYPTION = { type: "m.room.encryption", state_key: "", content: { algorithm: "m.megolm.v1.aes-sha2" } };

function decrypted(events: unknown[]): RoomEvent[] {
  return events.filter((e): e is RoomEvent => (e as RoomEvent).encryption !== undefined && (e as RoomEvent).type === "m.room.message");
}

describe("server-side key backup interoperates with the Rust crypto through Synapse", { timeout: 240_000 }, () => {
  let hs: SynapseHandle;
  const clients: MatrixClient[] = [];
  const peers: WasmPeer[] = [];
  before(async () => {
    hs = await synapse();
  });
  after(async () => {
    await Promise.all(clients.map((c) => c.close()));
    for (const p of peers) p.close();
  });

  it("the Rust machine backs up; the SDK on a fresh store restores with the backup key and decrypts the old messages (unauthenticated); a wrong key imports nothing", async () => {
    const alice = (await hs.registerUser(uniqueName("bkrust"), PASSWORD)).userId;
    const rust = await WasmPeer.login(hs.baseUrl, alice, PASSWORD);
    peers.push(rust);
    const roomId = (await rust.call("POST", "/_matrix/client/v3/createRoom", { initial_state: [ENCRYPTION] })).room_id as string;
    await rust.join(roomId, { encryptedFor: [alice] });
    await rust.sendRoomEvent(roomId, "m.room.message", JSON.stringify({ msgtype: "m.text", body: "from rust, backed up" }));
    // The Rust side creates a version and uploads its keys.
    const key = wasm.BackupDecryptionKey.createRandomKey();
    const publicKey = key.megolmV1PublicKey.publicKeyBase64;
    const { version } = (await rust.call("POST", "/_matrix/client/v3/room_keys/version", { algorithm: ALGORITHM, auth_data: { public_key: publicKey } })) as { version: string };
    await rust.machine.enableBackupV1(publicKey, version);
    const req = await rust.machine.backupRoomKeys();
    assert.ok(req, "the Rust machine has keys to back up");
    const res = await rust.call("PUT", `/_matrix/client/v3/room_keys/keys?version=${encodeURIComponent(version)}`, req.body);
    await rust.machine.markRequestAsSent(req.id, req.type, JSON.stringify(res));
    assert.equal((await rust.call("GET", "/_matrix/client/v3/room_keys/version")).count, 1);

    const sdk = await startClient(hs, alice, tempDir());
    clients.push(sdk.client);
    const before = await sdk.client.fetchRoomHistory(roomId);
    assert.equal(decrypted(before).length, 0, "no key before the restore");
    // A wrong key: typed error, nothing imported.
    const wrong = wasm.BackupDecryptionKey.createRandomKey().toBase64();
    await assert.rejects(sdk.client.restoreKeyBackup({ backupKey: wrong }), (e: unknown) => e instanceof InvalidArgumentError && e.details.reason === "bad_key");
    assert.equal(decrypted(await sdk.client.fetchRoomHistory(roomId)).length, 0);

    const progress: [number, number][] = [];
    const r = await sdk.client.restoreKeyBackup({ backupKey: key.toBase64() }, { onProgress: (d, t) => progress.push([d, t]) });
    assert.deepEqual([r.version, r.total, r.imported, r.failed], [version, 1, 1, 0]);
    assert.deepEqual(progress, [[1, 1]]);
    const msgs = decrypted(await sdk.client.fetchRoomHistory(roomId));
    assert.deepEqual(msgs.map((e) => [e.content.body, e.encryption!.verification]), [["from rust, backed up", "unauthenticated"]]);
  });

  it("the SDK backs up (version signed by its device and master key, key in secret storage); a fresh Rust machine restores and decrypts", async () => {
    const alice = (await hs.registerUser(uniqueName("bksdk"), PASSWORD)).userId;
    const a1 = await startClient(hs, alice, tempDir());
    clients.push(a1.client);
    const { recoveryKey } = await a1.client.bootstrapCrossSigning({ password: PASSWORD });
    const info = await a1.client.enableKeyBackup({ recoveryKey });
    assert.equal(info.created, true);
    assert.deepEqual([info.trust.trusted, info.trust.matchesKey, info.trust.signedByMaster, info.trust.signedByDevices], [true, true, true, [a1.client.deviceId]]);
    const room = await a1.client.createRoom({ encrypted: true });
    await room.sendText("from the sdk, backed up");
    await a1.client.flushKeyBackup();
    const rust = await WasmPeer.login(hs.baseUrl, alice, PASSWORD);
    peers.push(rust);
    const server = await rust.call("GET", "/_matrix/client/v3/room_keys/version");
    assert.deepEqual([server.version, server.count], [info.version, 1]);
    // The Rust machine checks the master-key signature itself once it knows our keys (valid; not
    // trusted yet, as this fresh Rust device has not verified its own identity).
    await rust.track(alice);
    const sigs = await rust.machine.verifyBackup(server);
    assert.equal(sigs.userState, wasm.SignatureState.ValidButNotTrusted);
    // Its key, from secret storage with the recovery key.
    const stored = await rust.call("GET", `/_matrix/client/v3/user/${encodeURIComponent(alice)}/account_data/m.megolm_backup.v1`);
    const keyId = ((await rust.call("GET", `/_matrix/client/v3/user/${encodeURIComponent(alice)}/account_data/m.secret_storage.default_key`)) as { key: string }).key;
    const key = wasm.BackupDecryptionKey.fromBase64(decryptStoredSecret(stored, keyId, decodeRecoveryKey(recoveryKey), "m.megolm_backup.v1"));
    assert.equal(key.megolmV1PublicKey.publicKeyBase64, (server.auth_data as Json).public_key);
    const keys = (await rust.call("GET", `/_matrix/client/v3/room_keys/keys?version=${encodeURIComponent(info.version)}`)) as { rooms: Record<string, { sessions: Record<string, { session_data: { ephemeral: string; mac: string; ciphertext: string } }> }> };
    const byRoom = new Map<wasm.RoomId, Map<string, unknown>>();
    for (const [rid, r] of Object.entries(keys.rooms)) {
      byRoom.set(new wasm.RoomId(rid), new Map(Object.entries(r.sessions).map(([sid, d]) => [sid, JSON.parse(key.decryptV1(d.session_data.ephemeral, d.session_data.mac, d.session_data.ciphertext))])));
    }
    const imported = await rust.machine.importBackedUpRoomKeys(byRoom, () => undefined, info.version);
    assert.equal(imported.importedCount, 1);
    await rust.join(room.roomId);
    const history = (await rust.call("GET", `/_matrix/client/v3/rooms/${encodeURIComponent(room.roomId)}/messages?dir=b&limit=20`)) as { chunk: Json[] };
    const enc = history.chunk.find((e) => e.type === "m.room.encrypted")!;
    const dec = await rust.machine.decryptRoomEvent(JSON.stringify(enc), new wasm.RoomId(room.roomId), new wasm.DecryptionSettings(wasm.TrustRequirement.Untrusted));
    assert.equal((JSON.parse(dec.event) as { content: Json }).content.body, "from the sdk, backed up");
  });

  it("a version deleted on the server stops the upload and is reported (keyBackup.versionChanged), never silently replaced", async () => {
    const alice = (await hs.registerUser(uniqueName("bkgone"), PASSWORD)).userId;
    const a1 = await startClient(hs, alice, tempDir());
    clients.push(a1.client);
    const info = await a1.client.enableKeyBackup();
    const changes: { previous: string; current: string | null }[] = [];
    a1.client.on("keyBackup.versionChanged", (c) => changes.push(c));
    const other = await WasmPeer.login(hs.baseUrl, alice, PASSWORD);
    peers.push(other);
    await other.call("DELETE", `/_matrix/client/v3/room_keys/version/${encodeURIComponent(info.version)}`);
    const { version: replaced } = (await other.call("POST", "/_matrix/client/v3/room_keys/version", { algorithm: ALGORITHM, auth_data: { public_key: wasm.BackupDecryptionKey.createRandomKey().megolmV1PublicKey.publicKeyBase64 } })) as { version: string };
    const room = await a1.client.createRoom({ encrypted: true });
    await room.sendText("after the reset");
    await a1.client.flushKeyBackup();
    await waitUntil(async () => changes.length > 0, "the version change to be reported");
    assert.deepEqual(changes, [{ previous: info.version, current: replaced }]);
    assert.equal((await other.call("GET", "/_matrix/client/v3/room_keys/version")).count, 0, "nothing uploaded to the untrusted new version");
    // Enabling again refuses the new version: it is neither ours nor signed by us.
    await assert.rejects(a1.client.enableKeyBackup(), (e: unknown) => e instanceof InvalidArgumentError && e.details.reason === "untrusted");
  });

  it("setupRecovery: first run creates cross-signing, secret storage and backup; a fresh store restores them all with the recovery key", async () => {
    const alice = (await hs.registerUser(uniqueName("bkbot"), PASSWORD)).userId;
    const first = await startClient(hs, alice, tempDir());
    clients.push(first.client);
    const made = await first.client.setupRecovery({ password: PASSWORD });
    assert.deepEqual([made.created, made.restoredKeys], [true, 0]);
    assert.equal(JSON.stringify(made).includes(made.recoveryKey), false, "the recovery key is redacted");
    const room = await first.client.createRoom({ encrypted: true });
    await room.sendText("before the store was lost");
    await first.client.flushKeyBackup();

    const fresh = await startClient(hs, alice, tempDir());
    clients.push(fresh.client);
    await assert.rejects(fresh.client.setupRecovery(), InvalidArgumentError, "an existing account needs its recovery key");
    const again = await fresh.client.setupRecovery({ recoveryKey: made.recoveryKey });
    assert.deepEqual([again.created, again.restoredKeys, again.backupVersion], [false, 1, made.backupVersion]);
    assert.equal((await fresh.client.getUserIdentity(alice)).verified, true, "the fresh device holds the cross-signing keys");
    const msgs = decrypted(await fresh.client.fetchRoomHistory(room.roomId));
    assert.deepEqual(msgs.map((e) => e.content.body), ["before the store was lost"]);
  });

  it("an event whose session is missing is decrypted from the backup (one-session download) when the backup key is held", async () => {
    const alice = (await hs.registerUser(uniqueName("bkutd"), PASSWORD)).userId;
    const first = await startClient(hs, alice, tempDir());
    clients.push(first.client);
    const { recoveryKey } = await first.client.setupRecovery({ password: PASSWORD });
    const room = await first.client.createRoom({ encrypted: true });
    await room.sendText("only in the backup");
    await first.client.flushKeyBackup();
    // A new device that holds the backup key (from secret storage) but never got the session.
    const second = await startClient(hs, alice, tempDir(), { noStart: true });
    clients.push(second.client);
    const adopted = await second.client.enableKeyBackup({ recoveryKey });
    assert.deepEqual([adopted.created, adopted.trust.matchesKey], [false, true]);
    second.client.start();
    await second.rec.waitFor(() => second.rec.bodies(room.roomId).includes("only in the backup"), "the event decrypted from the backup");
    assert.deepEqual(second.rec.failures.filter((f) => f.roomId === room.roomId).map((f) => f.code), ["missing_session"]);
    const ev = second.rec.messages(room.roomId)[0]!;
    assert.deepEqual([ev.lateDecryption, ev.encryption?.verification], [true, "unauthenticated"]);
  });

  it("a version trusted by our master key's signature is adopted with the recovery key even when its private key is not in secret storage", async () => {
    const alice = (await hs.registerUser(uniqueName("bknokey"), PASSWORD)).userId;
    const a1 = await startClient(hs, alice, tempDir());
    clients.push(a1.client);
    const { recoveryKey } = await a1.client.bootstrapCrossSigning({ password: PASSWORD });
    const made = await a1.client.enableKeyBackup(); // no secret storage copy of the backup key
    const a2 = await startClient(hs, alice, tempDir());
    clients.push(a2.client);
    await a2.client.restoreCrossSigning({ recoveryKey });
    const adopted = await a2.client.enableKeyBackup({ recoveryKey });
    assert.deepEqual([adopted.version, adopted.created, adopted.trust.signedByMaster, adopted.trust.matchesKey], [made.version, false, true, false]);
  });
});
