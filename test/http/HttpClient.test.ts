import { test, describe } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { MockAgent } from "undici";
import { HttpClient, makeTxnId, p, MAX_RETRY_AFTER_MS } from "../../src/http/HttpClient.js";
import { ClientClosedError, MatrixHttpError, NetworkError, MatrixSdkError, ErrorCode } from "../../src/protocol/errors.js";
import { computeBackoff, sleep } from "../../src/util/backoff.js";
import type { Logger } from "../../src/pure/logger.js";

const ORIGIN = "https://hs.example.org";

/** The part of undici's mock reply-callback options these tests read. */
interface MockCallOpts {
  path: string;
  method: string;
  headers?: unknown;
  body?: unknown;
}

interface Call {
  path: string;
  method: string;
  headers: Record<string, string>;
  body: string | undefined;
  at: number;
}

function normHeaders(h: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  if (!h) return out;
  if (typeof (h as { forEach?: unknown }).forEach === "function" && !Array.isArray(h)) {
    (h as unknown as { forEach(cb: (v: string, k: string) => void): void }).forEach((v, k) => {
      out[k.toLowerCase()] = v;
    });
    return out;
  }
  if (Array.isArray(h)) {
    const arr = h as unknown as string[];
    for (let i = 0; i + 1 < arr.length; i += 2) out[String(arr[i]).toLowerCase()] = String(arr[i + 1]);
    return out;
  }
  for (const [k, v] of Object.entries(h as Record<string, string>)) out[k.toLowerCase()] = String(v);
  return out;
}

function record(calls: Call[], opts: MockCallOpts): void {
  calls.push({
    path: opts.path,
    method: opts.method,
    headers: normHeaders(opts.headers),
    body: typeof opts.body === "string" ? opts.body : opts.body == null ? undefined : Buffer.from(opts.body as Uint8Array).toString("utf8"),
    at: performance.now(),
  });
}

function setup(clientOpts: ConstructorParameters<typeof HttpClient>[1] = {}): {
  agent: MockAgent;
  pool: ReturnType<MockAgent["get"]>;
  client: HttpClient;
  calls: Call[];
} {
  const agent = new MockAgent();
  agent.disableNetConnect();
  const pool = agent.get(ORIGIN);
  const client = new HttpClient(ORIGIN, { dispatcher: agent, baseBackoffMs: 1, maxBackoffMs: 5, ...clientOpts });
  return { agent, pool, client, calls: [] };
}

/** Register `n` replies (in order) on any path/method, recording each call. */
function replies(
  pool: ReturnType<MockAgent["get"]>,
  calls: Call[],
  ...seq: Array<{ status: number; data?: object | string; headers?: Record<string, string> }>
): void {
  for (const r of seq) {
    pool
      .intercept({ path: () => true, method: () => true })
      .reply((opts) => {
        record(calls, opts);
        return {
          statusCode: r.status,
          ...(r.data !== undefined ? { data: r.data } : {}),
          responseOptions: { headers: { "content-type": "application/json", ...(r.headers ?? {}) } },
        };
      });
  }
}

