/**
 * The offline key CLI's rough edges (issue 16 item 10), run as a process on a real SQLite store
 * with one account (real worker, real libolm): each bad invocation fails before any work with a
 * typed, exact message and exit code; `export` does not overwrite without `--force`.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { CryptoWorkerHost } from "../../src/client/CryptoWorkerHost.js";
import { DEFAULT_PICKLE_KEY } from "../../src/client/paths.js";
import { noopLogger } from "../../src/pure/logger.js";
import { run, type RunResult } from "../support/installedPackage.js";

const CLI = fileURLToPath(new URL("../../src/cli/keys.js", import.meta.url));
const USER = "@bot:example.org";
const DEVICE = "BOTDEVICE";

describe("matrix-e2ee-keys CLI", { timeout: 120_000 }, () => {
  const dir = mkdtempSync(join(tmpdir(), "sdk-keyscli-"));
  const db = join(dir, "crypto.db");
  const cli = (args: string[], env: Record<string, string> = { MATRIX_KEYS_PASSPHRASE: "pass" }): Promise<RunResult> => run(process.execPath, [CLI, ...args], dir, env);

  before(async () => {
    const host = new CryptoWorkerHost({ store: { kind: "sqlite", path: db }, pickleKey: DEFAULT_PICKLE_KEY, logLevel: "silent" }, noopLogger);
    await host.start();
    await host.api.loadAccount(USER, DEVICE);
    await host.close();
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it("a missing --in file is a key-file error (M_SDK_KEY_EXPORT), not an internal one", async () => {
    const missing = join(dir, "nope.txt");
    assert.deepEqual(await cli(["import", "--db", db, "--in", missing]), { code: 1, stdout: "", stderr: `error: M_SDK_KEY_EXPORT: no key file at ${missing}\n` });
  });

  it("a missing output folder fails before any work (no progress bar)", async () => {
    const out = join(dir, "no-such-folder", "keys.txt");
    assert.deepEqual(await cli(["export", "--db", db, "--out", out, "--rounds", "1000"]), {
      code: 1,
      stdout: "",
      stderr: `error: M_SDK_INVALID_ARGUMENT: the output folder ${join(dir, "no-such-folder")} does not exist\n`,
    });
  });

  it("an unknown command says so (and asks for no passphrase)", async () => {
    assert.deepEqual(await cli(["exprot", "--db", db], {}), { code: 2, stdout: "", stderr: `error: M_SDK_INVALID_ARGUMENT: unknown command exprot (accounts, export, import, delete-device)\n` });
  });

  it("delete-device of a device the store does not have fails and deletes nothing", async () => {
    assert.deepEqual(await cli(["delete-device", "--db", db, "--user", USER, "--device", "NOSUCH"]), {
      code: 1,
      stdout: "",
      stderr: `error: M_SDK_INVALID_ARGUMENT: no account ${USER} NOSUCH in this store (see \`accounts\`)\n`,
    });
    const accounts = await cli(["accounts", "--db", db]);
    assert.equal(accounts.code, 0);
    assert.deepEqual(accounts.stdout.split("\t").slice(0, 2), [USER, DEVICE]);
  });

  it("export refuses to overwrite an existing file without --force, and overwrites with it", async () => {
    const out = join(dir, "keys.txt");
    writeFileSync(out, "precious");
    assert.deepEqual(await cli(["export", "--db", db, "--out", out, "--rounds", "1000"]), {
      code: 1,
      stdout: "",
      stderr: `error: M_SDK_INVALID_ARGUMENT: ${out} exists; pass --force to overwrite it\n`,
    });
    assert.equal(readFileSync(out, "utf8"), "precious");
    const forced = await cli(["export", "--db", db, "--out", out, "--rounds", "1000", "--force"]);
    assert.equal(forced.code, 0, forced.stderr);
    assert.equal(existsSync(out), true);
    assert.equal(readFileSync(out, "utf8").split("\n")[0], "-----BEGIN MEGOLM SESSION DATA-----");
  });
});
