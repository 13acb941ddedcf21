#!/usr/bin/env node
/**
 * matrix-e2ee-keys: export and import room keys directly on a store file, offline.
 *
 *   matrix-e2ee-keys accounts --db <file>
 *   matrix-e2ee-keys export --db <file> --out <keys.txt> [--user @u:hs] [--device ID] [--rounds N]
 *   matrix-e2ee-keys import --db <file> --in <keys.txt> [--user @u:hs] [--device ID]
 *   matrix-e2ee-keys delete-device --db <file> --user @u:hs --device ID
 *
 * The passphrase comes from MATRIX_KEYS_PASSPHRASE or --passphrase-file <file>. Set
 * MATRIX_PICKLE_KEY if the store was created with a custom pickle key. The store must not be in
 * use by a running client (it is locked: one process per database).
 */
import { existsSync, readFileSync, realpathSync } from "node:fs";
import { resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { CryptoWorkerHost } from "../client/CryptoWorkerHost.js";
import { MatrixSdkError } from "../protocol/errors.js";
import { noopLogger } from "../pure/logger.js";
import { DEFAULT_PICKLE_KEY } from "../client/paths.js";

/** The usage line printed by `--help` (and on bad arguments). */
export const USAGE =
  "usage: matrix-e2ee-keys <accounts|export|import|delete-device> --db <file> [--out|--in <file>] [--user @u:hs] [--device ID] [--rounds N] [--passphrase-file F] [--force]";

function bar(label: string): (done: number, total: number) => void {
  return (done, total) => {
    const pct = total ? Math.floor((done / total) * 100) : 100;
    const filled = Math.round(pct / 4);
    process.stderr.write(`\r${label} [${"#".repeat(filled)}${"-".repeat(25 - filled)}] ${pct}% ${done}/${total}`);
    if (done >= total) process.stderr.write("\n");
  };
}

/** Run the CLI with `argv` (without node and script). Resolves with the exit code. */
export async function main(argv: string[]): Promise<number> {
  const { positionals, values } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      db: { type: "string" },
      out: { type: "string" },
      in: { type: "string" },
      user: { type: "string" },
      device: { type: "string" },
      rounds: { type: "string" },
      "passphrase-file": { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  const cmd = positionals[0];
  if (values.help || !cmd || !values.db) {
    process.stderr.write(`${USAGE}\n`);
    return values.help ? 0 : 2;
  }
  if (!existsSync(resolve(values.db))) {
    process.stderr.write(`error: no store file at ${values.db}\n`);
    return 1;
  }
  const host = new CryptoWorkerHost({ store: { kind: "sqlite", path: resolve(values.db) }, pickleKey: process.env.MATRIX_PICKLE_KEY ?? DEFAULT_PICKLE_KEY, logLevel: "silent" }, noopLogger);
  try {
    await host.start();
    const accounts = await host.api.listAccounts();
    if (cmd === "accounts") {
      for (const a of accounts) process.stdout.write(`${a.userId}\t${a.deviceId}\t${new Date(a.createdTs).toISOString()}\n`);
      return 0;
    }
    if (cmd === "delete-device") {
      if (!values.user || !values.device) throw new Error("delete-device needs --user and --device");
      await host.api.deleteStoredDevice(values.user, values.device);
      process.stderr.write(`deleted ${values.user} ${values.device}; consider shred -u on old copies of the file\n`);
      return 0;
    }
    const candidates = accounts.filter((a) => (!values.user || a.userId === values.user) && (!values.device || a.deviceId === values.device));
    const account = values.device ? candidates[0] : candidates.sort((a, b) => b.createdTs - a.createdTs)[0];
    if (!account || (!values.user && new Set(accounts.map((a) => a.userId)).size > 1)) {
      throw new Error(account ? "several users in this store: pass --user" : "no matching account in this store (see `accounts`)");
    }
    const passphrase = values["passphrase-file"] ? readFileSync(values["passphrase-file"], "utf8").replace(/\r?\n$/, "") : process.env.MATRIX_KEYS_PASSPHRASE;
    if (!passphrase) throw new Error("set MATRIX_KEYS_PASSPHRASE or pass --passphrase-file");
    await host.api.loadAccount(account.userId, account.deviceId);
    if (cmd === "export") {
      if (!values.out) throw new Error("export needs --out <file>");
      const n = await host.api.exportKeysToFile(resolve(values.out), passphrase, values.rounds ? Number(values.rounds) : undefined, bar("exporting"));
      process.stderr.write(`exported ${n} sessions of ${account.userId}/${account.deviceId} to ${values.out}\n`);
      return 0;
    }
    if (cmd === "import") {
      if (!values.in) throw new Error("import needs --in <file>");
      const r = await host.api.importKeysFromFile(resolve(values.in), passphrase, bar("importing"));
      process.stderr.write(`imported ${r.imported} of ${r.total} sessions (${r.skipped} skipped) into ${account.userId}/${account.deviceId}\n`);
      return 0;
    }
    throw new Error(`unknown command ${cmd}`);
  } catch (err) {
    const e = err as Error;
    process.stderr.write(`error: ${MatrixSdkError.isSdkError(e) ? `${e.code}: ` : ""}${e.message}\n`);
    return 1;
  } finally {
    await host.close();
  }
}

/**
 * Whether this module is the program node was started with. Both sides are resolved to real paths,
 * so it holds when started through npm's `.bin` symlink (`npx matrix-e2ee-keys`) too.
 */
function isMainModule(): boolean {
  const script = process.argv[1];
  if (!script) return false;
  try {
    return realpathSync(script) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

if (isMainModule()) void main(process.argv.slice(2)).then((code) => process.exit(code));
