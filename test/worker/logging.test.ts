/**
 * The crypto worker logs only through the application's logger: its records cross to the host
 * (filtered at the level the host asked for) and nothing is printed by the worker itself.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { CryptoWorkerHost } from "../../src/client/CryptoWorkerHost.js";
import type { LogLevel, LogRecord, Logger } from "../../src/pure/logger.js";

function tempDir(): string {
  return mkdtempSync(join(tmpdir(), "sdk-worker-log-"));
}

/** A logger that keeps every call. */
function collector(): { logger: Logger; records: LogRecord[] } {
  const records: LogRecord[] = [];
  const collect =
    (level: LogLevel) =>
    (msg: string, ...args: unknown[]): void => {
      records.push({ level, msg, args });
    };
  return { logger: { debug: collect("debug"), info: collect("info"), warn: collect("warn"), error: collect("error") }, records };
}

async function runHost(level: LogLevel): Promise<{ records: LogRecord[]; path: string }> {
  const path = join(tempDir(), "crypto.db");
  const { logger, records } = collector();
  const host = new CryptoWorkerHost({ store: { kind: "sqlite", path }, pickleKey: "k", logLevel: level }, logger);
  await host.start();
  await host.api.loadAccount("@a:example.org", "DEV");
  await host.close();
  return { records, path };
}

describe("crypto worker logging", () => {
  it("the worker's store-open line reaches the host's logger, and records below the asked level are not forwarded", async () => {
    const info = await runHost("info");
    assert.deepEqual(info.records.filter((r) => r.msg === `[worker] crypto store: ${info.path}`), [{ level: "info", msg: `[worker] crypto store: ${info.path}`, args: [] }]);
    assert.deepEqual(info.records.filter((r) => r.level === "debug"), []);

    const debug = await runHost("debug");
    assert.deepEqual(debug.records.filter((r) => r.msg === `[worker] crypto store opened: ${debug.path}`), [{ level: "debug", msg: `[worker] crypto store opened: ${debug.path}`, args: [] }]);
  });

  it("a process whose worker logs at debug level into a custom logger prints nothing", async () => {
    const dir = tempDir();
    const out = join(dir, "records.json");
    const script = fileURLToPath(new URL("./logChild.js", import.meta.url));
    const child = spawn(process.execPath, [script, join(dir, "crypto.db"), out], { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
    child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
    const code = await new Promise<number | null>((resolve) => child.on("close", resolve));
    assert.equal(code, 0, `child failed: ${stderr}`);
    assert.equal(stdout, "");
    assert.equal(stderr, "");
    // The worker did log: into the custom logger.
    const { location, records } = JSON.parse(readFileSync(out, "utf8")) as { location: string; records: LogRecord[] };
    assert.deepEqual(records.filter((r) => r.msg === `[worker] crypto store: ${location}`), [{ level: "info", msg: `[worker] crypto store: ${location}`, args: [] }]);
  });
});
