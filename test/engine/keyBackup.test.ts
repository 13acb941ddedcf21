/**
 * Server-side key backup in the engine (real libolm), checked against an independent
 * implementation (matrix-sdk-crypto-wasm, the Rust crypto of Element): session data the SDK
 * encrypts is decrypted by the Rust `BackupDecryptionKey` and the Rust machine's backup restores
 * in the SDK; the trust rules of a version's `auth_data`; upload batches marked only once confirmed.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import * as wasm from "@matrix-org/matrix-sdk-crypto-wasm";
import Olm from "@matrix-org/olm";
import { KeyServer, Peer, roomState } from "./helpers.js";
import { decryptSessionData, encryptSessionData, KeyBackupError } from "../../workers/engine/backup/backupCrypto.js";
import { decryptStoredSecret, encodeRecoveryKey, generateRecoveryKey, makeKeyDescription } from "../../workers/engine/secrets/secretStorage.js";
import type { RoomDecryptResult } from "../../src/protocol/api.js";

const ROOM = "!backup:example.org";
const ALGORITHM = "m.megolm_backup.v1.curve25519-aes-sha2";
type Json = Record<string, unknown>;

function ok(r: RoomDecryptResult | undefined): RoomDecryptResult & { ok: true } {
  assert.ok(r, "no result");
  assert.equal(r.ok, true, r.ok ? "" : `${r.code}: ${r.message}`);
  return r as RoomDecryptResult & { ok: true };
}

/** Alice (A1) and Bob in an encrypted room; Bob sent `count` messages in `count` sessions (discarding between). */
async function roomWithHistory(count = 1): Promise<{ server: KeyServer; alice: Peer; bob: Peer; events: Json[] }> {
  const server = new KeyServer();
  const alice = await Peer.create(server, "@alice:example.org", "A1");
  const bob = await Peer.create(server, "@bob:example.org", "B");
  const members = { [alice.userId]: "join", [bob.userId]: "join" };
  for (const p of [alice, bob]) {
    await p.sync({ rooms: [roomState(ROOM, members)] });
    await p.flush();
  }
  const events: Json[] = [];
  for (let i = 0; i < count; i++) {
    events.push(await bob.encrypt(ROOM, `history ${i}`, `$h${i}`));
    await bob.engine.discardRoomKey(ROOM);
  }
  await alice.sync();
  return { server, alice, bob, events };
}

/** Secret storage input for a fresh key, and the key to read what was stored under it. */
function secretStorage(): { ss: { keyDescription: Json; keyId: string; recoveryKey: string }; key: Uint8Array } {
  const { privateKey } = generateRecoveryKey();
  return { ss: { keyDescription: makeKeyDescription(privateKey) as Json, keyId: "SSKEY", recoveryKey: encodeRecoveryKey(privateKey) }, key: privateKey };
}

/** Create a backup on `p` and make it the version `version` (as the server would answer it). */
async function createVersion(p: Peer, version = "1"): Promise<{ info: Json; backupKeyB64: string }> {
  const { ss, key } = secretStorage();
  const made = await p.engine.createKeyBackup(ss);
  const info = { version, algorithm: made.algorithm, auth_data: made.authData, etag: "0", count: 0 };
  await p.engine.activateKeyBackup(info);
  return { info, backupKeyB64: decryptStoredSecret(made.secret, ss.keyId, key, "m.megolm_backup.v1") };
}