describe("HttpClient (MockAgent)", () => {
  test("200 JSON is parsed", async () => {
    const { pool, client, calls, agent } = setup();
    replies(pool, calls, { status: 200, data: { next_batch: "s1", rooms: {} } });
    const res = await client.request<{ next_batch: string }>("GET", "/_matrix/client/v3/sync", { query: { since: "s0", timeout: 30000, full_state: false, filter: undefined } });
    assert.deepEqual(res, { next_batch: "s1", rooms: {} });
    assert.equal(calls.length, 1);
    assert.equal(calls[0]!.method, "GET");
    assert.equal(calls[0]!.path, "/_matrix/client/v3/sync?since=s0&timeout=30000&full_state=false");
    await client.close();
    await agent.close();
  });

  test("Authorization header present with a token, absent without one or with auth:false", async () => {
    const { pool, client, calls, agent } = setup({ accessToken: "tok123" });
    replies(pool, calls, { status: 200, data: {} }, { status: 200, data: {} }, { status: 200, data: {} }, { status: 200, data: {} });
    assert.equal(client.accessToken, "tok123");
    await client.request("GET", "/_matrix/client/v3/account/whoami");
    await client.request("GET", "/_matrix/client/versions", { auth: false });
    client.setAccessToken(undefined);
    assert.equal(client.accessToken, undefined);
    await client.request("GET", "/_matrix/client/v3/account/whoami");
    client.setAccessToken("tok456");
    await client.request("POST", "/_matrix/client/v3/keys/query", { body: { device_keys: {} } });
    assert.equal(calls[0]!.headers.authorization, "Bearer tok123");
    assert.equal(calls[1]!.headers.authorization, undefined);
    assert.equal(calls[2]!.headers.authorization, undefined);
    assert.equal(calls[3]!.headers.authorization, "Bearer tok456");
    assert.equal(calls[3]!.headers["content-type"], "application/json");
    assert.deepEqual(JSON.parse(calls[3]!.body!), { device_keys: {} });
    await client.close();
    await agent.close();
  });

  test("404 M_NOT_FOUND → MatrixHttpError, not retried", async () => {
    const { pool, client, calls, agent } = setup();
    replies(pool, calls, { status: 404, data: { errcode: "M_NOT_FOUND", error: "Room not found" } }, { status: 200, data: {} });
    const err = await client.request("GET", "/_matrix/client/v3/rooms/x/state").then(
      () => assert.fail("should throw"),
      (e: unknown) => e,
    );
    assert.ok(err instanceof MatrixHttpError);
    assert.equal(err.status, 404);
    assert.equal(err.errcode, "M_NOT_FOUND");
    assert.equal(err.code, ErrorCode.Http);
    assert.match(err.message, /Room not found/);
    assert.ok(MatrixSdkError.isSdkError(err));
    assert.equal(calls.length, 1);
    await client.close();
    await agent.close();
  });

  test("other 4xx (400, 401, 403) are never retried", async () => {
    for (const status of [400, 401, 403]) {
      const { pool, client, calls, agent } = setup();
      replies(pool, calls, { status, data: { errcode: "M_FORBIDDEN", error: "no" } }, { status: 200, data: {} });
      await assert.rejects(client.request("GET", "/x"), (e: unknown) => e instanceof MatrixHttpError && e.status === status);
      assert.equal(calls.length, 1);
      await client.close();
      await agent.close();
    }
  });

  test("429 with retry_after_ms is retried after waiting", async () => {
    const { pool, client, calls, agent } = setup({ random: () => 0 });
    replies(pool, calls, { status: 429, data: { errcode: "M_LIMIT_EXCEEDED", error: "Too many requests", retry_after_ms: 20 } }, { status: 200, data: { ok: true } });
    const res = await client.request("GET", "/_matrix/client/v3/profile/%40a%3Ahs");
    assert.deepEqual(res, { ok: true });
    assert.equal(calls.length, 2);
    assert.ok(calls[1]!.at - calls[0]!.at >= 15, `waited only ${calls[1]!.at - calls[0]!.at} ms`);
    await client.close();
    await agent.close();
  });

  test("retry_after_ms nested in an error object and Retry-After header are read", async () => {
    const { pool, client, calls, agent } = setup();
    replies(
      pool,
      calls,
      { status: 429, data: { error: { errcode: "M_LIMIT_EXCEEDED", message: "slow down", retry_after_ms: 1234 } } },
      { status: 429, data: { errcode: "M_LIMIT_EXCEEDED" }, headers: { "retry-after": "7" } },
      { status: 503, data: "<html>bad gateway</html>", headers: { "content-type": "text/html" } },
    );
    const e1 = await client.request("GET", "/a", { retry: false }).catch((e: unknown) => e);
    assert.ok(e1 instanceof MatrixHttpError);
    assert.equal(e1.errcode, "M_LIMIT_EXCEEDED");
    assert.equal(e1.retryAfterMs, 1234);
    assert.ok(e1.isRateLimitError());
    assert.match(e1.message, /slow down/);
    const e2 = await client.request("GET", "/b", { retry: false }).catch((e: unknown) => e);
    assert.ok(e2 instanceof MatrixHttpError);
    assert.equal(e2.retryAfterMs, 7000);
    const e3 = await client.request("GET", "/c", { retry: false }).catch((e: unknown) => e);
    assert.ok(e3 instanceof MatrixHttpError);
    assert.equal(e3.status, 503);
    assert.equal(e3.errcode, undefined);
    assert.equal(calls.length, 3);
    await client.close();
    await agent.close();
  });

  test("503 twice then 200 → success after 3 calls", async () => {
    const { pool, client, calls, agent } = setup();
    replies(pool, calls, { status: 503, data: {} }, { status: 503, data: {} }, { status: 200, data: { v: 1 } });
    assert.deepEqual(await client.request("GET", "/_matrix/client/versions"), { v: 1 });
    assert.equal(calls.length, 3);
    await client.close();
    await agent.close();
  });

  test("500, 502 and 504 are retried", async () => {
    const { pool, client, calls, agent } = setup();
    replies(pool, calls, { status: 500, data: {} }, { status: 502, data: {} }, { status: 504, data: {} }, { status: 200, data: { v: 2 } });
    assert.deepEqual(await client.request("GET", "/v"), { v: 2 });
    assert.equal(calls.length, 4);
    await client.close();
    await agent.close();
  });

  test("network error (ECONNRESET) then 200 → success", async () => {
    const { pool, client, calls, agent } = setup();
    pool.intercept({ path: "/_matrix/client/v3/sync", method: "GET" }).replyWithError(new Error("ECONNRESET"));
    replies(pool, calls, { status: 200, data: { next_batch: "s2" } });
    assert.deepEqual(await client.request("GET", "/_matrix/client/v3/sync"), { next_batch: "s2" });
    assert.equal(calls.length, 1);
    agent.assertNoPendingInterceptors();
    await client.close();
    await agent.close();
  });

  test("network error without retry → NetworkError with cause", async () => {
    const { pool, client, agent } = setup();
    const cause = new Error("ECONNREFUSED");
    pool.intercept({ path: "/x", method: "GET" }).replyWithError(cause);
    const err = await client.request("GET", "/x", { retry: false }).catch((e: unknown) => e);
    assert.ok(err instanceof NetworkError);
    assert.equal(err.code, ErrorCode.Network);
    assert.equal(err.cause, cause);
    await client.close();
    await agent.close();
  });

  test("malformed JSON on 200 → typed M_NOT_JSON error, not a crash, not retried", async () => {
    const { pool, client, calls, agent } = setup();
    replies(pool, calls, { status: 200, data: "{not json" }, { status: 200, data: {} });
    const err = await client.request("GET", "/_matrix/client/v3/sync").catch((e: unknown) => e);
    assert.ok(err instanceof MatrixHttpError);
    assert.equal(err.errcode, "M_NOT_JSON");
    assert.equal(err.status, 200);
    assert.equal(calls.length, 1);
    await client.close();
    await agent.close();
  });

  test("maxRetries exceeded → last error thrown", async () => {
    const { pool, client, calls, agent } = setup({ maxRetries: 2 });
    replies(
      pool,
      calls,
      { status: 503, data: { errcode: "M_UNKNOWN", error: "first" } },
      { status: 502, data: { errcode: "M_UNKNOWN", error: "second" } },
      { status: 504, data: { errcode: "M_UNKNOWN", error: "last" } },
      { status: 200, data: {} },
    );
    const err = await client.request("GET", "/x").catch((e: unknown) => e);
    assert.ok(err instanceof MatrixHttpError);
    assert.equal(err.status, 504);
    assert.match(err.message, /last/);
    assert.equal(calls.length, 3);
    await client.close();
    await agent.close();
  });

  test("retry:false → no retry", async () => {
    const { pool, client, calls, agent } = setup();
    replies(pool, calls, { status: 503, data: {} }, { status: 200, data: {} });
    await assert.rejects(client.request("GET", "/x", { retry: false }), (e: unknown) => e instanceof MatrixHttpError && e.status === 503);
    assert.equal(calls.length, 1);
    await client.close();
    await agent.close();
  });

  test("close() aborts a pending backoff wait with ClientClosedError", async () => {
    const { pool, client, calls, agent } = setup();
    replies(pool, calls, { status: 429, data: { errcode: "M_LIMIT_EXCEEDED", retry_after_ms: 60_000 } }, { status: 200, data: {} });
    const started = performance.now();
    const pending = client.request("GET", "/x");
    const rejected = assert.rejects(pending, (e: unknown) => e instanceof ClientClosedError);
    while (calls.length === 0) await sleep(1);
    await sleep(5);
    await client.close();
    await rejected;
    assert.ok(performance.now() - started < 5_000);
    assert.equal(calls.length, 1);
    assert.equal(client.closed, true);
    await assert.rejects(client.request("GET", "/y"), (e: unknown) => e instanceof ClientClosedError);
    await client.close(); // idempotent
    await agent.close();
  });

  test("caller's AbortSignal rejects a pending backoff wait with its reason", async () => {
    const { pool, client, calls, agent } = setup();
    replies(pool, calls, { status: 503, data: {}, headers: { "retry-after": "60" } }, { status: 200, data: {} });
    const ac = new AbortController();
    const reason = new Error("stop");
    const pending = client.request("GET", "/x", { signal: ac.signal });
    const rejected = assert.rejects(pending, (e: unknown) => e === reason);
    while (calls.length === 0) await sleep(1);
    ac.abort(reason);
    await rejected;
    assert.equal(calls.length, 1);
    // Already-aborted signal: rejected without a request.
    await assert.rejects(client.request("GET", "/x", { signal: ac.signal }), (e: unknown) => e === reason);
    assert.equal(calls.length, 1);
    await client.close();
    await agent.close();
  });

  test("PUT with a txnId path is repeated identically on retry", async () => {
    const { pool, client, calls, agent } = setup();
    replies(pool, calls, { status: 500, data: {} }, { status: 200, data: { event_id: "$e" } });
    const txnId = makeTxnId();
    const path = p`/_matrix/client/v3/rooms/${"!room:hs.example.org"}/send/${"m.room.message"}/${txnId}`;
    const content = { msgtype: "m.text", body: "hello" };
    const res = await client.request<{ event_id: string }>("PUT", path, { body: content });
    assert.equal(res.event_id, "$e");
    assert.equal(calls.length, 2);
    assert.equal(calls[0]!.method, "PUT");
    assert.equal(calls[1]!.method, "PUT");
    assert.equal(calls[0]!.path, `/_matrix/client/v3/rooms/!room%3Ahs.example.org/send/m.room.message/${txnId}`);
    assert.equal(calls[1]!.path, calls[0]!.path);
    assert.equal(calls[1]!.body, calls[0]!.body);
    assert.deepEqual(JSON.parse(calls[0]!.body!), content);
    await client.close();
    await agent.close();
  });

  test("rawBody is sent with its content type", async () => {
    const { pool, client, calls, agent } = setup();
    replies(pool, calls, { status: 200, data: { content_uri: "mxc://hs/abc" } });
    const bytes = new TextEncoder().encode("raw-bytes");
    await client.request("POST", "/_matrix/media/v3/upload", { rawBody: bytes, contentType: "image/png", query: { filename: "a b.png" } });
    assert.equal(calls[0]!.headers["content-type"], "image/png");
    assert.equal(calls[0]!.body, "raw-bytes");
    assert.equal(calls[0]!.path, "/_matrix/media/v3/upload?filename=a+b.png");
    await client.close();
    await agent.close();
  });

  test("logs method, path without query, status; never the token nor the body", async () => {
    const lines: string[] = [];
    const rec = (m: string, ...a: unknown[]): void => {
      lines.push([m, ...a.map((x) => JSON.stringify(x))].join(" "));
    };
    const logger: Logger = { debug: rec, info: rec, warn: rec, error: rec };
    const { pool, client, calls, agent } = setup({ accessToken: "SECRET_TOKEN", logger });
    replies(pool, calls, { status: 503, data: {} }, { status: 200, data: {} });
    await client.request("PUT", "/_matrix/client/v3/sendToDevice/m.room.encrypted/t1", {
      body: { messages: { "@a:hs": { DEV: { ciphertext: "SECRET_BODY" } } } },
      query: { since: "SECRET_QUERY" },
    });
    const all = lines.join("\n");
    assert.ok(lines.length >= 2);
    assert.match(all, /PUT \/_matrix\/client\/v3\/sendToDevice\/m\.room\.encrypted\/t1 -> 200/);
    assert.match(all, /-> 503/);
    assert.doesNotMatch(all, /SECRET_TOKEN|SECRET_BODY|SECRET_QUERY/);
    await client.close();
    await agent.close();
  });

  test("base URL path prefix is kept", async () => {
    const agent = new MockAgent();
    agent.disableNetConnect();
    const pool = agent.get(ORIGIN);
    const calls: Call[] = [];
    replies(pool, calls, { status: 200, data: {} });
    const client = new HttpClient(`${ORIGIN}/matrix/`, { dispatcher: agent });
    await client.request("GET", "/_matrix/client/versions");
    assert.equal(calls[0]!.path, "/matrix/_matrix/client/versions");
    await client.close();
    await agent.close();
  });
});

