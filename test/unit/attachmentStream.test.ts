import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdtempSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable, Writable } from "node:stream";
import * as wasm from "@matrix-org/matrix-sdk-crypto-wasm";
import { decryptAttachmentFile, encryptAttachmentToFile } from "../../src/crypto/attachments.js";
import { AttachmentError } from "../../src/protocol/errors.js";

const MiB = 1024 * 1024;

/** A deterministic stream of `total` bytes in 1 MiB chunks, never all in memory. */
function source(total: number): Readable {
  let sent = 0;
  return new Readable({
    read() {
      if (sent >= total) return this.push(null);
      const n = Math.min(MiB, total - sent);
      const chunk = Buffer.alloc(n, (sent / MiB) & 0xff);
      sent += n;
      this.push(chunk);
    },
  });
}

describe("streaming attachments", () => {
  it("encrypts and decrypts 256 MiB with flat memory, and the hash matches the plaintext", async () => {
    const dir = mkdtempSync(join(tmpdir(), "sdk-att-"));
    const enc = join(dir, "enc");
    const rss0 = process.memoryUsage().rss;
    const { info, size } = await encryptAttachmentToFile(source(256 * MiB), enc);
    assert.equal(size, 256 * MiB);
    assert.equal(statSync(enc).mode & 0o777, 0o600);
    const hIn = createHash("sha256");
    source(256 * MiB).on("data", (c: Buffer) => hIn.update(c));
    const hOut = createHash("sha256");
    let peak = 0;
    await decryptAttachmentFile(
      enc,
      info,
      new Writable({
        write(chunk: Buffer, _e, cb) {
          hOut.update(chunk);
          peak = Math.max(peak, process.memoryUsage().rss);
          cb();
        },
      }),
    );
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(hOut.digest("hex"), hIn.digest("hex"));
    assert.ok(peak - rss0 < 96 * MiB, `memory grew by ${((peak - rss0) / MiB).toFixed(0)} MiB for a 256 MiB file`);
  });

  it("produces files an independent implementation decrypts, and refuses a tampered file before any plaintext", async () => {
    await wasm.initAsync();
    const dir = mkdtempSync(join(tmpdir(), "sdk-att-"));
    const enc = join(dir, "enc");
    const data = Buffer.from("streamed secret ".repeat(5000));
    const { info } = await encryptAttachmentToFile(Readable.from([data]), enc);
    const theirs = wasm.Attachment.decrypt(new wasm.EncryptedAttachment(new Uint8Array(readFileSync(enc)), JSON.stringify(info)));
    assert.deepEqual(Buffer.from(theirs), data);
    const bytes = readFileSync(enc);
    bytes[100] = bytes[100]! ^ 1;
    writeFileSync(enc, bytes);
    let wrote = 0;
    await assert.rejects(
      decryptAttachmentFile(enc, info, new Writable({ write(c: Buffer, _e, cb) { wrote += c.length; cb(); } })),
      (e: unknown) => e instanceof AttachmentError && e.reason === "hash_mismatch",
    );
    assert.equal(wrote, 0);
  });
});
