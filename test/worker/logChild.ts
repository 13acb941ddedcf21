/**
 * Child process of `logging.test.ts`: runs a crypto worker host with a collecting logger (worker
 * log level "debug") through start-up, account creation and close, then writes the collected
 * records as JSON to the file named by argv[3]. Whatever it prints is what the worker printed.
 * Usage: node logChild.js <db path> <records file>
 */
import { writeFileSync } from "node:fs";
import { CryptoWorkerHost } from "../../src/client/CryptoWorkerHost.js";
import type { LogRecord, Logger } from "../../src/pure/logger.js";

const [dbPath, outFile] = process.argv.slice(2);
const records: LogRecord[] = [];
const collect =
  (level: LogRecord["level"]) =>
  (msg: string, ...args: unknown[]): void => {
    records.push({ level, msg, args });
  };
const logger: Logger = { debug: collect("debug"), info: collect("info"), warn: collect("warn"), error: collect("error") };
const host = new CryptoWorkerHost({ store: { kind: "sqlite", path: dbPath! }, pickleKey: "k", logLevel: "debug" }, logger);
await host.start();
await host.api.loadAccount("@child:example.org", "CHILDDEV");
await host.close();
writeFileSync(outFile!, JSON.stringify({ location: host.location, records }));
