/**
 * A scripted fake homeserver on undici's MockAgent, for fault-injection and hostile-input tests.
 *
 * It answers just enough of the client-server API for a real `MatrixClient` with a real crypto
 * worker: login/whoami, keys upload/query/claim, sendToDevice, room send, /members, and a /sync
 * that behaves like a real server: batch N is served for `since = tN` (so a client that failed
 * to process a batch gets the SAME batch again), and an up-to-date client is long-polled.
 *
 * Faults are scripted per path pattern and consumed in order: `reset` (connection reset, via a
 * persistent `replyWithError` dispatch whose path matcher consults the script), `hang` (no
 * answer: the client's timeout fires), `status` (any status and JSON body, e.g. 500, 429 with
 * `retry_after_ms`) and `raw` (any body text, e.g. malformed JSON).
 *
 * Every request is recorded (method, path with query, body, outcome).
 */
import { MockAgent } from "undici";

export const FAKE_ORIGIN = "https://hs.faults.test";
export const FAKE_SERVER_NAME = "faults.test";

type Json = Record<string, unknown>;

export type Fault =
  | { kind: "reset" }
  | { kind: "hang" }
  | { kind: "status"; status: number; body?: unknown }
  | { kind: "raw"; status: number; raw: string };

export interface Call {
  method: string;
  /** Path with query string. */
  path: string;
  body: string | undefined;
  at: number;
  /** "ok", "reset", "hang", "status:500", "raw:200", ... */
  outcome: string;
}

interface ReplyOpts {
  path: string;
  method: string;
  body?: unknown;
}

interface Reply {
  status: number;
  /** JSON value, or a string sent as is. */
  body: unknown;
  /** Resolve the body later (long-poll). */
  later?: () => Promise<unknown>;
}

/** A sync batch as the test scripts it (next_batch is filled in by the server unless `rawBody`). */
export type SyncBatch = Json | { rawBody: unknown };

const bodyText = (b: unknown): string | undefined =>
  typeof b === "string" ? b : b == null ? undefined : Buffer.from(b as Uint8Array).toString("utf8");

export class FakeHomeserver {
  readonly agent = new MockAgent();
  readonly calls: Call[] = [];
  userId: string;
  deviceId = "FAKEDEV";
  readonly accessToken = "fake-token";

  /** keys/upload request bodies (every attempt, parsed) with the status the server returned. */
  readonly uploads: { body: Json; status: number }[] = [];
  /** Server-side key registry: user → device → signed device keys. */
  readonly deviceKeys = new Map<string, Map<string, Json>>();
  /** Published one-time keys: "user|device" → key ID → key object. */
  readonly otks = new Map<string, Map<string, Json>>();
  /** To-device PUTs (every attempt). */
  readonly toDevice: { eventType: string; txnId: string; body: Json }[] = [];
  /** Room event PUTs (every attempt). */
  readonly roomSends: { roomId: string; eventType: string; txnId: string; body: Json }[] = [];
  /** Member events per room, for GET /members. */
  readonly members = new Map<string, Json[]>();
  /** Extra hook for keys/query: return a device map to REPLACE the registry's answer for a user. */
  keysQueryOverride: ((userId: string) => Json | undefined) | null = null;
  /** Hook for keys/upload: return a reply to override the default handling. */
  uploadHook: ((body: Json, attempt: number) => Reply | undefined) | null = null;

  private readonly faults: { pattern: RegExp; fault: Fault }[] = [];
  private readonly batches: SyncBatch[] = [];
  private batchWaiters: (() => void)[] = [];
  /** Delay before a keys/claim is answered (its one-time keys are taken at once), to make claims overlap. */
  claimDelayMs = 0;
  /** Long-poll duration of an up-to-date /sync. */
  syncPollMs = 150;
  /** Fuzz mode: a batch the client failed on (it asks for the same `since` again) is skipped. */
  skipFailedBatches = false;
  /** How often each batch was served: index → count. */
  readonly served = new Map<number, number>();
  /** Batches the client asked for again after being given them (it failed to process them). */
  readonly rerequested = new Set<number>();
  private eventCounter = 0;
  private uploadAttempts = 0;

