/**
 * Key export files, on the worker side: pages of sessions out of the engine into an encrypted file,
 * and an encrypted file into the engine in batches. PBKDF2 runs on libuv's thread pool.
 */
import { closeSync, fsyncSync, openSync, readFileSync, renameSync, rmSync, writeSync } from "node:fs";
import { randomBytes } from "node:crypto";
import type { KeyImportResult, RoomDecryptResult } from "../src/protocol/api.js";
import { decryptKeyExportToJson, encryptKeyExportJson } from "../src/pure/keyExport.js";
import { InvalidArgumentError, KeyExportError } from "../src/protocol/errors.js";
import type { CryptoEngine } from "./engine/CryptoEngine.js";

const PAGE = 1000;

/** A file system failure on the key file, as the typed error that names the path. */
function fileError(path: string, action: "read" | "write", err: unknown): KeyExportError {
  const errno = typeof err === "object" && err !== null && typeof (err as { code?: unknown }).code === "string" ? (err as { code: string }).code : "EIO";
  return new KeyExportError("file_error", `Cannot ${action} the key file ${path} (${errno}).`, { path, errno }, { cause: err });
}

/**
 * Call a progress callback and wait for it. Across the worker boundary the callback is a Comlink
 * proxy whose calls travel on their own port, so without the wait the last report could reach the
 * main thread after the call's result. A failing callback does not fail the export or import.
 */
async function report(onProgress: ((done: number, total: number) => void) | undefined, done: number, total: number): Promise<void> {
  if (!onProgress) return;
  try {
    await onProgress(done, total);
  } catch {
    // the caller's callback failed: its problem, not the export's
  }
}

/** Export every inbound session to `path` atomically (temp file, fsync, rename), mode 0600. @internal */
export async function exportKeysToFile(
  engine: CryptoEngine,
  path: string,
  passphrase: string,
  rounds: number | undefined,
  onProgress?: (done: number, total: number) => void,
): Promise<number> {
  if (typeof passphrase !== "string" || passphrase === "") throw new InvalidArgumentError("a non-empty passphrase is needed");
  const parts: string[] = [];
  let after: string | undefined;
  let done = 0;
  for (;;) {
    const page = engine.exportRoomKeysPage(PAGE, after);
    for (const k of page.keys) parts.push(JSON.stringify(k));
    done += page.keys.length;
    await report(onProgress, done, page.total);
    if (!page.next) break;
    after = page.next;
  }
  const text = await encryptKeyExportJson(`[${parts.join(",")}]`, passphrase, rounds === undefined ? {} : { rounds });
  const tmp = `${path}.${randomBytes(6).toString("hex")}.tmp`;
  let fd: number;
  try {
    fd = openSync(tmp, "wx", 0o600);
  } catch (err) {
    throw fileError(path, "write", err);
  }
  try {
    writeSync(fd, text);
    fsyncSync(fd);
  } catch (err) {
    closeSync(fd);
    rmSync(tmp, { force: true });
    throw fileError(path, "write", err);
  }
  closeSync(fd);
  try {
    renameSync(tmp, path);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw fileError(path, "write", err);
  }
  return done;
}

/** Import a key export file in batches through `importBatch`. @internal */
export async function importKeysFromFile(
  importBatch: (batch: unknown[]) => Promise<{ imported: number; skipped: number; redecrypted: { roomId: string; results: RoomDecryptResult[] }[] }>,
  path: string,
  passphrase: string,
  onProgress?: (done: number, total: number) => void,
): Promise<KeyImportResult> {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    throw fileError(path, "read", err);
  }
  const json = await decryptKeyExportToJson(text, passphrase);
  let sessions: unknown;
  try {
    sessions = JSON.parse(json);
  } catch {
    throw new KeyExportError("bad_json", "The key export does not contain JSON.");
  }
  if (!Array.isArray(sessions)) {
    throw new KeyExportError("bad_json", "The key export is not a JSON array of sessions.");
  }
  const result: KeyImportResult = { total: sessions.length, imported: 0, skipped: 0, redecrypted: [] };
  for (let i = 0; i < sessions.length; i += PAGE) {
    const r = await importBatch(sessions.slice(i, i + PAGE));
    result.imported += r.imported;
    result.skipped += r.skipped;
    result.redecrypted.push(...r.redecrypted);
    await report(onProgress, Math.min(i + PAGE, sessions.length), sessions.length);
  }
  return result;
}
