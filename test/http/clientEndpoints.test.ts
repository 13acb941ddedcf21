/**
 * The client's escape hatch (`client.request`: the client's token and retries) and presence, on an
 * undici MockAgent (the harness Synapse runs with presence off).
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { MockAgent } from "undici";
import { MatrixClient, MatrixHttpError } from "../../src/index.js";

const ORIGIN = "https://hs.endpoints.test";
const ME = "@me:endpoints.test";
const TOKEN = "syt_endpoints_token";

/** The part of undici's reply-callback options these tests read. */
interface Seen {
  path: string;
  method: string;
  body?: unknown;
  headers?: unknown;
}
const header = (o: Seen, name: string): string | undefined => {
  const h = o.headers;
  if (Array.isArray(h)) for (let i = 0; i < h.length; i += 2) if (String(h[i]).toLowerCase() === name) return String(h[i + 1]);
  if (h && typeof h === "object") return (h as Record<string, string>)[name];
  return undefined;
};

describe("client.request and presence", () => {
  let agent: MockAgent;
  let client: MatrixClient;
  const seen: Seen[] = [];

  before(async () => {
    agent = new MockAgent();
    agent.disableNetConnect();
    const pool = agent.get(ORIGIN);
    pool.intercept({ path: "/_matrix/client/v3/account/whoami", method: "GET" }).reply(200, { user_id: ME });
    // The escape hatch: a 429 first (retried after retry_after_ms), then the answer.
    pool.intercept({ path: "/_matrix/client/v3/joined_rooms", method: "GET" }).reply((o) => {
      seen.push(o as Seen);
      return { statusCode: 429, data: { errcode: "M_LIMIT_EXCEEDED", error: "slow down", retry_after_ms: 20 } };
    });
    pool.intercept({ path: "/_matrix/client/v3/joined_rooms", method: "GET" }).reply((o) => {
      seen.push(o as Seen);
      return { statusCode: 200, data: { joined_rooms: ["!a:endpoints.test"] } };
    });
    pool.intercept({ path: "/_matrix/client/v3/rooms/%21nope%3Aendpoints.test/state", method: "GET" }).reply(403, { errcode: "M_FORBIDDEN", error: "not in room" });
    pool.intercept({ path: `/_matrix/client/v3/presence/${encodeURIComponent(ME)}/status`, method: "PUT" }).reply((o) => {
      seen.push(o as Seen);
      return { statusCode: 200, data: {} };
    });
    pool
      .intercept({ path: `/_matrix/client/v3/presence/${encodeURIComponent("@other:endpoints.test")}/status`, method: "GET" })
      .reply(200, { presence: "unavailable", status_msg: "lunch", last_active_ago: 1234, currently_active: false });
    client = new MatrixClient(ORIGIN, { dispatcher: agent });
    await client.loginWithToken(TOKEN);
  });
  after(async () => {
    await client.close();
    await agent.close();
  });

  it("client.request sends the client's access token and retries a 429 after retry_after_ms", async () => {
    const res = await client.request<{ joined_rooms: string[] }>("GET", "/_matrix/client/v3/joined_rooms");
    assert.deepEqual(res, { joined_rooms: ["!a:endpoints.test"] });
    const calls = seen.filter((s) => s.path === "/_matrix/client/v3/joined_rooms");
    assert.equal(calls.length, 2);
    assert.deepEqual(calls.map((c) => header(c, "authorization")), [`Bearer ${TOKEN}`, `Bearer ${TOKEN}`]);
  });

  it("client.request rejects an error answer with a typed MatrixHttpError", async () => {
    await assert.rejects(client.request("GET", "/_matrix/client/v3/rooms/%21nope%3Aendpoints.test/state"), (e: unknown) => e instanceof MatrixHttpError && e.status === 403 && e.errcode === "M_FORBIDDEN");
  });

  it("setPresence sends the state and status message; getPresence reads another user's", async () => {
    await client.setPresence("unavailable", "busy");
    const put = seen.find((s) => s.method === "PUT");
    assert.deepEqual(JSON.parse(String(put?.body)), { presence: "unavailable", status_msg: "busy" });
    assert.deepEqual(await client.getPresence("@other:endpoints.test"), { presence: "unavailable", statusMsg: "lunch", lastActiveAgo: 1234, currentlyActive: false });
  });
});
