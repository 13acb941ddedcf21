/**
 * Secrets never show in `util.inspect` (the deepest, most revealing options: everything hidden,
 * getters invoked) nor in `JSON.stringify`: the access token and the pickle key of a logged-in
 * client with a started crypto worker, its HTTP client, its worker host, the engine's context in
 * the worker, and the redacting boxes themselves (regression test for "secrets in util.inspect
 * and JSON.stringify").
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { inspect } from "node:util";
import Olm from "@matrix-org/olm";
import { MockAgent } from "undici";
import { CrossSigningBootstrapResult, HttpClient, MatrixClient, Secret } from "../../src/index.js";
import type { Logger } from "../../src/pure/logger.js";
import { CryptoEngine } from "../../workers/engine/CryptoEngine.js";
import { MemoryCryptoStore } from "../../workers/store/memory/MemoryCryptoStore.js";

const HS = "https://hs.example.org";
const TOKEN = "syt_YWxpY2U_aCcEsStOkEn5ecret_1a2b3c";
const PICKLE_KEY = "pickle-key-5ecret-4d5e6f-do-not-show";
const RECOVERY_KEY = "EsTc LW2K PGiF wKEA 3As5 g5c4 BXwk qeeJ ZJV8 Q9fu gUMN UE4d";
const SECRETS: Record<string, string> = { "the access token": TOKEN, "the pickle key": PICKLE_KEY, "the recovery key": RECOVERY_KEY };

const INSPECT_OPTIONS = [
  { depth: Infinity, showHidden: true },
  { depth: Infinity, showHidden: true, getters: true },
];

/** Neither `util.inspect` (with each option set) nor `JSON.stringify` of `value` contains one of the secrets. */
function assertRedacted(value: unknown, what: string): void {
  const check = (view: string, how: string): void => {
    for (const [name, secret] of Object.entries(SECRETS)) assert.equal(view.includes(secret), false, `${how} of ${what} shows ${name}`);
  };
  for (const o of INSPECT_OPTIONS) check(inspect(value, o), `util.inspect(${JSON.stringify(o).replace("null", "Infinity")})`);
  check(JSON.stringify(value), "JSON.stringify");
}

/** A logger keeping every line with its arguments, inspected. */
function collector(): { logger: Logger; lines: string[] } {
  const lines: string[] = [];
  const keep = (msg: string, ...args: unknown[]): void => {
    lines.push(inspect([msg, ...args], { depth: Infinity }));
  };
  return { logger: { debug: keep, info: keep, warn: keep, error: keep }, lines };
}

describe("secrets are redacted in util.inspect and JSON.stringify", () => {
  const dir = mkdtempSync(join(tmpdir(), "sdk-redact-"));
  const agent = new MockAgent();
  const logs = collector();
  let client: MatrixClient;

  before(async () => {
    agent.disableNetConnect();
    const pool = agent.get(HS);
    pool.intercept({ path: "/_matrix/client/v3/account/whoami", method: "GET" }).reply(200, { user_id: "@alice:example.org", device_id: "ALICEDEV" }).persist();
    pool.intercept({ path: "/_matrix/client/v3/keys/upload", method: "POST" }).reply(200, { one_time_key_counts: { signed_curve25519: 50 } }).persist();
    pool.intercept({ path: "/_matrix/client/v3/keys/query", method: "POST" }).reply(200, { device_keys: {}, failures: {} }).persist();
    client = new MatrixClient(HS, {
      encryption: true,
      encryptionConf: { storeConf: { dbPath: dir, pickleKey: PICKLE_KEY } },
      dispatcher: agent,
      logger: logs.logger,
      workerLogLevel: "debug",
    });
    await client.loginWithToken(TOKEN);
  });
  after(async () => {
    await client.close();
    await agent.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("a logged-in client, its HTTP client and its started worker host show neither the access token nor the pickle key", () => {
    assert.equal(client.accessToken, TOKEN, "the token is still there for whoever asks for it");
    const host = client.cryptoHostForTesting;
    assert.ok(host, "the worker host was started");
    assertRedacted(client, "the client");
    assertRedacted(host, "the worker host");
    assertRedacted(Reflect.get(client, "http"), "the client's HTTP client");
    assertRedacted({ client }, "an object holding the client");
    assertRedacted(logs.lines, "the log lines");
  });

  it("an HTTP client constructed with an access token does not show it", () => {
    const http = new HttpClient(HS, { accessToken: TOKEN, dispatcher: agent });
    assert.equal(http.accessToken, TOKEN);
    assertRedacted(http, "the HTTP client");
  });

  it("the engine in the worker does not show the pickle key", async () => {
    await Olm.init();
    const store = new MemoryCryptoStore();
    await store.open();
    const engine = new CryptoEngine({ olm: Olm, store, pickleKey: PICKLE_KEY, logger: logs.logger });
    await engine.loadAccount("@alice:example.org", "ALICEDEV");
    assertRedacted(engine, "the engine");
    engine.release();
  });

  it("a Secret and the bootstrap result redact their value (inspect, JSON, strings) and give it only when asked", () => {
    const secret = new Secret(TOKEN);
    assertRedacted(secret, "a Secret");
    assert.equal(`${secret}`, "[redacted]");
    assert.equal(secret.reveal(), TOKEN);
    const result = new CrossSigningBootstrapResult(RECOVERY_KEY);
    assertRedacted(result, "the bootstrap result");
    const { recoveryKey } = result;
    assert.equal(recoveryKey, RECOVERY_KEY);
  });
});