describe("engine: key backup interoperates with matrix-sdk-crypto-wasm", () => {
  it("session data encrypted by the SDK decrypts with the Rust BackupDecryptionKey, and Rust's with the SDK", async () => {
    await wasm.initAsync();
    await Olm.init();
    const key = wasm.BackupDecryptionKey.createRandomKey();
    const plaintext = { algorithm: "m.megolm.v1.aes-sha2", sender_key: "sk", session_key: "AQ", sender_claimed_keys: { ed25519: "ed" }, forwarding_curve25519_key_chain: [] };
    const enc = encryptSessionData(Olm, key.megolmV1PublicKey.publicKeyBase64, plaintext);
    assert.deepEqual(JSON.parse(key.decryptV1(enc.ephemeral, enc.mac, enc.ciphertext)), plaintext);
    // A wrong key is refused by the Rust side too (the MAC covers the key).
    assert.throws(() => wasm.BackupDecryptionKey.createRandomKey().decryptV1(enc.ephemeral, enc.mac, enc.ciphertext));
    // The reverse: the SDK decrypts with the Rust key's private bytes.
    const priv = new Uint8Array(Buffer.from(key.toBase64(), "base64"));
    assert.deepEqual(decryptSessionData(Olm, priv, enc), plaintext);
    const wrong = new Uint8Array(32).fill(7);
    assert.throws(() => decryptSessionData(Olm, wrong, enc), (e: unknown) => e instanceof KeyBackupError && e.reason === "bad_mac");
  });

  it("an SDK upload batch restores in the Rust machine with the backup key (same sessions, same keys)", async () => {
    await wasm.initAsync();
    const { alice } = await roomWithHistory(2);
    const { info, backupKeyB64 } = await createVersion(alice, "3");
    const batch = alice.engine.keyBackupBatch(100);
    assert.ok(batch);
    assert.equal(batch.version, "3");
    const rust = await wasm.OlmMachine.initialize(new wasm.UserId("@alice:example.org"), new wasm.DeviceId("RUST"));
    const rustKey = wasm.BackupDecryptionKey.fromBase64(backupKeyB64);
    assert.equal(rustKey.megolmV1PublicKey.publicKeyBase64, (info.auth_data as Json).public_key);
    const decrypted = new Map<wasm.RoomId, Map<string, unknown>>();
    for (const [roomId, room] of Object.entries((batch.body.rooms ?? {}) as Record<string, { sessions: Record<string, { session_data: Json }> }>)) {
      const m = new Map<string, unknown>();
      for (const [sid, d] of Object.entries(room.sessions)) {
        const sd = d.session_data as { ephemeral: string; mac: string; ciphertext: string };
        m.set(sid, JSON.parse(rustKey.decryptV1(sd.ephemeral, sd.mac, sd.ciphertext)));
      }
      decrypted.set(new wasm.RoomId(roomId), m);
    }
    const res = await rust.importBackedUpRoomKeys(decrypted, () => undefined, "3");
    assert.equal(res.importedCount, 2);
    const rustExport = (JSON.parse(await rust.exportRoomKeys(() => true)) as Json[]).map((k) => [k.session_id, k.session_key]).sort();
    const ours = alice.engine.exportRoomKeysPage(100).keys.map((k) => [k.session_id, k.session_key]).sort();
    assert.deepEqual(rustExport, ours);
  });

  it("a backup the Rust machine uploaded restores in a fresh SDK engine with the backup key and decrypts the history as unauthenticated", async () => {
    await wasm.initAsync();
    const { server, alice, events } = await roomWithHistory(2);
    // The Rust device of Alice has the keys (imported from Alice's export) and backs them up.
    const rust = await wasm.OlmMachine.initialize(new wasm.UserId("@alice:example.org"), new wasm.DeviceId("RUST"));
    await rust.importExportedRoomKeys(JSON.stringify(alice.engine.exportRoomKeysPage(100).keys), () => undefined);
    const key = wasm.BackupDecryptionKey.createRandomKey();
    await rust.enableBackupV1(key.megolmV1PublicKey.publicKeyBase64, "9");
    const req = await rust.backupRoomKeys();
    assert.ok(req);
    const info = { version: "9", algorithm: ALGORITHM, auth_data: { public_key: key.megolmV1PublicKey.publicKeyBase64 } };

    const fresh = await Peer.create(server, "@alice:example.org", "A9");
    const before = await fresh.engine.decryptRoomEvents(ROOM, events);
    assert.deepEqual(before.map((r) => (r.ok ? "ok" : r.code)), ["missing_session", "missing_session"]);
    // The backup key in its recovery-key text form (as Element shows a legacy backup key).
    await fresh.engine.unlockKeyBackup(info, { backupKey: encodeRecoveryKey(new Uint8Array(Buffer.from(key.toBase64(), "base64"))) });
    const restored = await fresh.engine.importBackupSessions(info, JSON.parse(req.body) as Json);
    assert.deepEqual([restored.imported, restored.failed], [2, 0]);
    // The events that were waiting for these sessions come back decrypted, labelled unauthenticated.
    const again = restored.redecrypted.flatMap((b) => b.results).map(ok);
    assert.deepEqual(again.map((r) => [r.eventId, JSON.parse(r.plaintextJson).content.body, r.verification]).sort(), [
      ["$h0", "history 0", "unauthenticated"],
      ["$h1", "history 1", "unauthenticated"],
    ]);
    const rec = fresh.store.listInboundGroupSessions(10)[0]!;
    assert.deepEqual(rec.senderData, { kind: "backup", version: "9" });
  });
});

