import { before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { createCipheriv, createHash, randomBytes } from "node:crypto";
import * as wasm from "@matrix-org/matrix-sdk-crypto-wasm";
import { decryptAttachment, encryptAttachment, type EncryptedFileInfo } from "../../src/crypto/attachments.js";
import {
  AttachmentError,
  ErrorCode,
  MatrixSdkError,
  deserializeError,
  serializeError,
  type AttachmentErrorReason,
} from "../../src/protocol/errors.js";

const MiB = 1024 * 1024;
const SIZES = [0, 1, 15, 16, 17, 1000, 4096 + 3, MiB];

function isAttachmentError(reason: AttachmentErrorReason): (e: unknown) => boolean {
  return (e: unknown) => {
    assert.ok(e instanceof AttachmentError, `expected AttachmentError, got ${String(e)}`);
    assert.equal(e.code, ErrorCode.Attachment);
    assert.equal(e.code, "M_SDK_ATTACHMENT");
    assert.equal(e.reason, reason, `reason: ${e.message}`);
    assert.equal(e.details.reason, reason);
    return true;
  };
}

const bytes = (n: number): Uint8Array => new Uint8Array(randomBytes(n));
const clone = (info: EncryptedFileInfo): EncryptedFileInfo => structuredClone(info);
const std = (b: Uint8Array, pad = false): string => {
  const s = Buffer.from(b).toString("base64");
  return pad ? s : s.replace(/=+$/, "");
};

/** Encrypt with a caller-chosen IV, independently of the module under test. */
function handEncrypt(plain: Uint8Array, iv: Buffer): { data: Uint8Array; info: EncryptedFileInfo } {
  const key = randomBytes(32);
  const c = createCipheriv("aes-256-ctr", key, iv);
  const data = Buffer.concat([c.update(plain), c.final()]);
  return {
    data: new Uint8Array(data),
    info: {
      v: "v2",
      key: { kty: "oct", alg: "A256CTR", ext: true, k: key.toString("base64url"), key_ops: ["encrypt", "decrypt"] },
      iv: std(iv),
      hashes: { sha256: std(createHash("sha256").update(data).digest()) },
    },
  };
}

describe("attachments: cross-implementation with matrix-sdk-crypto-wasm", () => {
  before(async () => {
    await wasm.initAsync();
  });

  for (const size of SIZES) {
    it(`decrypts a ${size}-byte attachment encrypted by the Rust SDK`, () => {
      const plain = bytes(size);
      const enc = wasm.Attachment.encrypt(plain);
      const info = JSON.parse(enc.mediaEncryptionInfo!) as EncryptedFileInfo;
      assert.equal(info.v, "v2");
      assert.deepEqual(decryptAttachment(enc.encryptedData, info), plain);
      enc.free();
    });

    it(`encrypts a ${size}-byte attachment the Rust SDK decrypts`, () => {
      const plain = bytes(size);
      const { data, info } = encryptAttachment(plain);
      const enc = new wasm.EncryptedAttachment(data, JSON.stringify(info));
      assert.deepEqual(new Uint8Array(wasm.Attachment.decrypt(enc)), plain);
      enc.free();
    });
  }

  it("agrees with the Rust SDK on an IV whose low 64 bits are not zero (the full 16-byte IV is the counter block)", () => {
    // Counter half near overflow: a 128-bit counter carries into byte 7, a 64-bit counter would wrap.
    const iv = Buffer.from("0102030405060708fffffffffffffffe", "hex");
    const plain = bytes(100);
    const { data, info } = handEncrypt(plain, iv);
    assert.deepEqual(decryptAttachment(data, info), plain);
    const theirs = wasm.Attachment.decrypt(new wasm.EncryptedAttachment(data, JSON.stringify(info)));
    assert.deepEqual(new Uint8Array(theirs), plain);
  });

  it("the Rust SDK refuses what we refuse: a flipped ciphertext byte", () => {
    const { data, info } = encryptAttachment(bytes(64));
    data[10] = data[10]! ^ 1;
    assert.throws(() => wasm.Attachment.decrypt(new wasm.EncryptedAttachment(data, JSON.stringify(info))));
    assert.throws(() => decryptAttachment(data, info), isAttachmentError("hash_mismatch"));
  });
});

describe("attachments: our format", () => {
  it("writes v2 metadata: oct/A256CTR JWK with base64url key, unpadded base64 IV (8 random + 8 zero bytes) and SHA-256", () => {
    const plain = bytes(1234);
    const { data, info } = encryptAttachment(plain);
    assert.equal(data.length, plain.length);
    assert.ok(!Buffer.isBuffer(data), "returns a plain Uint8Array");
    assert.equal(data.byteOffset, 0);
    assert.equal(data.buffer.byteLength, data.length, "owns its whole ArrayBuffer");
    assert.deepEqual(Object.keys(info).sort(), ["hashes", "iv", "key", "v"]);
    assert.equal(info.v, "v2");
    assert.deepEqual(info.key.key_ops, ["encrypt", "decrypt"]);
    assert.equal(info.key.kty, "oct");
    assert.equal(info.key.alg, "A256CTR");
    assert.equal(info.key.ext, true);
    assert.match(info.key.k, /^[A-Za-z0-9_-]{43}$/);
    assert.equal(Buffer.from(info.key.k, "base64url").length, 32);
    assert.match(info.iv, /^[A-Za-z0-9+/]{22}$/);
    const iv = Buffer.from(info.iv, "base64");
    assert.equal(iv.length, 16);
    assert.deepEqual(iv.subarray(8), Buffer.alloc(8));
    assert.match(info.hashes.sha256, /^[A-Za-z0-9+/]{43}$/);
    assert.equal(info.hashes.sha256, std(createHash("sha256").update(data).digest()));
    assert.notDeepEqual(Buffer.from(data), Buffer.from(plain));
  });

  it("uses a fresh key and IV every time", () => {
    const plain = bytes(32);
    const a = encryptAttachment(plain);
    const b = encryptAttachment(plain);
    assert.notEqual(a.info.key.k, b.info.key.k);
    assert.notEqual(a.info.iv, b.info.iv);
    assert.notDeepEqual(a.data, b.data);
  });

  for (const size of [0, MiB]) {
    it(`round-trips ${size} bytes`, () => {
      const plain = bytes(size);
      const { data, info } = encryptAttachment(plain);
      const out = decryptAttachment(data, info);
      assert.deepEqual(out, plain);
      assert.equal(out.buffer.byteLength, out.length);
    });
  }

  it("ignores url and extra hashes, and accepts standard or URL-safe base64, padded or not", () => {
    const plain = bytes(300);
    const { data, info } = encryptAttachment(plain);
    const key = Buffer.from(info.key.k, "base64url");
    const iv = Buffer.from(info.iv, "base64");
    const hash = Buffer.from(info.hashes.sha256, "base64");
    const variants: EncryptedFileInfo[] = [
      { ...clone(info), url: "mxc://example.org/abc", hashes: { sha256: info.hashes.sha256, sha512: "ignored" } },
      { ...clone(info), key: { ...info.key, k: std(key, true) }, iv: std(iv, true), hashes: { sha256: std(hash, true) } },
      { ...clone(info), key: { ...info.key, k: `${info.key.k}=` }, iv: iv.toString("base64url"), hashes: { sha256: hash.toString("base64url") } },
      { ...clone(info), key: { ...info.key, k: std(key), key_ops: ["decrypt"] } },
    ];
    for (const v of variants) assert.deepEqual(decryptAttachment(data, v), plain, JSON.stringify(v));
  });

  it("uses all 16 IV bytes", () => {
    const plain = bytes(5000);
    const { data, info } = handEncrypt(plain, randomBytes(16));
    assert.deepEqual(decryptAttachment(data, info), plain);
  });
});

describe("attachments: errors", () => {
  const plain = bytes(4096);
  const { data, info } = encryptAttachment(plain);

  it("a flipped ciphertext byte → hash_mismatch", () => {
    for (const at of [0, 1000, data.length - 1]) {
      const altered = new Uint8Array(data);
      altered[at] = altered[at]! ^ 0x80;
      assert.throws(() => decryptAttachment(altered, info), isAttachmentError("hash_mismatch"), `byte ${at}`);
    }
  });

  it("an appended or removed byte → hash_mismatch", () => {
    const longer = new Uint8Array(data.length + 1);
    longer.set(data);
    assert.throws(() => decryptAttachment(longer, info), isAttachmentError("hash_mismatch"));
    assert.throws(() => decryptAttachment(data.subarray(0, data.length - 1), info), isAttachmentError("hash_mismatch"));
    assert.throws(() => decryptAttachment(new Uint8Array(0), info), isAttachmentError("hash_mismatch"));
  });

  it("a wrong hash value → hash_mismatch", () => {
    const other = std(createHash("sha256").update("something else").digest());
    assert.throws(() => decryptAttachment(data, { ...clone(info), hashes: { sha256: other } }), isAttachmentError("hash_mismatch"));
  });

  it("unknown, v1 or missing version → unsupported_version", () => {
    for (const v of ["v3", "v1", "V2", "", undefined, 2]) {
      const bad = { ...clone(info), v } as unknown as EncryptedFileInfo;
      assert.throws(() => decryptAttachment(data, bad), isAttachmentError("unsupported_version"), String(v));
    }
  });

  it("another algorithm → unsupported_algorithm", () => {
    for (const alg of ["A128CTR", "A256GCM", undefined]) {
      const bad = { ...clone(info), key: { ...info.key, alg } } as unknown as EncryptedFileInfo;
      assert.throws(() => decryptAttachment(data, bad), isAttachmentError("unsupported_algorithm"), String(alg));
    }
  });

  it("a key that is not a 256-bit oct key allowed to decrypt → bad_key", () => {
    const key = Buffer.from(info.key.k, "base64url");
    const bads: unknown[] = [
      { ...info.key, key_ops: ["encrypt"] },
      { ...info.key, key_ops: [] },
      { ...info.key, key_ops: "decrypt" },
      { ...info.key, kty: "RSA" },
      { ...info.key, k: key.subarray(0, 16).toString("base64url") },
      { ...info.key, k: Buffer.concat([key, Buffer.from([0])]).toString("base64url") },
      { ...info.key, k: "not base64!" },
      { ...info.key, k: undefined },
      null,
    ];
    for (const k of bads) {
      const bad = { ...clone(info), key: k } as unknown as EncryptedFileInfo;
      assert.throws(() => decryptAttachment(data, bad), isAttachmentError("bad_key"), JSON.stringify(k));
    }
  });

  it("a missing or malformed IV or hash → bad_format", () => {
    const bads: Partial<Record<keyof EncryptedFileInfo, unknown>>[] = [
      { iv: undefined },
      { iv: std(randomBytes(12)) },
      { iv: "%%%%%%%%%%%%%%%%%%%%%%" },
      { hashes: undefined },
      { hashes: {} },
      { hashes: { sha512: info.hashes.sha256 } },
      { hashes: { sha256: std(randomBytes(31)) } },
      { hashes: { sha256: `${info.hashes.sha256}!` } },
    ];
    for (const patch of bads) {
      const bad = { ...clone(info), ...patch } as unknown as EncryptedFileInfo;
      assert.throws(() => decryptAttachment(data, bad), isAttachmentError("bad_format"), JSON.stringify(patch));
    }
    assert.throws(() => decryptAttachment(data, null as unknown as EncryptedFileInfo), isAttachmentError("bad_format"));
  });

  it("crosses the worker boundary as an AttachmentError with its reason", () => {
    let err: unknown;
    try {
      decryptAttachment(new Uint8Array(data.length), info);
    } catch (e) {
      err = e;
    }
    const back = deserializeError(JSON.parse(JSON.stringify(serializeError(err))));
    assert.ok(back instanceof AttachmentError);
    assert.ok(MatrixSdkError.isSdkError(back));
    assert.equal(back.reason, "hash_mismatch");
  });
});
