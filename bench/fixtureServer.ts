/**
 * A tiny homeserver stand-in for the benchmark (a fixture, not a test): node:http on 127.0.0.1,
 * run in its own process (so serving responses costs the measured process nothing, and the
 * pre-serialised sync responses do not count in its memory).
 *
 * Serves /login, /account/whoami, /keys/upload (records the receiver's keys), /keys/query (the
 * senders' signed device keys), /keys/claim, /sendToDevice, server-side key backup
 * (/room_keys/version: 404 until a version is created, then version "1" with its count and etag;
 * PUT /room_keys/keys counts the sessions received), and /sync: the workload's batches in order, the first one carrying the room state and the Olm-encrypted room keys (built on the
 * parent's "prepare" message, once the receiver has uploaded its one-time keys). Past the last
 * batch, /sync long-polls like a real server.
 *
 * Started with fork(): argv[2] is a JSON config; talks to the parent over IPC.
 */
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { RECEIVER_DEVICE, initOlm, type Batch, type Json, type Manifest } from "./common.js";
import { buildRoomKeyToDevice, roomStateEvents, type ReceiverKeys } from "./workload.js";

export interface FixtureConfig {
  manifestDir: string;
  /** `since` token the client sends for the first batch (null: a fresh client sends none). */
  initialSince: string | null;
  /** Include room state (encryption, members) in the first batch. */
  includeState: boolean;
  userId: string;
  /** Silent members added to every room's state (big-rooms scenario). */
  extraMembersPerRoom?: number;
  /** One-time key count reported in every sync (default: what the server holds). */
  otkCountOverride?: number;
}

export type FixtureMessage =
  | { type: "ready"; port: number }
  | { type: "prepared"; toDevice: number; usedOneTimeKeys: number; ms: number }
  | { type: "stats"; requests: Record<string, number>; syncBytes: number; syncServed: number; backup: BackupStats }
  | { type: "error"; message: string };

/** What the fixture's key backup received. */
export interface BackupStats {
  /** The version created (`POST /room_keys/version`), null before. */
  version: string | null;
  /** Distinct (room, session) pairs uploaded to it. */
  sessions: number;
  /** `PUT /room_keys/keys` requests answered. */
  puts: number;
}

const cfg = JSON.parse(process.argv[2] ?? "{}") as FixtureConfig;
const manifest = JSON.parse(readFileSync(join(cfg.manifestDir, "manifest.json"), "utf8")) as Manifest;
const batches: Batch[] = readFileSync(join(cfg.manifestDir, "batches.jsonl"), "utf8")
  .split("\n")
  .filter((l) => l.length)
  .map((l) => JSON.parse(l) as Batch);

const send = (m: FixtureMessage): void => {
  process.send?.(m);
};

/**
 * Pre-serialised sync bodies, encoded, split where the one-time key count goes (spliced in when
 * served, so it is current): index 0 on "prepare", the others at start-up, all before the
 * measured window. Serving one is then a write of bytes (no string replace, no encoding), so the
 * fixture takes as little as it can of the cores the client shares with it.
 */
type Body = { head: Buffer; tail: Buffer; spliced: boolean };
const bodies: (Body | null)[] = batches.map(() => null);
const splitBody = (s: string): Body => {
  const at = s.indexOf(`"${OTK_PLACEHOLDER}"`);
  if (at < 0) return { head: Buffer.from(s), tail: Buffer.alloc(0), spliced: false };
  return { head: Buffer.from(s.slice(0, at)), tail: Buffer.from(s.slice(at + OTK_PLACEHOLDER.length + 2)), spliced: true };
};
let toDeviceEvents: Json[] = [];
const requests: Record<string, number> = {};
let syncBytes = 0;
let syncServed = 0;
/** Key backup: the version's POST body, and the sessions uploaded to it. */
let backupVersion: Json | null = null;
const backedUp = new Set<string>();
let backupPuts = 0;
const backupStats = (): BackupStats => ({ version: backupVersion ? "1" : null, sessions: backedUp.size, puts: backupPuts });

