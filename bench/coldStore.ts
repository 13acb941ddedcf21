/**
 * A pre-populated SQLite crypto store for the cold-start measurement: the receiver's account
 * (keys published), 10 known sender devices, 100 encrypted rooms, and N real inbound Megolm
 * sessions (N distinct libolm sessions — session IDs are public keys, so each needs its own
 * `OutboundGroupSession.create()`; pickles cannot be copied). Written with the store's own
 * `saveChanges` in big batches.
 *
 * Also writes a one-batch workload (manifest.json + batches.jsonl) whose events are encrypted
 * with a few of those sessions picked at random, for the fixture server to serve as the first
 * sync after the restart.
 */
import Olm from "@matrix-org/olm";
import { mkdirSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { DeviceRecord, InboundGroupSessionRecord } from "../src/protocol/store.js";
import { noopLogger } from "../src/pure/logger.js";
import { CryptoEngine } from "../workers/engine/CryptoEngine.js";
import { SqliteCryptoStore } from "../workers/store/sqlite/SqliteCryptoStore.js";
import { BENCH_PICKLE_KEY, MEGOLM, RECEIVER_DEVICE, RECEIVER_USER, initOlm, prng, type Json, type Manifest, type SessionInfo } from "./common.js";
import { createSender, plaintextFor } from "./workload.js";

export interface ColdStoreInfo {
  sessions: number;
  syncToken: string;
  /** Seconds to create the N libolm sessions (create + pickle). */
  sessionGenSeconds: number;
  /** Seconds spent in saveChanges. */
  storeWriteSeconds: number;
  fileBytes: number;
}

const ROOMS = 100;
const SENDERS = 10;
const PROBE_SESSIONS = 10;
const EVENTS_PER_PROBE = 5;
const SAVE_BATCH = 5000;

export async function generateColdStore(dir: string, n: number, seed: number): Promise<ColdStoreInfo> {
  await initOlm();
  mkdirSync(dir, { recursive: true });
  const rnd = prng(seed);
  const path = join(dir, "crypto.db");
  const store = new SqliteCryptoStore(path, noopLogger);
  await store.open();
  const engine = new CryptoEngine({ olm: Olm, store, pickleKey: BENCH_PICKLE_KEY, logger: noopLogger });
  await engine.loadAccount(RECEIVER_USER, RECEIVER_DEVICE);
  engine.release();
  const account = (await store.useAccount(RECEIVER_USER, RECEIVER_DEVICE))!;

  const rooms = Array.from({ length: ROOMS }, (_, i) => `!cold${i}:bench.local`);
  const senders = Array.from({ length: SENDERS }, (_, j) => createSender(`@sender${j}:bench.local`, `SENDER${j}`));
  const now = Date.now();
  const devices: DeviceRecord[] = senders.map((s) => ({
    userId: s.userId,
    deviceId: s.deviceId,
    ed25519: s.ed25519,
    curve25519: s.curve25519,
    algorithms: ["m.olm.v1.curve25519-aes-sha2", MEGOLM],
    displayName: `bench sender ${s.deviceId}`,
    verified: false,
    blacklisted: false,
    ignored: false,
    deleted: false,
    keysJson: JSON.stringify(s.deviceKeys),
    firstSeenTs: now,
  }));
  const syncToken = "cold-0";
  store.saveChanges({
    account: { ...account, deviceKeysUploaded: true },
    devices,
    trackedUsers: [{ userId: RECEIVER_USER, dirty: false }, ...senders.map((s) => ({ userId: s.userId, dirty: false }))],
    rooms: rooms.map((roomId) => ({ roomId, encryption: { algorithm: MEGOLM }, historyVisibility: "shared" })),
    roomMembers: rooms.flatMap((roomId) => [RECEIVER_USER, ...senders.map((s) => s.userId)].map((userId) => ({ roomId, userId, membership: "join" }))),
    values: Object.fromEntries(rooms.map((r) => [`members_loaded:${r}`, "1"])),
    syncToken,
  });

  // Probe sessions: a few random positions whose outbound side we keep to encrypt the first sync.
  const probeAt = new Set<number>();
  while (probeAt.size < Math.min(PROBE_SESSIONS, n)) probeAt.add(Math.floor(rnd() * n));
  const probes: { og: Olm.OutboundGroupSession; info: SessionInfo }[] = [];

  let genMs = 0;
  let writeMs = 0;
  let batch: InboundGroupSessionRecord[] = [];
  const flush = (): void => {
    const t = performance.now();
    store.saveChanges({ inboundGroupSessions: batch });
    writeMs += performance.now() - t;
    batch = [];
  };
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    const roomId = rooms[i % ROOMS]!;
    const senderIdx = Math.floor(i / ROOMS) % SENDERS;
    const sender = senders[senderIdx]!;
    const og = new Olm.OutboundGroupSession();
    og.create();
    const ig = new Olm.InboundGroupSession();
    ig.create(og.session_key());
    const sessionId = ig.session_id();
    batch.push({
      roomId,
      senderKey: sender.curve25519,
      sessionId,
      pickle: ig.pickle(BENCH_PICKLE_KEY),
      claimedEd25519: sender.ed25519,
      forwardingChain: [],
      firstKnownIndex: 0,
      source: "room_key",
      createdTs: now,
    });
    ig.free();
    if (probeAt.has(i)) probes.push({ og, info: { roomId, sender: senderIdx, sessionId, sessionKey: "", lost: false } });
    else og.free();
    genMs += performance.now() - t;
    if (batch.length >= SAVE_BATCH) flush();
  }
  if (batch.length) flush();
  await store.close();

  // The first sync after the restart: a few events per probe session.
  const events: Record<string, Json[]> = {};
  let k = 0;
  for (const { og, info } of probes) {
    const sender = senders[info.sender]!;
    for (let e = 0; e < EVENTS_PER_PROBE; e++) {
      (events[info.roomId] ??= []).push({
        type: "m.room.encrypted",
        event_id: `$cold${k++}:bench.local`,
        sender: sender.userId,
        origin_server_ts: now + k,
        content: { algorithm: MEGOLM, sender_key: sender.curve25519, ciphertext: og.encrypt(plaintextFor(info.roomId, k, 200)), session_id: info.sessionId, device_id: sender.deviceId },
      });
    }
    og.free();
  }
  writeFileSync(join(dir, "batches.jsonl"), JSON.stringify(events) + "\n");
  const manifest: Manifest = {
    name: `cold-${n}`,
    dir,
    rooms,
    senders,
    sessions: probes.map((p) => p.info),
    payloadBytes: 200,
    plaintextBytesAvg: 200,
    eventJsonBytesAvg: 0,
    totalEvents: k,
    decryptableEvents: k,
    undecryptableEvents: 0,
    outOfOrderEvents: 0,
    batchSize: k,
    batches: 1,
    generationSeconds: (genMs + writeMs) / 1000,
  };
  writeFileSync(join(dir, "manifest.json"), JSON.stringify(manifest));
  const info: ColdStoreInfo = { sessions: n, syncToken, sessionGenSeconds: genMs / 1000, storeWriteSeconds: writeMs / 1000, fileBytes: statSync(path).size };
  writeFileSync(join(dir, "cold.json"), JSON.stringify(info));
  return info;
}
