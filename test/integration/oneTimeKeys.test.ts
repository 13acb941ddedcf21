/**
 * One-time keys through a real Synapse while another user claims them during our syncs: the
 * server never holds more than the target (a sync computed before our upload must not make us
 * upload again), and every key a peer claimed still opens an Olm channel to us (libolm keeps at
 * most 100 private one-time keys and drops the oldest silently when more are generated).
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import type { MatrixClient } from "../../src/index.js";
import type { SynapseHandle } from "../harness/synapse.js";
import { OlmPeer, initOlm, type Recipient } from "../support/olmPeer.js";
import { PASSWORD, Recorder, startClient, synapse, tempDir, uniqueName } from "./helpers.js";

type Json = Record<string, unknown>;
const PROBE = "org.example.otk_probe";

/**
 * A pass-through proxy to the homeserver that delivers every `/sync` answer `delayMs` late, as a
 * slow network does: a sync computed before our `/keys/upload` landed then arrives after its answer.
 */
async function slowSyncProxy(upstream: string, delayMs: number): Promise<{ url: string; server: Server }> {
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const headers: Record<string, string> = {};
      for (const [k, v] of Object.entries(req.headers)) if (typeof v === "string" && k !== "host" && k !== "content-length") headers[k] = v;
      const body = chunks.length ? Buffer.concat(chunks) : undefined;
      fetch(`${upstream}${req.url ?? "/"}`, { method: req.method ?? "GET", headers, ...(body && req.method !== "GET" ? { body } : {}) })
        .then(async (up) => {
          const text = Buffer.from(await up.arrayBuffer());
          if (req.url?.startsWith("/_matrix/client/v3/sync")) await new Promise((r) => setTimeout(r, delayMs));
          res.writeHead(up.status, { "content-type": up.headers.get("content-type") ?? "application/json" });
          res.end(text);
        })
        .catch(() => {
          res.writeHead(502);
          res.end();
        });
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server };
}

async function call(hs: SynapseHandle, token: string, method: string, path: string, body: unknown): Promise<Json> {
  const res = await fetch(`${hs.baseUrl}${path}`, { method, headers: { authorization: `Bearer ${token}`, "content-type": "application/json" }, body: JSON.stringify(body) });
  const json = (await res.json()) as Json;
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${JSON.stringify(json)}`);
  return json;
}

describe("one-time keys claimed during syncs, through a real Synapse (sync answers delivered late)", { timeout: 240_000 }, () => {
  let hs: SynapseHandle;
  let alice: { client: MatrixClient; rec: Recorder };
  let bob: { userId: string; accessToken: string; deviceId: string };
  let bobPeer: OlmPeer;
  let proxy: { url: string; server: Server };

  before(async () => {
    await initOlm();
    hs = await synapse();
    const aliceId = (await hs.registerUser(uniqueName("otkalice"), PASSWORD)).userId;
    bob = await hs.registerUser(uniqueName("otkbob"), PASSWORD);
    proxy = await slowSyncProxy(hs.baseUrl, 250);
    alice = await startClient({ ...hs, baseUrl: proxy.url }, aliceId, tempDir());
    bobPeer = new OlmPeer(bob.userId, bob.deviceId);
    await call(hs, bob.accessToken, "POST", "/_matrix/client/v3/keys/upload", { device_keys: bobPeer.deviceKeys() });
  });
  after(async () => {
    await alice.client.close();
    bobPeer.free();
    proxy.server.close();
  });

  it("keeps the server at the target and every claimed key usable while a peer drains them between syncs", async () => {
    const client = alice.client;
    const me = { userId: client.userId!, deviceId: client.deviceId! };
    const to: Recipient = { ...me, curve25519: client.getIdentityKey(), ed25519: client.getFingerprint() };
    const serverCount = async (): Promise<number> => {
      const r = await call(hs, client.accessToken!, "POST", "/_matrix/client/v3/keys/upload", {});
      return ((r.one_time_key_counts as Json | undefined)?.signed_curve25519 as number | undefined) ?? 0;
    };
    const received = new Set<number>();
    const failures: string[] = [];
    client.on("toDevice", (e) => {
      if (e.type === PROBE && e.encrypted && e.sender === bob.userId) received.add(e.content.n as number);
    });
    client.on("toDevice.failure", (f) => {
      if (f.sender === bob.userId) failures.push(`${f.code}: ${f.message}`);
    });

    const counts: number[] = [await serverCount()];
    let sent = 0;
    let fromFallback = 0;
    // Bursts of claims, each key used at once (as a peer starting a conversation does); every
    // probe makes Alice's long-poll return, so her syncs cross her own uploads.
    for (let burst = 0; burst < 8; burst++) {
      for (let i = 0; i < 20; i++) {
        const claimed = await call(hs, bob.accessToken, "POST", "/_matrix/client/v3/keys/claim", { one_time_keys: { [me.userId]: { [me.deviceId]: "signed_curve25519" } } });
        const keys = ((claimed.one_time_keys as Json)[me.userId] as Json | undefined)?.[me.deviceId] as Record<string, { key: string; fallback?: boolean }> | undefined;
        const key = keys ? Object.values(keys)[0] : undefined;
        assert.ok(key, "Synapse handed out neither a one-time key nor the fallback key");
        if (key.fallback) fromFallback++;
        bobPeer.openSession(to, key.key, true);
        const n = sent++;
        const content = bobPeer.olmToDevice(to, PROBE, { n }).content;
        await call(hs, bob.accessToken, "PUT", `/_matrix/client/v3/sendToDevice/m.room.encrypted/otk${Date.now()}-${n}`, { messages: { [me.userId]: { [me.deviceId]: content } } });
        counts.push(await serverCount());
      }
      await new Promise((r) => setTimeout(r, 400));
      counts.push(await serverCount());
    }
    await alice.rec.waitFor(() => received.size + failures.length >= sent, "Alice receiving every probe", 60_000);
    for (let i = 0; i < 10; i++) {
      await new Promise((r) => setTimeout(r, 300));
      counts.push(await serverCount());
    }

    assert.deepEqual(failures, [], "a probe sent with a claimed one-time key could not be decrypted");
    assert.equal(received.size, sent);
    assert.ok(sent - fromFallback > 100, `only ${sent - fromFallback} one-time keys were claimed; the case needs more than libolm keeps`);
    assert.ok(Math.max(...counts) <= 50, `the server held ${Math.max(...counts)} one-time keys for a target of 50 (${counts.filter((c) => c > 50).length} of ${counts.length} samples above)`);
  });
});