function syncBody(k: number): string {
  const batch = batches[k]!;
  const join: Json = {};
  const roomIds = k === 0 && cfg.includeState ? manifest.rooms : Object.keys(batch);
  for (const roomId of roomIds) {
    const room: Json = { timeline: { events: batch[roomId] ?? [], limited: false, prev_batch: `p${k}` } };
    if (k === 0 && cfg.includeState) room.state = { events: roomStateEvents(manifest, roomId, cfg.userId, cfg.extraMembersPerRoom ?? 0) };
    join[roomId] = room;
  }
  // The one-time key count is spliced in when served (OTK_PLACEHOLDER), so it is current.
  const body: Json = {
    device_one_time_keys_count: { signed_curve25519: OTK_PLACEHOLDER },
    next_batch: `b${k + 1}`,
    rooms: { join },
    device_unused_fallback_key_types: ["signed_curve25519"],
  };
  if (k === 0) {
    body.to_device = { events: toDeviceEvents };
    body.device_lists = { changed: manifest.senders.map((s) => s.userId), left: [] };
  }
  return JSON.stringify(body);
}

// Receiver keys, as uploaded.
let receiverDeviceKeys: Json | null = null;
const otks = new Map<string, string>();
let fallbackKey: string | null = null;
let claimed = 0;
const otkCount = (): number => cfg.otkCountOverride ?? Math.max(0, otks.size - claimed);
const OTK_PLACEHOLDER = "__BENCH_OTK_COUNT__";

function indexForSince(since: string | null): number {
  if (since === cfg.initialSince || (since === null && cfg.initialSince === null)) return 0;
  const m = since ? /^b(\d+)$/.exec(since) : null;
  return m ? Number(m[1]) : batches.length;
}

function json(res: ServerResponse, status: number, body: string | Json): void {
  const s = typeof body === "string" ? body : JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(s) });
  res.end(s);
}

function readBody(req: IncomingMessage): Promise<Json> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      try {
        resolve(chunks.length ? (JSON.parse(Buffer.concat(chunks).toString("utf8")) as Json) : {});
      } catch {
        resolve({});
      }
    });
  });
}

const held = new Set<ServerResponse>();

const server = createServer((req, res) => {
  void handle(req, res).catch((err: unknown) => json(res, 500, { errcode: "M_UNKNOWN", error: String(err) }));
});

