/**
 * Integration test of the Synapse test harness itself: start a real homeserver, register
 * users, check their access tokens, restart the server and check it answers again.
 */
import assert from "node:assert/strict";
import { after, test } from "node:test";
import { startSynapse, type SynapseHandle } from "../harness/synapse.js";

/** `GET /_matrix/client/v3/account/whoami` with the given token. */
async function whoami(baseUrl: string, accessToken: string): Promise<{ user_id: string; device_id?: string }> {
  const res = await fetch(`${baseUrl}/_matrix/client/v3/account/whoami`, {
    headers: { authorization: `Bearer ${accessToken}` },
  });
  const body = (await res.json()) as { user_id: string; device_id?: string };
  assert.equal(res.status, 200, `whoami failed: ${JSON.stringify(body)}`);
  return body;
}

let server: SynapseHandle | undefined;
after(async () => {
  await server?.stop();
});

test("Synapse harness: start, register, whoami, restart, stop", { timeout: 240_000 }, async (t) => {
  const t0 = Date.now();
  server = await startSynapse();
  t.diagnostic(`Synapse up at ${server.baseUrl} in ${Date.now() - t0} ms (dir ${server.dir})`);
  assert.equal(server.serverName, "localhost");
  assert.match(server.baseUrl, /^http:\/\/127\.0\.0\.1:\d+$/);

  const versions = await fetch(`${server.baseUrl}/_matrix/client/versions`);
  assert.equal(versions.status, 200);
  const v = (await versions.json()) as { versions: string[] };
  assert.ok(v.versions.length > 0);

  const alice = await server.registerUser("alice", "alice-password");
  const bob = await server.registerUser("bob", "bob-password", true);
  assert.equal(alice.userId, "@alice:localhost");
  assert.equal(bob.userId, "@bob:localhost");
  assert.notEqual(alice.accessToken, bob.accessToken);
  assert.ok(alice.deviceId.length > 0);

  const wa = await whoami(server.baseUrl, alice.accessToken);
  assert.equal(wa.user_id, alice.userId);
  assert.equal(wa.device_id, alice.deviceId);
  const wb = await whoami(server.baseUrl, bob.accessToken);
  assert.equal(wb.user_id, bob.userId);
  assert.equal(wb.device_id, bob.deviceId);

  // Rate limits are off: a burst of logins (default rc_login allows ~5) must all succeed.
  for (let i = 0; i < 12; i++) {
    const res = await fetch(`${server.baseUrl}/_matrix/client/v3/login`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ type: "m.login.password", identifier: { type: "m.id.user", user: "alice" }, password: "alice-password" }),
    });
    assert.equal(res.status, 200, `login ${i} failed: ${await res.text()}`);
    await res.arrayBuffer().catch(() => undefined);
  }

  // Restart: same port and database, so the old tokens still work.
  const port = server.port;
  const t1 = Date.now();
  await server.restart();
  t.diagnostic(`Synapse restarted in ${Date.now() - t1} ms`);
  assert.equal(server.port, port);
  assert.equal((await fetch(`${server.baseUrl}/_matrix/client/versions`)).status, 200);
  assert.equal((await whoami(server.baseUrl, alice.accessToken)).user_id, "@alice:localhost");
  assert.equal((await whoami(server.baseUrl, bob.accessToken)).user_id, "@bob:localhost");

  const t2 = Date.now();
  await server.stop();
  t.diagnostic(`Synapse stopped in ${Date.now() - t2} ms`);
  await assert.rejects(fetch(`${server.baseUrl}/_matrix/client/versions`));
  await server.stop(); // idempotent
});