  constructor(userId = `@me:${FAKE_SERVER_NAME}`) {
    this.userId = userId;
    this.agent.disableNetConnect();
    const pool = this.agent.get(FAKE_ORIGIN);
    // 1. Connection resets: a persistent error dispatch whose path matcher consumes "reset" faults.
    const err = Object.assign(new Error("read ECONNRESET (injected)"), { code: "ECONNRESET" });
    pool
      .intercept({
        path: (p: string) => {
          const i = this.faults.findIndex((f) => f.pattern.test(p));
          if (i < 0 || this.faults[i]!.fault.kind !== "reset") return false;
          this.faults.splice(i, 1);
          this.calls.push({ method: "?", path: p, body: undefined, at: Date.now(), outcome: "reset" });
          return true;
        },
        method: () => true,
      })
      .replyWithError(err)
      .persist();
    // 2. Everything else: one callback routing every request.
    pool
      .intercept({ path: () => true, method: () => true })
      .reply((opts: ReplyOpts) => {
        const r = this.handle(opts);
        const data = r.later
          ? async () => {
              const v = await r.later!();
              return typeof v === "string" ? v : JSON.stringify(v);
            }
          : typeof r.body === "string"
            ? r.body
            : JSON.stringify(r.body);
        return { statusCode: r.status, data: data as unknown as string, responseOptions: { headers: { "content-type": "application/json" } } };
      })
      .persist();
  }

  /** Script faults for requests whose path (with query) matches `pattern`, consumed in order. */
  fail(pattern: RegExp, ...faults: Fault[]): void {
    for (const fault of faults) this.faults.push({ pattern, fault });
  }

  /** Faults still waiting for their request. */
  pendingFaults(): number {
    return this.faults.length;
  }

  /** Append a sync batch; returns its index (served for `since = t<index>`, next_batch `t<index+1>`). */
  queueSync(batch: SyncBatch): number {
    this.batches.push(batch);
    const w = this.batchWaiters;
    this.batchWaiters = [];
    for (const f of w) f();
    return this.batches.length - 1;
  }

  /** Token the client gets after processing batch `index`. */
  static tokenAfter(index: number): string {
    return `t${index + 1}`;
  }

  get batchCount(): number {
    return this.batches.length;
  }

  /** A fresh event ID. */
  eventId(tag = "ev"): string {
    return `$${tag}${++this.eventCounter}_${Date.now().toString(36)}`;
  }

  /** Calls whose path matches. */
  callsTo(pattern: RegExp): Call[] {
    return this.calls.filter((c) => pattern.test(c.path));
  }

  /** Add a member event of `userId` in `roomId` (for /members). */
  setMember(roomId: string, userId: string, membership = "join"): Json {
    const ev = memberEvent(userId, membership, this.eventId("m"));
    const list = (this.members.get(roomId) ?? []).filter((e) => e.state_key !== userId);
    list.push(ev);
    this.members.set(roomId, list);
    return ev;
  }

  /** Publish device keys of a (fake) remote device in the registry. */
  publishDevice(userId: string, deviceId: string, keys: Json): void {
    if (!this.deviceKeys.has(userId)) this.deviceKeys.set(userId, new Map());
    this.deviceKeys.get(userId)!.set(deviceId, keys);
  }

  /** Publish one-time keys of a (fake) remote device. */
  publishOtks(userId: string, deviceId: string, keys: Record<string, Json>): void {
    const k = `${userId}|${deviceId}`;
    const m = this.otks.get(k) ?? new Map<string, Json>();
    for (const [id, v] of Object.entries(keys)) m.set(id, v);
    this.otks.set(k, m);
  }

  async close(): Promise<void> {
    const w = this.batchWaiters;
    this.batchWaiters = [];
    for (const f of w) f();
    await this.agent.close();
  }

  // -------------------------------------------------------------------------------------------

  private takeFault(path: string): Fault | null {
    const i = this.faults.findIndex((f) => f.pattern.test(path) && f.fault.kind !== "reset");
    if (i < 0) return null;
    // A reset scripted earlier for this path must be consumed first (by the error dispatch).
    const firstAny = this.faults.findIndex((f) => f.pattern.test(path));
    if (firstAny !== i) return null;
    return this.faults.splice(i, 1)[0]!.fault;
  }

