/**
 * The send benchmark's homeserver stand-in (a fixture, not a test), run in its own process: it
 * answers `PUT /rooms/{id}/send/...` at once, and serves just enough for an encrypted client to
 * share a room key: /login, /keys/upload, /keys/query and /keys/claim for one peer user with
 * `peerDevices` devices (real libolm keys), /sendToDevice, /members, the room encryption state,
 * and a /sync whose first answer joins the client to `encryptedRooms` encrypted and `plainRooms`
 * plain rooms (later syncs long-poll).
 *
 * Started with fork(): argv[2] is a JSON config; it sends `{ type: "ready", port }` over IPC.
 */
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { OlmPeer, initOlm } from "../test/support/olmPeer.js";
import { encryptedRoomId, plainRoomId, type SendServerConfig } from "./sendRooms.js";

type Json = Record<string, unknown>;

const cfg = JSON.parse(process.argv[2] ?? "{}") as SendServerConfig;

function json(res: ServerResponse, status: number, body: unknown): void {
  const s = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(s) });
  res.end(s);
}

function drain(req: IncomingMessage): Promise<string> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
  });
}

async function main(): Promise<void> {
  await initOlm();
  const peers = Array.from({ length: cfg.peerDevices }, (_, i) => new OlmPeer(cfg.peerUserId, `PEER${i}`));
  const otks = new Map(peers.map((p) => [p.deviceId, Object.entries(p.signedOtks(50))]));
  const members = (roomId: string): Json[] =>
    [cfg.userId, cfg.peerUserId].map((u) => ({ type: "m.room.member", state_key: u, sender: u, event_id: `$m${u}${roomId}`, origin_server_ts: 1, content: { membership: "join" } }));
  const encrypted = Array.from({ length: cfg.encryptedRooms }, (_, i) => encryptedRoomId(i));
  const plain = Array.from({ length: cfg.plainRooms }, (_, i) => plainRoomId(i));
  const roomState = (roomId: string, enc: boolean): Json[] => [
    { type: "m.room.create", state_key: "", sender: cfg.peerUserId, event_id: `$c${roomId}`, origin_server_ts: 1, content: { creator: cfg.peerUserId } },
    ...members(roomId),
    ...(enc ? [{ type: "m.room.encryption", state_key: "", sender: cfg.peerUserId, event_id: `$e${roomId}`, origin_server_ts: 1, content: { algorithm: "m.megolm.v1.aes-sha2" } }] : []),
  ];
  let eventCounter = 0;
  let ownDeviceKeys: Json | null = null;
  let syncs = 0;

  const server = createServer((req, res) => {
    void (async () => {
      const url = new URL(req.url ?? "/", "http://127.0.0.1");
      const path = decodeURIComponent(url.pathname.replace(/^\/_matrix\/client\/v3/, ""));
      const raw = req.method === "GET" ? "" : await drain(req);
      const body = raw ? (JSON.parse(raw) as Json) : {};
      if (req.method === "PUT" && /^\/rooms\/[^/]+\/send\//.test(path)) return json(res, 200, { event_id: `$ev${eventCounter++}` });
      if (path === "/login") return json(res, 200, { user_id: cfg.userId, access_token: "bench", device_id: "SENDER" });
      if (path === "/account/whoami") return json(res, 200, { user_id: cfg.userId, device_id: "SENDER" });
      if (path === "/keys/upload") {
        if (body.device_keys && typeof body.device_keys === "object") ownDeviceKeys = body.device_keys as Json;
        return json(res, 200, { one_time_key_counts: { signed_curve25519: 50 } });
      }
      if (path === "/keys/query") {
        const devs: Json = {};
        for (const p of peers) devs[p.deviceId] = p.deviceKeys();
        return json(res, 200, { device_keys: { [cfg.peerUserId]: devs, [cfg.userId]: ownDeviceKeys ? { SENDER: ownDeviceKeys } : {} }, failures: {} });
      }
      if (path === "/keys/claim") {
        const wanted = ((body.one_time_keys as Json | undefined)?.[cfg.peerUserId] ?? {}) as Json;
        const out: Json = {};
        for (const d of Object.keys(wanted)) {
          const next = otks.get(d)?.shift();
          if (next) out[d] = { [next[0]]: next[1] };
        }
        return json(res, 200, { one_time_keys: { [cfg.peerUserId]: out }, failures: {} });
      }
      if (path.startsWith("/sendToDevice/")) return json(res, 200, {});
      const m = /^\/rooms\/([^/]+)\/(members|state\/m\.room\.encryption\/?)$/.exec(path);
      if (m) {
        const roomId = m[1]!;
        if (m[2] === "members") return json(res, 200, { chunk: members(roomId) });
        return encrypted.includes(roomId) ? json(res, 200, { algorithm: "m.megolm.v1.aes-sha2" }) : json(res, 404, { errcode: "M_NOT_FOUND", error: "no encryption" });
      }
      if (path === "/sync") {
        if (syncs++ === 0) {
          const join: Json = {};
          for (const r of encrypted) join[r] = { state: { events: roomState(r, true) }, timeline: { events: [], limited: false } };
          for (const r of plain) join[r] = { state: { events: roomState(r, false) }, timeline: { events: [], limited: false } };
          return json(res, 200, { next_batch: `s${syncs}`, rooms: { join }, device_one_time_keys_count: { signed_curve25519: 50 } });
        }
        const timeout = Math.min(Number(url.searchParams.get("timeout") ?? "0") || 0, 30_000);
        const t = setTimeout(() => json(res, 200, { next_batch: `s${syncs}`, device_one_time_keys_count: { signed_curve25519: 50 } }), timeout);
        res.on("close", () => clearTimeout(t));
        return;
      }
      return json(res, 404, { errcode: "M_UNRECOGNIZED", error: `send fixture does not serve ${req.method} ${path}` });
    })().catch((err: unknown) => json(res, 500, { errcode: "M_UNKNOWN", error: String(err) }));
  });
  server.listen(0, "127.0.0.1", () => {
    const addr = server.address();
    process.send?.({ type: "ready", port: typeof addr === "object" && addr ? addr.port : 0 });
  });
  process.on("disconnect", () => process.exit(0));
}

void main();
