/**
 * Bundled and packaged applications (issue 16 item 11): the crypto worker is found through
 * `encryptionConf.workerPath` when the client code is not next to the package's `dist/workers/`
 * (as in an esbuild/webpack/electron-vite bundle; here the compiled client is copied elsewhere,
 * which puts it in the same position), and a clear `InvalidArgumentError` names the option when
 * it is not set; better-sqlite3's module can be named (`nativeBinding`); the default folders are
 * per application (`appName`).
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { cpSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { ErrorCode, MatrixClient, MatrixSdkError, NetworkError, StoreError } from "../../src/index.js";
import { stateStorePath, storeConfig } from "../../src/client/options.js";
import { userDataDir } from "../../src/client/paths.js";

const DIST = fileURLToPath(new URL("../../", import.meta.url));
const REPO = join(DIST, "..");
const WORKER = join(DIST, "workers", "crypto-worker.js");
const NATIVE = join(REPO, "node_modules", "better-sqlite3", "build", "Release", "better_sqlite3.node");
/** Nothing listens on port 9: login fails with NetworkError after the worker and store opened. */
const HS = "http://127.0.0.1:9";

describe("bundled applications", { timeout: 60_000 }, () => {
  const dir = mkdtempSync(join(tmpdir(), "sdk-bundle-"));
  let Moved: typeof MatrixClient;

  before(async () => {
    // The compiled client without the worker next to it (like a bundle), resolving packages from the repo.
    cpSync(join(DIST, "src"), join(dir, "app", "dist", "src"), { recursive: true });
    writeFileSync(join(dir, "app", "package.json"), JSON.stringify({ type: "module" }));
    symlinkSync(join(REPO, "node_modules"), join(dir, "app", "node_modules"));
    Moved = ((await import(pathToFileURL(join(dir, "app", "dist", "src", "index.js")).href)) as { MatrixClient: typeof MatrixClient }).MatrixClient;
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  /** Log in far enough to start the worker (restoreDeviceId reads the store before any request). */
  async function loginFails(client: MatrixClient): Promise<unknown> {
    try {
      await client.login("@bot:example.org", "pw");
    } catch (err) {
      return err;
    } finally {
      await client.close();
    }
    return null;
  }

  it("without workerPath, a client away from the worker says the file is missing and names the option", async () => {
    const err = await loginFails(new Moved(HS, { encryption: true, restoreDeviceId: true, encryptionConf: { inMemoryStore: true } }));
    // Errors of the copy are another class; compare what is stable across copies: the code.
    assert.ok(MatrixSdkError.isSdkError(err) && err.code === ErrorCode.InvalidArgument, String(err));
    assert.equal(err.details.workerPath, join(dir, "app", "dist", "workers", "crypto-worker.js"));
  });

  it("with workerPath (a path or a file: URL), the worker starts from there", async () => {
    for (const workerPath of [WORKER, pathToFileURL(WORKER)]) {
      const client = new Moved(HS, { encryption: true, restoreDeviceId: true, encryptionConf: { workerPath, storeConf: { dbPath: join(dir, "store") } } });
      const err = await loginFails(client);
      assert.ok(MatrixSdkError.isSdkError(err) && err.code === ErrorCode.Network, String(err));
      assert.equal(client.cryptoHostForTesting?.location, join(dir, "store", "crypto.db"));
    }
  });

  it("nativeBinding names better-sqlite3's module: the real one works, a wrong one is reported as missing", async () => {
    const ok = new MatrixClient(HS, { encryption: true, restoreDeviceId: true, nativeBinding: NATIVE, encryptionConf: { storeConf: { dbPath: join(dir, "native-ok") } } });
    assert.ok((await loginFails(ok)) instanceof NetworkError);
    const wrong = new MatrixClient(HS, { encryption: true, restoreDeviceId: true, nativeBinding: join(dir, "nope", "better_sqlite3.node"), encryptionConf: { storeConf: { dbPath: join(dir, "native-wrong") } } });
    const err = await loginFails(wrong);
    assert.ok(err instanceof StoreError, String(err));
    assert.equal(err.details.nativeModuleMissing, true);
  });

  it("appName gives the application its own default folder for the crypto store and the state store", () => {
    const own = userDataDir("my-bot");
    assert.deepEqual(storeConfig({ appName: "my-bot" }), { kind: "sqlite", path: join(own, "crypto.db") });
    assert.equal(stateStorePath({ appName: "my-bot" }), join(own, "state.db"));
    assert.deepEqual(storeConfig({}), { kind: "sqlite", path: join(userDataDir(), "crypto.db") });
  });
});