  private handle(opts: ReplyOpts): Reply {
    const path = opts.path;
    const method = opts.method.toUpperCase();
    const body = bodyText(opts.body);
    const call: Call = { method, path, body, at: Date.now(), outcome: "ok" };
    this.calls.push(call);
    const fault = this.takeFault(path);
    if (fault) {
      switch (fault.kind) {
        case "hang":
          call.outcome = "hang";
          return { status: 200, body: "", later: () => new Promise<never>(() => undefined) };
        case "status":
          call.outcome = `status:${fault.status}`;
          if (path.includes("/keys/upload")) this.uploads.push({ body: parse(body), status: fault.status });
          if (path.includes("/sendToDevice/")) this.recordToDevice(path, body);
          return { status: fault.status, body: fault.body ?? { errcode: "M_UNKNOWN", error: `injected ${fault.status}` } };
        case "raw":
          call.outcome = `raw:${fault.status}`;
          return { status: fault.status, body: fault.raw };
        case "reset":
          break; // handled by the error dispatch
      }
    }
    const u = new URL(path, FAKE_ORIGIN);
    const p = u.pathname;
    const j = parse(body);
    let m: RegExpExecArray | null;
    if (method === "POST" && p === "/_matrix/client/v3/login") {
      if (typeof j.device_id === "string") this.deviceId = j.device_id;
      return ok({ user_id: this.userId, device_id: this.deviceId, access_token: this.accessToken });
    }
    if (method === "GET" && p === "/_matrix/client/v3/account/whoami") return ok({ user_id: this.userId, device_id: this.deviceId });
    if (method === "POST" && p === "/_matrix/client/v3/keys/upload") return this.keysUpload(j);
    if (method === "POST" && p === "/_matrix/client/v3/keys/query") return this.keysQuery(j);
    if (method === "POST" && p === "/_matrix/client/v3/keys/claim") {
      const r = this.keysClaim(j);
      const delay = this.claimDelayMs;
      return delay > 0 ? { status: r.status, body: "", later: () => new Promise((resolve) => setTimeout(() => resolve(r.body), delay)) } : r;
    }
    if (method === "PUT" && (m = /^\/_matrix\/client\/v3\/sendToDevice\/([^/]+)\/([^/]+)$/.exec(p))) {
      this.recordToDevice(path, body);
      return ok({});
    }
    if (method === "PUT" && (m = /^\/_matrix\/client\/v3\/rooms\/([^/]+)\/send\/([^/]+)\/([^/]+)$/.exec(p))) {
      this.roomSends.push({ roomId: decodeURIComponent(m[1]!), eventType: decodeURIComponent(m[2]!), txnId: decodeURIComponent(m[3]!), body: j });
      return ok({ event_id: `$sent_${decodeURIComponent(m[3]!)}` });
    }
    if (method === "GET" && (m = /^\/_matrix\/client\/v3\/rooms\/([^/]+)\/members$/.exec(p))) {
      return ok({ chunk: this.members.get(decodeURIComponent(m[1]!)) ?? [] });
    }
    if (method === "GET" && /^\/_matrix\/client\/v3\/rooms\/[^/]+\/state\/m\.room\.encryption\/?$/.test(p)) {
      return { status: 404, body: { errcode: "M_NOT_FOUND", error: "not found" } };
    }
    if (method === "GET" && p === "/_matrix/client/v3/sync") return this.sync(u.searchParams.get("since"));
    return { status: 404, body: { errcode: "M_UNRECOGNIZED", error: `fake server: no route for ${method} ${p}` } };
  }

  private recordToDevice(path: string, body: string | undefined): void {
    const m = /\/sendToDevice\/([^/?]+)\/([^/?]+)/.exec(path);
    if (m) this.toDevice.push({ eventType: decodeURIComponent(m[1]!), txnId: decodeURIComponent(m[2]!), body: parse(body) });
  }

  private keysUpload(j: Json): Reply {
    this.uploadAttempts++;
    const hooked = this.uploadHook?.(j, this.uploadAttempts);
    if (hooked) {
      this.uploads.push({ body: j, status: hooked.status });
      return hooked;
    }
    const key = `${this.userId}|${this.deviceId}`;
    const mine = this.otks.get(key) ?? new Map<string, Json>();
    const otks = isObj(j.one_time_keys) ? j.one_time_keys : {};
    for (const [id, v] of Object.entries(otks)) {
      const old = mine.get(id);
      if (old && JSON.stringify(old) !== JSON.stringify(v)) {
        this.uploads.push({ body: j, status: 400 });
        return { status: 400, body: { errcode: "M_INVALID_PARAM", error: `One time key ${id} already exists. Old key: ${JSON.stringify(old)}; new key: ${JSON.stringify(v)}` } };
      }
    }
    for (const [id, v] of Object.entries(otks)) mine.set(id, v as Json);
    this.otks.set(key, mine);
    if (isObj(j.device_keys)) this.publishDevice(this.userId, this.deviceId, j.device_keys);
    this.uploads.push({ body: j, status: 200 });
    return ok({ one_time_key_counts: { signed_curve25519: mine.size } });
  }

