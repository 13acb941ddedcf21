/**
 * Media: plain and encrypted uploads and downloads. Encrypted files go through a temporary file
 * (mode 0600) so memory stays constant whatever the size, and downloads are authenticated (hash
 * checked) before any plaintext is produced.
 */
import { createReadStream, createWriteStream, mkdtempSync, rmSync } from "node:fs";

import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { Readable, Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { decryptAttachmentFile, encryptAttachmentToFile, type EncryptedFileInfo } from "../../crypto/attachments.js";
import { InvalidArgumentError, MatrixHttpError } from "../../protocol/errors.js";
import { p, type HttpClient } from "../../http/HttpClient.js";

/** What can be uploaded: a file path, bytes, or a readable stream. */
export type AttachmentInput = string | Uint8Array | Readable;

/** Options of the `send*` file methods. */
export interface SendFileOptions {
  /** Display name / body of the message. Default: the file's base name, or "file". */
  name?: string;
  /** MIME type. Default `application/octet-stream`. */
  mimetype?: string;
  /** Extra `info` fields (w, h, duration, thumbnail_info…). `size` and `mimetype` are filled in. */
  info?: Record<string, unknown>;
}

type Json = Record<string, unknown>;

function toReadable(input: AttachmentInput): Readable {
  if (typeof input === "string") return createReadStream(input);
  if (input instanceof Uint8Array) return Readable.from([Buffer.from(input.buffer, input.byteOffset, input.byteLength)]);
  return input;
}

function tempFile(): { path: string; dispose: () => void } {
  const dir = mkdtempSync(join(tmpdir(), "sdk-media-"));
  return { path: join(dir, "blob"), dispose: () => rmSync(dir, { recursive: true, force: true }) };
}

async function uploadFile(http: HttpClient, path: string, size: number, contentType: string, filename: string | undefined): Promise<string> {
  const res = await http.request<Json>("POST", "/_matrix/media/v3/upload", {
    query: { filename },
    streamBody: () => createReadStream(path),
    contentLength: size,
    contentType,
    timeoutMs: 10 * 60_000,
  });
  if (typeof res.content_uri !== "string") throw new MatrixHttpError(200, "M_BAD_JSON", "upload response lacks content_uri");
  return res.content_uri;
}

/** Upload content in the clear; returns the mxc URI. @internal */
export async function uploadPlain(http: HttpClient, input: AttachmentInput, contentType: string, filename?: string): Promise<{ mxc: string; size: number }> {
  const tmp = tempFile();
  try {
    let size = 0;
    await pipeline(
      toReadable(input),
      async function* (src: AsyncIterable<Buffer>) {
        for await (const c of src) {
          size += c.length;
          yield c;
        }
      },
      createWriteStream(tmp.path, { mode: 0o600 }),
    );
    return { mxc: await uploadFile(http, tmp.path, size, contentType, filename), size };
  } finally {
    tmp.dispose();
  }
}

/** Encrypt and upload; returns the `file` object (with `url`) for the event. @internal */
export async function uploadEncrypted(http: HttpClient, input: AttachmentInput): Promise<{ file: EncryptedFileInfo & { url: string }; size: number }> {
  const tmp = tempFile();
  try {
    const { info, size } = await encryptAttachmentToFile(toReadable(input), tmp.path);
    const mxc = await uploadFile(http, tmp.path, size, "application/octet-stream", undefined);
    return { file: { ...info, url: mxc }, size };
  } finally {
    tmp.dispose();
  }
}

/** Build the message content of a file event. @internal */
export function fileContent(msgtype: string, input: AttachmentInput, opts: SendFileOptions, upload: { size: number; mxc?: string; file?: EncryptedFileInfo & { url: string } }): Json {
  const name = opts.name ?? (typeof input === "string" ? basename(input) : "file");
  const content: Json = { msgtype, body: name, info: { ...(opts.info ?? {}), mimetype: opts.mimetype ?? "application/octet-stream", size: upload.size } };
  if (msgtype === "m.file") content.filename = name;
  if (upload.file) content.file = upload.file;
  else content.url = upload.mxc;
  return content;
}

function parseMxc(uri: unknown): { server: string; mediaId: string } {
  const m = typeof uri === "string" ? /^mxc:\/\/([^/]+)\/([^/?#]+)$/.exec(uri) : null;
  if (!m) throw new InvalidArgumentError(`not an mxc URI: ${String(uri)}`);
  return { server: m[1]!, mediaId: m[2]! };
}

async function downloadTo(http: HttpClient, mxc: unknown, out: Writable): Promise<void> {
  const { server, mediaId } = parseMxc(mxc);
  let res;
  try {
    res = await http.download(p`/_matrix/client/v1/media/download/${server}/${mediaId}`);
  } catch (err) {
    // Servers without authenticated media answer 404/400 M_UNRECOGNIZED: fall back to the legacy endpoint.
    if (!(err instanceof MatrixHttpError) || ![400, 404, 405].includes(err.status)) throw err;
    res = await http.download(p`/_matrix/media/v3/download/${server}/${mediaId}`);
  }
  await pipeline(res.body, out);
}

/**
 * Download the attachment of a message content and write the plaintext to `output`: decrypted and
 * hash-checked when the content has `file`, as is when it has `url`. @internal
 */
export async function downloadAttachment(http: HttpClient, content: Json, output: Writable): Promise<void> {
  if (content.file && typeof content.file === "object") {
    const file = content.file as Json;
    const tmp = tempFile();
    try {
      await downloadTo(http, file.url, createWriteStream(tmp.path, { mode: 0o600 }));
      await decryptAttachmentFile(tmp.path, file, output);
    } finally {
      tmp.dispose();
    }
    return;
  }
  if (content.url === undefined) throw new InvalidArgumentError("the content has neither file nor url");
  await downloadTo(http, content.url, output);
}

/** Collect a download into memory. @internal */
export async function downloadToBuffer(http: HttpClient, content: Json): Promise<Uint8Array> {
  const chunks: Buffer[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _e, cb) {
      chunks.push(chunk);
      cb();
    },
  });
  await downloadAttachment(http, content, sink);
  return new Uint8Array(Buffer.concat(chunks));
}