async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
  const url = new URL(req.url ?? "/", "http://127.0.0.1");
  const path = url.pathname.replace(/^\/_matrix\/client\/(v3|r0)/, "");
  const route = path.startsWith("/sendToDevice/") ? "/sendToDevice" : path.startsWith("/room_keys/keys") ? "/room_keys/keys" : path;
  requests[route] = (requests[route] ?? 0) + 1;
  const body = req.method === "GET" ? {} : await readBody(req);
  switch (route) {
    case "/login":
      return json(res, 200, { user_id: cfg.userId, access_token: "bench-token", device_id: typeof body.device_id === "string" ? body.device_id : RECEIVER_DEVICE });
    case "/account/whoami":
      return json(res, 200, { user_id: cfg.userId, device_id: RECEIVER_DEVICE });
    case "/keys/upload": {
      if (body.device_keys && typeof body.device_keys === "object") receiverDeviceKeys = body.device_keys as Json;
      for (const v of Object.values((body.one_time_keys as Json | undefined) ?? {})) {
        const key = (v as Json).key;
        if (typeof key === "string") otks.set(key, key);
      }
      for (const v of Object.values((body.fallback_keys as Json | undefined) ?? {})) {
        const key = (v as Json).key;
        if (typeof key === "string") fallbackKey = key;
      }
      return json(res, 200, { one_time_key_counts: { signed_curve25519: otkCount() } });
    }
    case "/keys/query": {
      const wanted = Object.keys((body.device_keys as Json | undefined) ?? {});
      const device_keys: Json = {};
      for (const u of wanted) {
        const devs: Json = {};
        for (const s of manifest.senders) if (s.userId === u) devs[s.deviceId] = s.deviceKeys;
        if (u === cfg.userId && receiverDeviceKeys) devs[String(receiverDeviceKeys.device_id)] = receiverDeviceKeys;
        device_keys[u] = devs;
      }
      return json(res, 200, { device_keys, failures: {} });
    }
    case "/keys/claim":
      return json(res, 200, { one_time_keys: {}, failures: {} });
    case "/sendToDevice":
      return json(res, 200, {});
    case "/room_keys/version": {
      if (req.method === "POST") {
        backupVersion = body;
        return json(res, 200, { version: "1" });
      }
      if (!backupVersion) return json(res, 404, { errcode: "M_NOT_FOUND", error: "No current backup version" });
      return json(res, 200, { ...backupVersion, version: "1", count: backedUp.size, etag: String(backedUp.size) });
    }
    case "/room_keys/keys": {
      if (req.method !== "PUT") return json(res, 404, { errcode: "M_UNRECOGNIZED", error: `bench fixture does not serve ${req.method} ${path}` });
      if (!backupVersion || url.searchParams.get("version") !== "1") return json(res, 403, { errcode: "M_WRONG_ROOM_KEYS_VERSION", error: "Wrong backup version.", current_version: backupVersion ? "1" : null });
      for (const [roomId, room] of Object.entries((body.rooms as Record<string, Json> | undefined) ?? {})) {
        for (const sessionId of Object.keys((room.sessions as Json | undefined) ?? {})) backedUp.add(`${roomId}|${sessionId}`);
      }
      backupPuts++;
      return json(res, 200, { count: backedUp.size, etag: String(backedUp.size) });
    }
    case "/sync": {
      const since = url.searchParams.get("since");
      const k = indexForSince(since);
      if (k < batches.length) {
        const { head, tail, spliced } = bodies[k] ?? (bodies[k] = splitBody(syncBody(k)));
        const count = Buffer.from(spliced ? String(otkCount()) : "");
        const length = head.length + count.length + tail.length;
        syncBytes += length;
        syncServed++;
        res.writeHead(200, { "content-type": "application/json", "content-length": length });
        res.cork();
        res.write(head);
        res.write(count);
        res.end(tail);
        return;
      }
      // Past the end: long-poll like a real server.
      const timeout = Math.min(Number(url.searchParams.get("timeout") ?? "0") || 0, 30_000);
      held.add(res);
      const t = setTimeout(() => {
        held.delete(res);
        json(res, 200, { next_batch: since ?? "end" });
      }, timeout);
      res.on("close", () => {
        clearTimeout(t);
        held.delete(res);
      });
      return;
    }
    default:
      return json(res, 404, { errcode: "M_UNRECOGNIZED", error: `bench fixture does not serve ${req.method} ${path}` });
  }
}

process.on("message", (m: { cmd: string }) => {
  if (m.cmd === "prepare") {
    void (async () => {
      const t0 = performance.now();
      await initOlm();
      const dk = receiverDeviceKeys;
      if (!dk) throw new Error("the receiver has not uploaded its device keys");
      const deviceId = String(dk.device_id);
      const keys = dk.keys as Record<string, string>;
      const receiver: ReceiverKeys = {
        userId: cfg.userId,
        deviceId,
        ed25519: keys[`ed25519:${deviceId}`]!,
        curve25519: keys[`curve25519:${deviceId}`]!,
        oneTimeKeys: [...otks.keys()],
        fallbackKey,
      };
      const built = buildRoomKeyToDevice(manifest, receiver);
      toDeviceEvents = built.events;
      claimed = Math.min(built.usedOneTimeKeys, otks.size);
      bodies[0] = splitBody(syncBody(0));
      send({ type: "prepared", toDevice: built.events.length, usedOneTimeKeys: built.usedOneTimeKeys, ms: performance.now() - t0 });
    })().catch((err: unknown) => send({ type: "error", message: String(err) }));
  } else if (m.cmd === "stats") {
    send({ type: "stats", requests, syncBytes, syncServed, backup: backupStats() });
  } else if (m.cmd === "exit") {
    for (const r of held) r.destroy();
    server.close();
    process.exit(0);
  }
});
process.on("disconnect", () => process.exit(0));

for (let k = 1; k < batches.length; k++) bodies[k] = splitBody(syncBody(k));
server.keepAliveTimeout = 60_000;
server.listen(0, "127.0.0.1", () => {
  const addr = server.address();
  send({ type: "ready", port: typeof addr === "object" && addr ? addr.port : 0 });
});
