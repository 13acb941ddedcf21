/**
 * Workload generation with real libolm sessions: R rooms × S sending devices × M messages,
 * Megolm-encrypted by real `OutboundGroupSession`s, interleaved across rooms, a few delivered out
 * of order, about 1 % encrypted with sessions the receiver never gets (undecryptable), cut into
 * sync-sized batches. The room keys reach the receiver as real Olm-encrypted `m.room_key`
 * to-device events, built by {@link buildRoomKeyToDevice} once the receiver's device has uploaded
 * its keys (see fixtureServer.ts).
 */
import Olm from "@matrix-org/olm";
import { createWriteStream, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { canonicalJson, signablePart } from "../workers/engine/canonicalJson.js";
import {
  BENCH_PICKLE_KEY,
  MEGOLM,
  OLM,
  initOlm,
  prng,
  type Json,
  type Manifest,
  type SenderDevice,
  type SessionInfo,
} from "./common.js";

export interface WorkloadSpec {
  name: string;
  rooms: number;
  senders: number;
  /** Messages per (room, sender). */
  messages: number;
  /** Messages per sender in each room, overriding `messages` (a skewed workload, see pool.ts); length = `rooms`. */
  messagesPerRoom?: number[];
  /** Target size of the Megolm plaintext (the JSON that is encrypted), bytes. */
  payloadBytes: number;
  /** Timeline events per sync response (across rooms). */
  batchSize: number;
  /** Share of events encrypted with sessions the receiver never gets. */
  undecryptableFraction: number;
  /** Share of events delayed by up to two batches (delivered after later indices of their session). */
  delayedFraction: number;
  seed: number;
}

/** Create a sending device: a real Olm account with signed device keys. */
export function createSender(userId: string, deviceId: string): SenderDevice {
  const account = new Olm.Account();
  try {
    account.create();
    const keys = JSON.parse(account.identity_keys()) as { ed25519: string; curve25519: string };
    const dk: Json = {
      user_id: userId,
      device_id: deviceId,
      algorithms: [OLM, MEGOLM],
      keys: { [`curve25519:${deviceId}`]: keys.curve25519, [`ed25519:${deviceId}`]: keys.ed25519 },
    };
    const sig = account.sign(canonicalJson(signablePart(dk)));
    const deviceKeys: Json = { ...dk, signatures: { [userId]: { [`ed25519:${deviceId}`]: sig } }, unsigned: { device_display_name: `bench sender ${deviceId}` } };
    return { userId, deviceId, accountPickle: account.pickle(BENCH_PICKLE_KEY), ed25519: keys.ed25519, curve25519: keys.curve25519, deviceKeys };
  } finally {
    account.free();
  }
}

const FILLER = "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore et dolore magna aliqua. ";

/** A message plaintext of about `bytes` bytes (JSON of type/content/room_id). */
export function plaintextFor(roomId: string, n: number, bytes: number): string {
  const base = JSON.stringify({ type: "m.room.message", content: { msgtype: "m.text", body: `#${n} ` }, room_id: roomId });
  let need = Math.max(0, bytes - base.length);
  let body = `#${n} `;
  while (need > 0) {
    const chunk = FILLER.slice(0, Math.min(need, FILLER.length));
    body += chunk;
    need -= chunk.length;
  }
  return JSON.stringify({ type: "m.room.message", content: { msgtype: "m.text", body }, room_id: roomId });
}

interface Pending {
  session: number;
  index: number;
  ciphertext: string;
  key: number;
}

/** Generate a workload into `dir` (manifest.json + batches.jsonl). */
export async function generateWorkload(spec: WorkloadSpec, dir: string): Promise<Manifest> {
  await initOlm();
  const t0 = performance.now();
  mkdirSync(dir, { recursive: true });
  const rnd = prng(spec.seed);
  const rooms = Array.from({ length: spec.rooms }, (_, i) => `!room${i}:bench.local`);
  const senders = Array.from({ length: spec.senders }, (_, j) => createSender(`@sender${j}:bench.local`, `SENDER${j}`));

  // Sessions: one per (room, sender), plus one "lost" session per room (key never shared).
  const sessions: SessionInfo[] = [];
  const outbound: Olm.OutboundGroupSession[] = [];
  const streamLen: number[] = [];
  if (spec.messagesPerRoom && spec.messagesPerRoom.length !== spec.rooms) throw new Error("messagesPerRoom needs one entry per room");
  for (let r = 0; r < spec.rooms; r++) {
    const messages = spec.messagesPerRoom?.[r] ?? spec.messages;
    const perRoom = spec.senders * messages;
    const lostPerRoom = spec.undecryptableFraction > 0 ? Math.max(1, Math.round(perRoom * spec.undecryptableFraction)) : 0;
    for (let s = 0; s <= spec.senders; s++) {
      const lost = s === spec.senders;
      if (lost && lostPerRoom === 0) continue;
      const sender = lost ? r % spec.senders : s;
      const og = new Olm.OutboundGroupSession();
      og.create();
      sessions.push({ roomId: rooms[r]!, sender, sessionId: og.session_id(), sessionKey: og.session_key(), lost });
      outbound.push(og);
      // The lost session's events are taken from its sender's own stream, so a room has S × M events.
      streamLen.push(lost ? lostPerRoom : s === r % spec.senders ? messages - lostPerRoom : messages);
    }
  }

  // Encrypt every stream in index order; give each event a random position key that keeps the stream order.
  const all: Pending[] = [];
  let plaintextBytes = 0;
  let n = 0;
  for (let i = 0; i < sessions.length; i++) {
    const s = sessions[i]!;
    const og = outbound[i]!;
    const len = streamLen[i]!;
    for (let k = 0; k < len; k++) {
      const pt = plaintextFor(s.roomId, n++, spec.payloadBytes);
      plaintextBytes += Buffer.byteLength(pt);
      all.push({ session: i, index: k, ciphertext: og.encrypt(pt), key: (k + rnd()) / len });
    }
    og.free();
  }
  all.sort((a, b) => a.key - b.key);
  // Delay a few events by up to two batches: their session's later indices arrive first.
  for (let p = 0; p < all.length; p++) all[p]!.key = p;
  for (const e of all) if (rnd() < spec.delayedFraction) e.key += 1.5 + Math.floor(rnd() * 2 * spec.batchSize);
  all.sort((a, b) => a.key - b.key);

  // Count out-of-order deliveries, build the events and write the batches.
  const maxSeen = new Map<number, number>();
  let outOfOrder = 0;
  let eventBytes = 0;
  let undecryptable = 0;
  const out = createWriteStream(join(dir, "batches.jsonl"));
  const tsBase = 1_700_000_000_000;
  let batches = 0;
  for (let b = 0; b < all.length; b += spec.batchSize) {
    const batch: Record<string, Json[]> = {};
    for (let p = b; p < Math.min(all.length, b + spec.batchSize); p++) {
      const e = all[p]!;
      const s = sessions[e.session]!;
      const m = maxSeen.get(e.session);
      if (m !== undefined && e.index < m) outOfOrder++;
      maxSeen.set(e.session, Math.max(m ?? -1, e.index));
      if (s.lost) undecryptable++;
      const sender = senders[s.sender]!;
      const ev: Json = {
        type: "m.room.encrypted",
        event_id: `$ev${p}-${e.session}-${e.index}:bench.local`,
        sender: sender.userId,
        origin_server_ts: tsBase + p,
        content: { algorithm: MEGOLM, sender_key: sender.curve25519, ciphertext: e.ciphertext, session_id: s.sessionId, device_id: sender.deviceId },
        unsigned: { age: 1234 },
      };
      eventBytes += JSON.stringify(ev).length;
      (batch[s.roomId] ??= []).push(ev);
    }
    batches++;
    if (!out.write(JSON.stringify(batch) + "\n")) await new Promise<void>((r) => out.once("drain", () => r()));
  }
  await new Promise<void>((resolve, reject) => out.end((err?: Error | null) => (err ? reject(err) : resolve())));

  const manifest: Manifest = {
    name: spec.name,
    dir,
    rooms,
    senders,
    sessions,
    payloadBytes: spec.payloadBytes,
    plaintextBytesAvg: Math.round(plaintextBytes / all.length),
    eventJsonBytesAvg: Math.round(eventBytes / all.length),
    totalEvents: all.length,
    decryptableEvents: all.length - undecryptable,
    undecryptableEvents: undecryptable,
    outOfOrderEvents: outOfOrder,
    batchSize: spec.batchSize,
    batches,
    generationSeconds: (performance.now() - t0) / 1000,
  };
  writeFileSync(join(dir, "manifest.json"), JSON.stringify(manifest));
  return manifest;
}

/** What the fixture server learnt from the receiver's `/keys/upload`. */
export interface ReceiverKeys {
  userId: string;
  deviceId: string;
  ed25519: string;
  curve25519: string;
  /** Unclaimed one-time keys (curve25519, base64). */
  oneTimeKeys: string[];
  fallbackKey: string | null;
}

/**
 * The room keys of every non-lost session as Olm-encrypted `m.room_key` to-device events from
 * their senders to the receiver: one Olm session per sender (created from one of the receiver's
 * one-time keys, like `/keys/claim`), all in `m.room.encrypted` events as a homeserver delivers them.
 * Returns the events and how many one-time keys were used.
 */
export function buildRoomKeyToDevice(manifest: Manifest, receiver: ReceiverKeys): { events: Json[]; usedOneTimeKeys: number } {
  const events: Json[] = [];
  let used = 0;
  for (let j = 0; j < manifest.senders.length; j++) {
    const sender = manifest.senders[j]!;
    const mine = manifest.sessions.filter((s) => s.sender === j && !s.lost);
    if (!mine.length) continue;
    const otk = used < receiver.oneTimeKeys.length ? receiver.oneTimeKeys[used++]! : receiver.fallbackKey;
    if (!otk) throw new Error("the receiver published no one-time or fallback key");
    const account = new Olm.Account();
    const session = new Olm.Session();
    try {
      account.unpickle(BENCH_PICKLE_KEY, sender.accountPickle);
      session.create_outbound(account, receiver.curve25519, otk);
      for (const s of mine) {
        const payload = {
          type: "m.room_key",
          content: { algorithm: MEGOLM, room_id: s.roomId, session_id: s.sessionId, session_key: s.sessionKey },
          sender: sender.userId,
          sender_device: sender.deviceId,
          keys: { ed25519: sender.ed25519 },
          recipient: receiver.userId,
          recipient_keys: { ed25519: receiver.ed25519 },
        };
        const msg = session.encrypt(JSON.stringify(payload));
        events.push({
          type: "m.room.encrypted",
          sender: sender.userId,
          content: { algorithm: OLM, sender_key: sender.curve25519, ciphertext: { [receiver.curve25519]: { type: msg.type, body: msg.body } } },
        });
      }
    } finally {
      session.free();
      account.free();
    }
  }
  return { events, usedOneTimeKeys: used };
}

/**
 * Room state of the first sync: encryption, shared history, the receiver and every sender joined,
 * plus `extraMembers` silent members (distinct per room) for the big-rooms scenario.
 */
export function roomStateEvents(manifest: Manifest, roomId: string, receiverUserId: string, extraMembers = 0): Json[] {
  const ev = (type: string, stateKey: string, content: Json, sender = receiverUserId): Json => ({
    type,
    state_key: stateKey,
    content,
    sender,
    event_id: `$state-${type}-${stateKey}-${roomId}`,
    origin_server_ts: 1_600_000_000_000,
  });
  const state = [
    ev("m.room.create", "", { creator: receiverUserId, room_version: "10" }),
    ev("m.room.member", receiverUserId, { membership: "join" }),
    ev("m.room.encryption", "", { algorithm: MEGOLM }),
    ev("m.room.history_visibility", "", { history_visibility: "shared" }),
  ];
  for (const s of manifest.senders) state.push(ev("m.room.member", s.userId, { membership: "join" }, s.userId));
  const tag = roomId.slice(1, roomId.indexOf(":"));
  for (let i = 0; i < extraMembers; i++) {
    const u = `@m${i}-${tag}:bench.local`;
    state.push(ev("m.room.member", u, { membership: "join" }, u));
  }
  return state;
}