describe("engine: key backup trust, wrong keys and upload bookkeeping", () => {
  it("trusts a version signed by this device or our master key, or whose key we hold; refuses an unsigned one (untrusted) and one signed by an unverified own device", async () => {
    const { server, alice } = await roomWithHistory(1);
    // Cross-signing for Alice so the master key signs too.
    const cs = await alice.engine.prepareCrossSigning();
    server.uploadCrossSigning(alice.userId, cs.deviceSigningUpload, cs.signatureUpload);
    await alice.engine.commitCrossSigning(cs.masterKey);
    const { info } = await createVersion(alice, "1");
    const t = alice.engine.keyBackupStatus(info).trust!;
    assert.deepEqual([t.trusted, t.matchesKey, t.signedByMaster, t.signedByDevices], [true, true, true, ["A1"]]);

    // Another device of Alice (same user, fresh store): it holds no key, and A1 is not verified by it.
    const a2 = await Peer.create(server, alice.userId, "A2");
    await a2.sync({ deviceLists: { changed: [alice.userId] } });
    await a2.flush();
    const seen = a2.engine.keyBackupStatus(info).trust!;
    assert.deepEqual([seen.trusted, seen.matchesKey, seen.signedByMaster, seen.signedByDevices], [false, false, false, []]);
    await assert.rejects(a2.engine.activateKeyBackup(info), (e: unknown) => e instanceof KeyBackupError && e.reason === "untrusted");
    assert.equal(a2.engine.keyBackupStatus(null).active, null, "nothing activated");
    // Once A2 marks A1 verified, A1's signature makes the version trusted.
    await a2.engine.setDeviceFlags(alice.userId, "A1", { verified: true });
    assert.deepEqual(a2.engine.keyBackupStatus(info).trust!.signedByDevices, ["A1"]);

    // A forged signature (auth_data altered after signing) is no signature.
    const forged = { ...info, auth_data: { ...(info.auth_data as Json), public_key: Buffer.alloc(32, 1).toString("base64").replace(/=+$/, "") } };
    const ft = alice.engine.keyBackupStatus(forged).trust!;
    assert.deepEqual([ft.trusted, ft.signedByMaster, ft.signedByDevices], [false, false, []]);
    await assert.rejects(alice.engine.activateKeyBackup(forged), (e: unknown) => e instanceof KeyBackupError && e.reason === "untrusted");
    // Another algorithm is refused as such.
    await assert.rejects(alice.engine.activateKeyBackup({ ...info, algorithm: "m.other" }), (e: unknown) => e instanceof KeyBackupError && e.reason === "unsupported_algorithm");
  });

  it("a wrong backup key is refused (bad_key) and nothing is imported", async () => {
    const { server, alice, events } = await roomWithHistory(1);
    const { info } = await createVersion(alice, "1");
    const batch = alice.engine.keyBackupBatch(100)!;
    const fresh = await Peer.create(server, alice.userId, "A3");
    const other = encodeRecoveryKey(generateRecoveryKey().privateKey);
    await assert.rejects(fresh.engine.unlockKeyBackup(info, { backupKey: other }), (e: unknown) => e instanceof KeyBackupError && e.reason === "bad_key");
    await assert.rejects(fresh.engine.importBackupSessions(info, batch.body), (e: unknown) => e instanceof KeyBackupError && e.reason === "bad_key");
    assert.equal(fresh.engine.exportRoomKeysPage(10).total, 0);
    assert.equal((await fresh.engine.decryptRoomEvents(ROOM, events))[0]!.ok, false);
  });

  it("a batch is marked backed up only once confirmed: a failed or unconfirmed batch (restart) goes out again, a confirmed one never", async () => {
    const { server, alice, bob } = await roomWithHistory(3);
    await createVersion(alice, "1");
    const first = alice.engine.keyBackupBatch(2)!;
    assert.equal(first.remaining, 3);
    const ids = (b: { body: Json }): string[] => Object.values(b.body.rooms as Record<string, { sessions: Json }>).flatMap((r) => Object.keys(r.sessions)).sort();
    // The server refused it: the same sessions again.
    await alice.engine.keyBackupBatchDone(first.id, false);
    const retry = alice.engine.keyBackupBatch(2)!;
    assert.deepEqual(ids(retry), ids(first));
    assert.deepEqual(await alice.engine.keyBackupBatchDone(retry.id, true), { marked: 2 });
    const rest = alice.engine.keyBackupBatch(2)!;
    assert.equal(rest.remaining, 1);
    // A restart before the answer: the restarted engine does not know the batch, marks nothing, hands the session out again.
    const restarted = new Peer(server, alice.userId, "A1", alice.store);
    await restarted.engine.loadAccount(alice.userId, "A1");
    assert.deepEqual(await restarted.engine.keyBackupBatchDone(rest.id, true), { marked: 0 });
    const again = restarted.engine.keyBackupBatch(10)!;
    assert.deepEqual(ids(again), ids(rest));
    await restarted.engine.keyBackupBatchDone(again.id, true);
    assert.equal(restarted.engine.keyBackupBatch(10), null, "everything is backed up once");
    // A new session arrives: only it goes out.
    const ev = await bob.encrypt(ROOM, "new", "$new");
    const k = `${alice.userId}|A1`;
    const inbox = server.inbox.get(k) ?? [];
    server.inbox.set(k, []);
    await restarted.engine.receiveSyncChanges({ nextBatch: "s2", toDevice: inbox, rooms: [] });
    const next = restarted.engine.keyBackupBatch(10)!;
    assert.deepEqual(ids(next), [(ev.content as Json).session_id as string]);
    // Backup off: no batch at all.
    await restarted.engine.activateKeyBackup(null);
    assert.equal(restarted.engine.keyBackupBatch(10), null);
  });
});