  private keysQuery(j: Json): Reply {
    const out: Json = {};
    const wanted = isObj(j.device_keys) ? Object.keys(j.device_keys) : [];
    for (const u of wanted) {
      const o = this.keysQueryOverride?.(u);
      if (o) {
        out[u] = o;
        continue;
      }
      const devs = this.deviceKeys.get(u);
      out[u] = devs ? Object.fromEntries(devs) : {};
    }
    return ok({ device_keys: out, failures: {} });
  }

  private keysClaim(j: Json): Reply {
    const out: Json = {};
    const req = isObj(j.one_time_keys) ? j.one_time_keys : {};
    for (const [u, devs] of Object.entries(req)) {
      if (!isObj(devs)) continue;
      for (const d of Object.keys(devs)) {
        const pool = this.otks.get(`${u}|${d}`);
        const first = pool ? [...pool.entries()][0] : undefined;
        if (!first) continue;
        pool!.delete(first[0]);
        ((out[u] ??= {}) as Json)[d] = { [first[0]]: first[1] };
      }
    }
    return ok({ one_time_keys: out, failures: {} });
  }

  private sync(since: string | null): Reply {
    let idx = 0;
    if (since) {
      const mm = /^t(\d+)$/.exec(since);
      idx = mm ? Number(mm[1]) : this.batches.length;
    }
    if (idx < this.batches.length && (this.served.get(idx) ?? 0) > 0) this.rerequested.add(idx);
    if (this.skipFailedBatches && idx < this.batches.length && (this.served.get(idx) ?? 0) > 0) {
      // The client asked again for a batch it was already given: it failed on it. Move on.
      return ok({ next_batch: FakeHomeserver.tokenAfter(idx) });
    }
    if (idx < this.batches.length) return this.serveBatch(idx);
    return {
      status: 200,
      body: "",
      later: async () => {
        if (idx >= this.batches.length) {
          await new Promise<void>((resolve) => {
            const t = setTimeout(resolve, this.syncPollMs);
            this.batchWaiters.push(() => {
              clearTimeout(t);
              resolve();
            });
          });
        }
        if (idx < this.batches.length) return this.serveBatch(idx).body;
        return { next_batch: `t${idx}` };
      },
    };
  }

  private serveBatch(idx: number): Reply {
    this.served.set(idx, (this.served.get(idx) ?? 0) + 1);
    const b = this.batches[idx]!;
    if ("rawBody" in b) return { status: 200, body: b.rawBody };
    return ok({ ...b, next_batch: FakeHomeserver.tokenAfter(idx) });
  }
}

function ok(body: unknown): Reply {
  return { status: 200, body };
}

function parse(s: string | undefined): Json {
  if (!s) return {};
  try {
    const v: unknown = JSON.parse(s);
    return isObj(v) ? v : {};
  } catch {
    return {};
  }
}

export function isObj(v: unknown): v is Json {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** An `m.room.member` state event. */
export function memberEvent(userId: string, membership: string, eventId: string): Json {
  return { type: "m.room.member", state_key: userId, sender: userId, event_id: eventId, origin_server_ts: Date.now(), content: { membership } };
}

/** Sync `rooms.join` section for one room with state and timeline events. */
export function joinedRoom(state: Json[], timeline: Json[] = []): Json {
  return { state: { events: state }, timeline: { events: timeline, limited: false } };
}

/** Initial state of an encrypted room with the given members. */
export function encryptedRoomState(roomId: string, creator: string, members: string[], encryption: Json = { algorithm: "m.megolm.v1.aes-sha2" }): Json[] {
  let n = 0;
  const id = (): string => `$state_${roomId.replace(/[^a-z0-9]/gi, "")}_${n++}`;
  return [
    { type: "m.room.create", state_key: "", sender: creator, event_id: id(), origin_server_ts: 1, content: { creator, room_version: "10" } },
    { type: "m.room.encryption", state_key: "", sender: creator, event_id: id(), origin_server_ts: 2, content: encryption },
    { type: "m.room.history_visibility", state_key: "", sender: creator, event_id: id(), origin_server_ts: 3, content: { history_visibility: "shared" } },
    ...members.map((u) => memberEvent(u, "join", id())),
  ];
}