describe("HttpClient (real local server)", () => {
  async function listen(handler: http.RequestListener): Promise<{ server: http.Server; url: string }> {
    const server = http.createServer(handler);
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const { port } = server.address() as AddressInfo;
    return { server, url: `http://127.0.0.1:${port}` };
  }
  async function shutdown(server: http.Server): Promise<void> {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  test("connection reset on the first request is classified as a network error and retried", async () => {
    let n = 0;
    const bodies: string[] = [];
    const { server, url } = await listen((req, res) => {
      n++;
      let body = "";
      req.on("data", (c: Buffer) => (body += c.toString("utf8")));
      req.on("end", () => {
        bodies.push(body);
        if (n === 1) {
          req.socket.destroy();
          return;
        }
        res.writeHead(200, { "content-type": "application/json" });
        res.end(JSON.stringify({ event_id: "$ok", auth: req.headers.authorization ?? null, url: req.url }));
      });
    });
    const warnings: string[] = [];
    const logger: Logger = { debug: () => {}, info: () => {}, warn: (m) => warnings.push(m), error: () => {} };
    const client = new HttpClient(url, { accessToken: "tok", baseBackoffMs: 1, maxBackoffMs: 5, logger });
    try {
      const res = await client.request<{ event_id: string; auth: string; url: string }>("PUT", p`/_matrix/client/v3/rooms/${"!r:hs"}/send/m.room.message/${"txn1"}`, {
        body: { body: "hi" },
      });
      assert.equal(res.event_id, "$ok");
      assert.equal(res.auth, "Bearer tok");
      assert.equal(res.url, "/_matrix/client/v3/rooms/!r%3Ahs/send/m.room.message/txn1");
      assert.equal(n, 2);
      assert.equal(bodies[0], bodies[1]);
      assert.equal(warnings.length, 1);
    } finally {
      await client.close();
      await shutdown(server);
    }
  });

  test("a reset without retry surfaces as NetworkError", async () => {
    const { server, url } = await listen((req) => {
      req.socket.destroy();
    });
    const client = new HttpClient(url);
    try {
      const err = await client.request("GET", "/x", { retry: false }).catch((e: unknown) => e);
      assert.ok(err instanceof NetworkError, String(err));
      assert.ok(err.cause !== undefined);
    } finally {
      await client.close();
      await shutdown(server);
    }
  });

  test("an attempt that exceeds timeoutMs is a retryable NetworkError", async () => {
    let n = 0;
    const { server, url } = await listen((req, res) => {
      n++;
      if (n === 1 || req.url === "/hang") return; // never answer
      res.writeHead(200, { "content-type": "application/json" });
      res.end('{"ok":true}');
    });
    const client = new HttpClient(url, { baseBackoffMs: 1, maxBackoffMs: 5 });
    try {
      assert.deepEqual(await client.request("GET", "/_matrix/client/v3/sync", { timeoutMs: 100 }), { ok: true });
      assert.equal(n, 2);
      const err = await client.request("GET", "/hang", { timeoutMs: 50, retry: false }).catch((e: unknown) => e);
      assert.ok(err instanceof NetworkError, String(err));
      assert.match(err.message, /timed out/);
    } finally {
      await client.close();
      await shutdown(server);
    }
  });

  test("close() aborts an in-flight request with ClientClosedError", async () => {
    let got = 0;
    const { server, url } = await listen(() => {
      got++; // never answer
    });
    const client = new HttpClient(url);
    try {
      const pending = client.request("GET", "/_matrix/client/v3/sync", { timeoutMs: 60_000 });
      const rejected = assert.rejects(pending, (e: unknown) => e instanceof ClientClosedError);
      while (got === 0) await sleep(2);
      await client.close();
      await rejected;
    } finally {
      await client.close();
      await shutdown(server);
    }
  });
});

describe("helpers", () => {
  test("p`` encodes interpolated values only", () => {
    assert.equal(p`/_matrix/client/v3/rooms/${"!a:b/c"}/state/${"m.room.member"}/${"@u:hs"}`, "/_matrix/client/v3/rooms/!a%3Ab%2Fc/state/m.room.member/%40u%3Ahs");
    assert.equal(p`/plain`, "/plain");
  });

  test("encodePath encodes each segment", () => {
    assert.equal(HttpClient.encodePath("_matrix", "client", "v3", "rooms", "!r:hs", "send", "m.room.message", "t 1"), "/_matrix/client/v3/rooms/!r%3Ahs/send/m.room.message/t%201");
  });

  test("makeTxnId is unique and URL-safe", () => {
    const ids = new Set<string>();
    for (let i = 0; i < 10_000; i++) ids.add(i % 2 ? makeTxnId() : HttpClient.makeTxnId());
    assert.equal(ids.size, 10_000);
    for (const id of ids) assert.match(id, /^[0-9a-z.]+$/);
  });

  test("computeBackoff: full jitter within [0, min(max, base*2^attempt)]", () => {
    assert.equal(computeBackoff(0, 500, 30_000, () => 0), 0);
    assert.equal(computeBackoff(0, 500, 30_000, () => 0.999999), 499);
    assert.equal(computeBackoff(3, 500, 30_000, () => 0.5), 2000);
    assert.equal(computeBackoff(100, 500, 30_000, () => 0.5), 15_000);
    assert.equal(computeBackoff(10_000, 500, 30_000, () => 0.999999), 29_999);
    for (let a = 0; a < 20; a++) {
      const d = computeBackoff(a, 1, 5, Math.random);
      assert.ok(d >= 0 && d <= 5);
    }
    assert.ok(MAX_RETRY_AFTER_MS === 300_000);
  });

  test("sleep resolves, and rejects promptly with the signal's reason", async () => {
    await sleep(1);
    const ac = new AbortController();
    const reason = new ClientClosedError();
    const t0 = performance.now();
    const s = sleep(60_000, ac.signal);
    setTimeout(() => ac.abort(reason), 5);
    await assert.rejects(s, (e: unknown) => e === reason);
    assert.ok(performance.now() - t0 < 5_000);
    await assert.rejects(sleep(10, ac.signal), (e: unknown) => e === reason);
  });
});
