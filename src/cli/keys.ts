#!/usr/bin/env node
/**
 * matrix-e2ee-keys: export and import room keys directly on a store file, offline.
 *
 *   matrix-e2ee-keys accounts --db <file>
 *   matrix-e2ee-keys export --db <file> --out <keys.txt> [--user @u:hs] [--device ID] [--rounds N] [--force]
 *   matrix-e2ee-keys import --db <file> --in <keys.txt> [--user @u:hs] [--device ID]
 *   matrix-e2ee-keys delete-device --db <file> --user @u:hs --device ID
 *
 * The passphrase comes from MATRIX_KEYS_PASSPHRASE or --passphrase-file <file>. Set
 * MATRIX_PICKLE_KEY if the store was created with a custom pickle key. The store must not be in
 * use by a running client (it is locked: one process per database). Arguments, input file, output
 * folder and passphrase are checked before the store is opened; `export` does not overwrite an
 * existing file unless `--force` is given. Errors print as `error: <code>: <message>` (exit 1; 2
 * for bad usage such as an unknown command).
 */
import { existsSync, readFileSync, realpathSync, statSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { CryptoWorkerHost } from "../client/CryptoWorkerHost.js";
import { InvalidArgumentError, KeyExportError, MatrixSdkError } from "../protocol/errors.js";
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

/** The commands, in usage order. */
const COMMANDS = ["accounts", "export", "import", "delete-device"] as const;

/** A failure to print: `error: <code>: <message>`, and the exit code (2: bad usage, 1: the rest). */
function fail(err: unknown, exitCode = 1): number {
  const e = err instanceof Error ? err : new Error(String(err));
  process.stderr.write(`error: ${MatrixSdkError.isSdkError(e) ? `${e.code}: ` : ""}${e.message}\n`);
  return exitCode;
}

type Values = { db: string; out?: string | undefined; in?: string | undefined; user?: string | undefined; device?: string | undefined; force?: boolean | undefined; "passphrase-file"?: string | undefined };

/**
 * Everything that can be checked before the store is opened and any work starts: the command's
 * arguments, the input file, the output folder (and an existing output without `--force`), the
 * passphrase. Throws `InvalidArgumentError`, or `KeyExportError` (`file_error`) for a missing key file.
 */
function checkBeforeWork(cmd: (typeof COMMANDS)[number], values: Values): { passphrase?: string } {
  if (!existsSync(resolve(values.db))) throw new InvalidArgumentError(`no store file at ${values.db}`);
  if (cmd === "accounts") return {};
  if (cmd === "delete-device") {
    if (!values.user || !values.device) throw new InvalidArgumentError("delete-device needs --user and --device");
    return {};
  }
  if (cmd === "export") {
    if (!values.out) throw new InvalidArgumentError("export needs --out <file>");
    const folder = dirname(resolve(values.out));
    if (!existsSync(folder) || !statSync(folder).isDirectory()) throw new InvalidArgumentError(`the output folder ${folder} does not exist`);
    if (existsSync(values.out) && !values.force) throw new InvalidArgumentError(`${values.out} exists; pass --force to overwrite it`);
  } else {
    if (!values.in) throw new InvalidArgumentError("import needs --in <file>");
    if (!existsSync(values.in)) throw new KeyExportError("file_error", `no key file at ${values.in}`, { path: resolve(values.in), errno: "ENOENT" });
  }
  const passphrase = values["passphrase-file"] ? readFileSync(values["passphrase-file"], "utf8").replace(/\r?\n$/, "") : process.env.MATRIX_KEYS_PASSPHRASE;
  if (!passphrase) throw new InvalidArgumentError("set MATRIX_KEYS_PASSPHRASE or pass --passphrase-file");
  return { passphrase };
}

/** Run the CLI with `argv` (without node and script). Resolves with the exit code. */
export async function main(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
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
        force: { type: "boolean" },
        help: { type: "boolean", short: "h" },
      },
    });
  } catch (err) {
    return fail(new InvalidArgumentError(err instanceof Error ? err.message : String(err)), 2);
  }
  const { positionals, values } = parsed;
  const cmd = positionals[0];
  if (values.help || !cmd || !values.db) {
    process.stderr.write(`${USAGE}\n`);
    return values.help ? 0 : 2;
  }
  if (!(COMMANDS as readonly string[]).includes(cmd)) return fail(new InvalidArgumentError(`unknown command ${cmd} (${COMMANDS.join(", ")})`), 2);
  const command = cmd as (typeof COMMANDS)[number];
  let passphrase: string | undefined;
  try {
    ({ passphrase } = checkBeforeWork(command, { ...values, db: values.db }));
  } catch (err) {
    return fail(err);
  }
  const host = new CryptoWorkerHost({ store: { kind: "sqlite", path: resolve(values.db) }, pickleKey: process.env.MATRIX_PICKLE_KEY ?? DEFAULT_PICKLE_KEY, logLevel: "silent" }, noopLogger);
  try {
    await host.start();
    const accounts = await host.api.listAccounts();
    if (command === "accounts") {
      for (const a of accounts) process.stdout.write(`${a.userId}\t${a.deviceId}\t${new Date(a.createdTs).toISOString()}\n`);
      return 0;
    }
    if (command === "delete-device") {
      const { user, device } = values as { user: string; device: string };
      if (!accounts.some((a) => a.userId === user && a.deviceId === device)) throw new InvalidArgumentError(`no account ${user} ${device} in this store (see \`accounts\`)`);
      await host.api.deleteStoredDevice(user, device);
      process.stderr.write(`deleted ${user} ${device}; consider shred -u on old copies of the file\n`);
      return 0;
    }
    const candidates = accounts.filter((a) => (!values.user || a.userId === values.user) && (!values.device || a.deviceId === values.device));
    const account = values.device ? candidates[0] : candidates.sort((a, b) => b.createdTs - a.createdTs)[0];
    if (!account || (!values.user && new Set(accounts.map((a) => a.userId)).size > 1)) {
      throw new InvalidArgumentError(account ? "several users in this store: pass --user" : "no matching account in this store (see `accounts`)");
    }
    await host.api.loadAccount(account.userId, account.deviceId);
    if (command === "export") {
      const n = await host.api.exportKeysToFile(resolve(values.out!), passphrase!, values.rounds ? Number(values.rounds) : undefined, bar("exporting"));
      process.stderr.write(`exported ${n} sessions of ${account.userId}/${account.deviceId} to ${values.out}\n`);
      return 0;
    }
    const r = await host.api.importKeysFromFile(resolve(values.in!), passphrase!, bar("importing"));
    process.stderr.write(`imported ${r.imported} of ${r.total} sessions (${r.skipped} skipped) into ${account.userId}/${account.deviceId}\n`);
    return 0;
  } catch (err) {
    return fail(err);
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
