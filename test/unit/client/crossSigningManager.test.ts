/**
 * Bootstrapping cross-signing on the client side, with a recording fake worker and undici's
 * MockAgent: the prepared keys are committed only after the server accepted the upload, discarded
 * after a refusal, and kept pending after an ambiguous failure (the server may have stored them;
 * the next /keys/query adopts them if so — see test/engine/crossSigningBootstrap.test.ts).
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { MockAgent } from "undici";
import { CrossSigningManager } from "../../../src/client/keys/CrossSigningManager.js";
import { HttpClient } from "../../../src/http/HttpClient.js";
import type { CrossSigningBootstrap, RemoteCryptoWorkerApi } from "../../../src/protocol/api.js";
import { MatrixHttpError, NetworkError } from "../../../src/protocol/errors.js";

const HS = "https://hs.example.org";
const UPLOAD = "/_matrix/client/v3/keys/device_signing/upload";

const prepared: CrossSigningBootstrap = {
  masterKey: "MASTERPUB",
  deviceSigningUpload: { master_key: {}, self_signing_key: {}, user_signing_key: {} },
  signatureUpload: {},
  recoveryKey: "EsTc LW2K PGiF wKEA",
  secretStorage: { keyId: "k", keyDescription: {}, secrets: {} },
};

/** A manager over a fake worker that records the bootstrap calls, and the MockAgent's pool. */
function rig(): { manager: CrossSigningManager; calls: string[]; pool: ReturnType<MockAgent["get"]>; agent: MockAgent } {
  const agent = new MockAgent();
  agent.disableNetConnect();
  const calls: string[] = [];
  const api = {
    prepareCrossSigning: async () => (calls.push("prepare"), prepared),
    commitCrossSigning: async (masterKey: string) => void calls.push(`commit ${masterKey}`),
    discardCrossSigning: async () => void calls.push("discard"),
  } as unknown as RemoteCryptoWorkerApi;
  const http = new HttpClient(HS, { dispatcher: agent, accessToken: "t", maxRetries: 0 });
  const manager = new CrossSigningManager({ http, crypto: { ready: true, api }, userId: () => "@a:example.org", triggerOutgoing: async () => undefined });
  return { manager, calls, pool: agent.get(HS), agent };
}

describe("client: cross-signing bootstrap commits only after the server accepted the upload", () => {
  it("a refused upload (wrong password) discards the prepared keys and commits nothing", async () => {
    const { manager, calls, pool, agent } = rig();
    pool.intercept({ path: UPLOAD, method: "POST" }).reply(401, { errcode: "M_FORBIDDEN", error: "Invalid password", session: "s", flows: [] });
    pool.intercept({ path: UPLOAD, method: "POST" }).reply(401, { errcode: "M_FORBIDDEN", error: "Invalid password", session: "s", flows: [] });
    await assert.rejects(manager.bootstrap({ password: "wrong" }), (e: unknown) => e instanceof MatrixHttpError && e.status === 401);
    assert.deepEqual(calls, ["prepare", "discard"]);
    await agent.close();
  });

  it("an ambiguous failure (network) keeps the prepared keys pending and commits nothing", async () => {
    const { manager, calls, pool, agent } = rig();
    pool.intercept({ path: UPLOAD, method: "POST" }).replyWithError(new Error("socket hang up"));
    await assert.rejects(manager.bootstrap({ password: "pw" }), NetworkError);
    assert.deepEqual(calls, ["prepare"]);
    await agent.close();
  });
});
