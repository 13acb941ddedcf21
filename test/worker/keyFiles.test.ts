import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { importKeysFromFile } from "../../workers/keyFiles.js";
import { ErrorCode, KeyExportError, deserializeError, serializeError } from "../../src/protocol/errors.js";

describe("key files: file system failures are typed errors naming the path", () => {
  it("importing a missing file is a KeyExportError file_error with the path and ENOENT, also across the worker boundary", async () => {
    const dir = mkdtempSync(join(tmpdir(), "keyfiles-"));
    const path = join(dir, "missing.txt");
    try {
      let batches = 0;
      const err = await importKeysFromFile(async () => {
        batches++;
        return { imported: 0, skipped: 0, redecrypted: [] };
      }, path, "passphrase").then(
        () => null,
        (e: unknown) => e,
      );
      assert.ok(err instanceof KeyExportError, `got ${String(err)}`);
      assert.equal(err.code, ErrorCode.KeyExport);
      assert.equal(err.reason, "file_error");
      assert.equal(err.details.path, path);
      assert.equal(err.details.errno, "ENOENT");
      assert.match(err.message, new RegExp(path.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")));
      assert.equal(batches, 0);
      const crossed = deserializeError(serializeError(err));
      assert.ok(crossed instanceof KeyExportError);
      assert.equal(crossed.reason, "file_error");
      assert.equal(crossed.details.path, path);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
