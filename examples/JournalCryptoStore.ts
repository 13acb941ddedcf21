/**
 * An example custom crypto store: the in-memory store plus an append-only JSON-lines journal of
 * every committed batch, replayed on open. It shows the `CryptoStore` contract (synchronous reads
 * from memory, `saveChanges` durable before it resolves) in ~60 lines.
 *
 * Use it with:
 *   new MatrixClient(url, { encryption: true, encryptionConf: { store: {
 *     module: "/abs/path/to/dist/examples/JournalCryptoStore.js", export: "JournalCryptoStore",
 *     options: { path: "/var/lib/mybot/crypto.jsonl" } } } })
 *
 * It runs inside the crypto worker, which imports the module and calls `new JournalCryptoStore(options)`.
 */
import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, writeSync, existsSync } from "node:fs";
import { dirname } from "node:path";
import type { AccountRecord, StoreChanges } from "../src/protocol/store.js";
import { StoreError } from "../src/protocol/errors.js";
import { MemoryCryptoStore } from "../workers/store/memory/MemoryCryptoStore.js";

type Entry = { u: string; d: string; c: StoreChanges } | { del: [string, string] };

/** A memory store persisted as a JSON-lines journal (example of a user-supplied store). */
export class JournalCryptoStore extends MemoryCryptoStore {
  private fd: number | null = null;
  private readonly path: string;
  private current: { u: string; d: string } | null = null;

  constructor(options: { path: string }) {
    super();
    if (!options || typeof options.path !== "string") throw new StoreError("JournalCryptoStore needs options.path");
    this.path = options.path;
  }

  override get location(): string {
    return `journal:${this.path}`;
  }

  override async open(): Promise<void> {
    await super.open();
    mkdirSync(dirname(this.path), { recursive: true, mode: 0o700 });
    if (existsSync(this.path)) {
      const lines = readFileSync(this.path, "utf8").split("\n");
      for (const [i, line] of lines.entries()) {
        if (!line.trim()) continue;
        let e: Entry;
        try {
          e = JSON.parse(line) as Entry;
        } catch {
          // A torn last line (crash mid-write) is dropped; anything else is corruption.
          if (i >= lines.length - 2) break;
          throw new StoreError(`journal ${this.path} is corrupted at line ${i + 1}`);
        }
        if ("del" in e) await super.deleteAccount(e.del[0], e.del[1]);
        else {
          await super.useAccount(e.u, e.d);
          await super.saveChanges(e.c);
        }
      }
    }
    this.fd = openSync(this.path, "a", 0o600);
  }

  override async close(): Promise<void> {
    if (this.fd !== null) closeSync(this.fd);
    this.fd = null;
    await super.close();
  }

  override async useAccount(userId: string, deviceId: string): Promise<AccountRecord | null> {
    this.current = { u: userId, d: deviceId };
    return super.useAccount(userId, deviceId);
  }

  override async deleteAccount(userId: string, deviceId: string): Promise<void> {
    await super.deleteAccount(userId, deviceId);
    this.append({ del: [userId, deviceId] });
  }

  override async saveChanges(changes: StoreChanges): Promise<void> {
    await super.saveChanges(changes); // validates and applies atomically in memory
    const who = changes.account ? { u: changes.account.userId, d: changes.account.deviceId } : this.current;
    if (!who) throw new StoreError("no account selected");
    this.append({ u: who.u, d: who.d, c: changes });
  }

  private append(e: Entry): void {
    if (this.fd === null) throw new StoreError("store is closed");
    writeSync(this.fd, `${JSON.stringify(e)}\n`);
    fsyncSync(this.fd);
  }
}
