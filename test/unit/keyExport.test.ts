import { before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { createCipheriv, createHmac, generateKeyPairSync, pbkdf2Sync, randomBytes } from "node:crypto";
import * as wasm from "@matrix-org/matrix-sdk-crypto-wasm";
import {
  DEFAULT_KEY_EXPORT_ROUNDS,
  KEY_EXPORT_FOOTER,
  KEY_EXPORT_HEADER,
  decryptKeyExport,
  decryptKeyExportToJson,
  encryptKeyExport,
  encryptKeyExportJson,
  parseKeyExportSessions,
  type ExportedRoomKey,
} from "../../src/pure/keyExport.js";
import {
  ErrorCode,
  InvalidArgumentError,
  KeyExportError,
  MatrixSdkError,
  deserializeError,
  serializeError,
  type KeyExportErrorReason,
} from "../../src/protocol/errors.js";

// Small PBKDF2 round counts keep the suite fast; the default is checked once below.
const ROUNDS = 1000;

const b64 = (b: Uint8Array): string => Buffer.from(b).toString("base64").replace(/=+$/, "");
/** Raw 32-byte public key of a fresh ed25519 / x25519 key pair (the wasm lib validates these). */
function rawPublicKey(type: "ed25519" | "x25519"): Buffer {
  const jwk = (type === "ed25519" ? generateKeyPairSync("ed25519") : generateKeyPairSync("x25519")).publicKey.export({ format: "jwk" });
  return Buffer.from(String(jwk.x), "base64url");
}

/** A session the Rust SDK accepts: real curve points, and a well-formed Megolm session export. */
function makeSession(i: number, roomSuffix = ""): ExportedRoomKey {
  const signing = rawPublicKey("ed25519");
  const index = Buffer.alloc(4);
  index.writeUInt32BE(i);
  // Megolm session export: version 1 ‖ message index ‖ 128-byte ratchet ‖ Ed25519 signing key.
  const sessionKey = Buffer.concat([Buffer.from([1]), index, randomBytes(128), signing]);
  return {
    algorithm: "m.megolm.v1.aes-sha2",
    room_id: `!room${i}${roomSuffix}:example.org`,
    sender_key: b64(rawPublicKey("x25519")),
    sender_claimed_keys: { ed25519: b64(rawPublicKey("ed25519")) },
    session_id: b64(signing),
    session_key: b64(sessionKey),
    forwarding_curve25519_key_chain: i % 2 ? [b64(rawPublicKey("x25519"))] : [],
  };
}

/** The Rust SDK adds `"m.shared_history": false`; drop it to compare with our input. */
function normalize(keys: unknown[]): unknown[] {
  return keys.map((k) => {
    const { ["m.shared_history"]: shared, ...rest } = k as Record<string, unknown>;
    return shared === false || shared === undefined ? rest : k;
  });
}

function sortKeys(keys: unknown[]): unknown[] {
  return keys.map((k) => JSON.parse(JSON.stringify(k, Object.keys(k as object).sort())) as unknown);
}

function decodeBody(file: string): Buffer {
  const start = file.indexOf(KEY_EXPORT_HEADER) + KEY_EXPORT_HEADER.length;
  return Buffer.from(file.slice(start, file.indexOf(KEY_EXPORT_FOOTER)).replace(/\s+/g, ""), "base64");
}

function armour(body: Buffer): string {
  return `${KEY_EXPORT_HEADER}\n${body.toString("base64")}\n${KEY_EXPORT_FOOTER}\n`;
}

/** Build a valid v1 file around an arbitrary plaintext, independently of the module under test. */
function handMadeFile(plaintext: Buffer, passphrase: string, rounds = ROUNDS): string {
  const salt = randomBytes(16);
  const iv = randomBytes(16);
  iv[8] = iv[8]! & 0x7f;
  const k = pbkdf2Sync(passphrase, salt, rounds, 64, "sha512");
  const header = Buffer.alloc(37);
  header[0] = 1;
  salt.copy(header, 1);
  iv.copy(header, 17);
  header.writeUInt32BE(rounds, 33);
  const c = createCipheriv("aes-256-ctr", k.subarray(0, 32), iv);
  const ct = Buffer.concat([c.update(plaintext), c.final()]);
  const mac = createHmac("sha256", k.subarray(32)).update(header).update(ct).digest();
  return armour(Buffer.concat([header, ct, mac]));
}

function isKeyExportError(reason: KeyExportErrorReason): (e: unknown) => boolean {
  return (e: unknown) => {
    assert.ok(e instanceof KeyExportError, `expected KeyExportError, got ${String(e)}`);
    assert.equal(e.code, ErrorCode.KeyExport);
    assert.equal(e.code, "M_SDK_KEY_EXPORT");
    assert.equal(e.reason, reason, `reason: ${e.message}`);
    assert.equal(e.details.reason, reason);
    return true;
  };
}

// Known-answer vectors from Element Web's MegolmExportEncryption tests (also used by the Android and
// iOS SDKs). Their plaintexts are not JSON, so they exercise decryptKeyExportToJson only.
const ELEMENT_VECTORS: [plaintext: string, passphrase: string, file: string][] = [
  [
    "plain",
    "password",
    "-----BEGIN MEGOLM SESSION DATA-----\n" +
      "AXNhbHRzYWx0c2FsdHNhbHSIiIiIiIiIiIiIiIiIiIiIAAAACmIRUW2OjZ3L2l6j9h0lHlV3M2dx\n" +
      "cissyYBxjsfsAndErh065A8=\n" +
      "-----END MEGOLM SESSION DATA-----",
  ],
  [
    "Hello, World",
    "betterpassword",
    "-----BEGIN MEGOLM SESSION DATA-----\n" +
      "AW1vcmVzYWx0bW9yZXNhbHT//////////wAAAAAAAAAAAAAD6KyBpe1Niv5M5NPm4ZATsJo5nghk\n" +
      "KYu63a0YQ5DRhUWEKk7CcMkrKnAUiZny\n" +
      "-----END MEGOLM SESSION DATA-----",
  ],
];

describe("key export: cross-implementation with matrix-sdk-crypto-wasm", () => {
  let keys: ExportedRoomKey[];
  before(async () => {
    await wasm.initAsync();
    keys = Array.from({ length: 5 }, (_, i) => makeSession(i));
  });

  it("decrypts a file written by the Rust SDK to the same sessions", async () => {
    const file = wasm.OlmMachine.encryptExportedRoomKeys(JSON.stringify(keys), "correct horse", ROUNDS);
    const ours = await decryptKeyExport(file, "correct horse");
    assert.deepEqual(ours, JSON.parse(wasm.OlmMachine.decryptExportedRoomKeys(file, "correct horse")));
    assert.deepEqual(sortKeys(normalize(ours)), sortKeys(keys));
    // The plaintext-only variant returns the very JSON the Rust SDK decrypts.
    assert.equal(await decryptKeyExportToJson(file, "correct horse"), wasm.OlmMachine.decryptExportedRoomKeys(file, "correct horse"));
  });

  it("writes a file the Rust SDK decrypts", async () => {
    const file = await encryptKeyExport(keys, "correct horse", { rounds: ROUNDS });
    const theirs = JSON.parse(wasm.OlmMachine.decryptExportedRoomKeys(file, "correct horse")) as unknown[];
    assert.deepEqual(sortKeys(normalize(theirs)), sortKeys(keys));
  });

  it("round-trips a non-ASCII passphrase in both directions", async () => {
    const pass = "pässwörd 🔑 пароль";
    const ours = await encryptKeyExport(keys, pass, { rounds: ROUNDS });
    assert.deepEqual(sortKeys(normalize(JSON.parse(wasm.OlmMachine.decryptExportedRoomKeys(ours, pass)) as unknown[])), sortKeys(keys));
    const theirs = wasm.OlmMachine.encryptExportedRoomKeys(JSON.stringify(keys), pass, ROUNDS);
    assert.deepEqual(sortKeys(normalize(await decryptKeyExport(theirs, pass))), sortKeys(keys));
  });

  it("round-trips an empty export both ways", async () => {
    const ours = await encryptKeyExport([], "pw", { rounds: ROUNDS });
    assert.deepEqual(JSON.parse(wasm.OlmMachine.decryptExportedRoomKeys(ours, "pw")), []);
    const theirs = wasm.OlmMachine.encryptExportedRoomKeys("[]", "pw", ROUNDS);
    assert.deepEqual(await decryptKeyExport(theirs, "pw"), []);
  });

  it("rejects a wrong passphrase on a Rust-written file with bad_passphrase_or_mac", async () => {
    const file = wasm.OlmMachine.encryptExportedRoomKeys(JSON.stringify(keys), "right", ROUNDS);
    await assert.rejects(decryptKeyExport(file, "wrong"), isKeyExportError("bad_passphrase_or_mac"));
    await assert.rejects(decryptKeyExport(file, ""), isKeyExportError("bad_passphrase_or_mac"));
  });

  it("imports CRLF, single-line, re-wrapped, padded, unpadded and whitespace-padded variants of a Rust-written file", async () => {
    // The Rust SDK writes the body on one line, as unpadded base64, with no final newline. Vary the
    // room ID length until the body length is not a multiple of 3, so that padding means something.
    let file = "";
    for (let pad = 0; pad < 3 && decodeBody(file).length % 3 === 0; pad++) {
      file = wasm.OlmMachine.encryptExportedRoomKeys(JSON.stringify([makeSession(7, "x".repeat(pad))]), "pw", ROUNDS);
    }
    assert.notEqual(decodeBody(file).length % 3, 0, "test setup: expected a body that needs padding");
    assert.equal(file.split("\n").length, 3, "the Rust SDK writes a single body line");
    const padded = decodeBody(file).toString("base64");
    const unpadded = padded.replace(/=+$/, "");
    assert.notEqual(padded, unpadded);
    const expected = await decryptKeyExport(file, "pw");
    assert.equal(expected.length, 1);
    const wrap = (s: string, n: number): string => s.match(new RegExp(`.{1,${n}}`, "g"))!.join("\n");
    const variants: Record<string, string> = {
      asIs: file,
      asIsWithTrailingNewline: `${file}\n`,
      crlf: file.replace(/\n/g, "\r\n") + "\r\n",
      singleLinePadded: `${KEY_EXPORT_HEADER}\n${padded}\n${KEY_EXPORT_FOOTER}`,
      singleLineCrlfTrailingNewline: `${KEY_EXPORT_HEADER}\r\n${unpadded}\r\n${KEY_EXPORT_FOOTER}\r\n`,
      wrapped64Padded: `${KEY_EXPORT_HEADER}\n${wrap(padded, 64)}\n${KEY_EXPORT_FOOTER}\n`,
      wrapped76CrlfUnpadded: `${KEY_EXPORT_HEADER}\r\n${wrap(unpadded, 76).replace(/\n/g, "\r\n")}\r\n${KEY_EXPORT_FOOTER}\r\n`,
      wrapped128Unpadded: `${KEY_EXPORT_HEADER}\n${wrap(unpadded, 128)}\n${KEY_EXPORT_FOOTER}\n`,
      surroundingWhitespace: `\n\n   ${file.replace(/\n/g, "\n  ")}  \n\n\t`,
      indentedLines: file.split("\n").map((l) => `  ${l}\t`).join("\n"),
      textAroundArmour: `Exported from some client\n${file}\ntrailing notes\n`,
    };
    for (const [name, text] of Object.entries(variants)) {
      assert.deepEqual(await decryptKeyExport(text, "pw"), expected, name);
    }
  });
});

describe("key export: our own format", () => {
  const keys = [makeSession(1), makeSession(2), makeSession(3), makeSession(4)];

  it("armours with header and footer lines, 128-character lines (Element's 96 bytes) and a trailing newline", async () => {
    const file = await encryptKeyExport(keys, "pw", { rounds: ROUNDS });
    assert.ok(file.endsWith(`\n${KEY_EXPORT_FOOTER}\n`));
    const lines = file.split("\n");
    assert.equal(lines[0], KEY_EXPORT_HEADER);
    assert.equal(lines.at(-2), KEY_EXPORT_FOOTER);
    assert.equal(lines.at(-1), "");
    const bodyLines = lines.slice(1, -2);
    assert.ok(bodyLines.length > 2);
    for (const l of bodyLines.slice(0, -1)) {
      assert.equal(l.length, 128);
      assert.match(l, /^[A-Za-z0-9+/]+$/);
    }
    assert.ok(bodyLines.at(-1)!.length <= 128);
    assert.ok(!file.includes("\r"));
  });

  it("writes version 1, the requested rounds, and a fresh salt and IV each time", async () => {
    const a = decodeBody(await encryptKeyExport(keys, "pw", { rounds: 1234 }));
    const b = decodeBody(await encryptKeyExport(keys, "pw", { rounds: 1234 }));
    assert.equal(a[0], 1);
    assert.equal(a.readUInt32BE(33), 1234);
    assert.notDeepEqual(a.subarray(1, 17), b.subarray(1, 17));
    assert.notDeepEqual(a.subarray(17, 33), b.subarray(17, 33));
  });

  it("clears bit 63 of the IV (top bit of IV byte 8, body byte 25)", async () => {
    // With a random IV, 64 exports would all have the bit clear with probability 2^-64.
    for (let i = 0; i < 64; i++) {
      const body = decodeBody(await encryptKeyExportJson("[]", "pw", { rounds: 1 }));
      assert.equal(body[17 + 8]! & 0x80, 0);
    }
  });

  it("reads the rounds from the file", async () => {
    for (const rounds of [1, 7, 2500]) {
      const file = await encryptKeyExport(keys, "pw", { rounds });
      assert.equal(decodeBody(file).readUInt32BE(33), rounds);
      assert.deepEqual(await decryptKeyExport(file, "pw"), keys);
    }
    // A hand-made file with yet another count decrypts too.
    assert.deepEqual(await decryptKeyExport(handMadeFile(Buffer.from(JSON.stringify(keys)), "pw", 321), "pw"), keys);
  });

  it("uses at least 100 000 rounds by default", { timeout: 60_000 }, async () => {
    assert.ok(DEFAULT_KEY_EXPORT_ROUNDS >= 100_000);
    const file = await encryptKeyExport(keys.slice(0, 1), "pw");
    assert.equal(decodeBody(file).readUInt32BE(33), DEFAULT_KEY_EXPORT_ROUNDS);
    assert.deepEqual(await decryptKeyExport(file, "pw"), keys.slice(0, 1));
  });

  it("rejects invalid round counts with InvalidArgumentError", async () => {
    for (const rounds of [0, -1, 1.5, Number.NaN, 2 ** 32]) {
      await assert.rejects(encryptKeyExport(keys, "pw", { rounds }), (e: unknown) => e instanceof InvalidArgumentError);
    }
  });

  it("keeps unknown fields and the shared-history flag", async () => {
    const extra = [{ ...keys[0]!, "m.shared_history": true, "org.example.custom": { a: 1 } }];
    const file = await encryptKeyExport(extra, "pw", { rounds: ROUNDS });
    assert.deepEqual(await decryptKeyExport(file, "pw"), extra);
  });
});

describe("key export: errors", () => {
  const keys = [makeSession(1), makeSession(2)];
  let file: string;
  before(async () => {
    file = await encryptKeyExport(keys, "pw", { rounds: ROUNDS });
  });

  it("wrong passphrase → bad_passphrase_or_mac", async () => {
    await assert.rejects(decryptKeyExport(file, "pW"), isKeyExportError("bad_passphrase_or_mac"));
  });

  it("a flipped MAC, ciphertext, salt, IV or rounds byte → bad_passphrase_or_mac", async () => {
    const body = decodeBody(file);
    for (const at of [body.length - 1, body.length - 32, 40, 1, 20, 36]) {
      const altered = Buffer.from(body);
      altered[at] = altered[at]! ^ 0x01;
      await assert.rejects(decryptKeyExport(armour(altered), "pw"), isKeyExportError("bad_passphrase_or_mac"), `byte ${at}`);
    }
    // Truncation and extension change the MAC position.
    await assert.rejects(decryptKeyExport(armour(body.subarray(0, body.length - 1)), "pw"), isKeyExportError("bad_passphrase_or_mac"));
    await assert.rejects(decryptKeyExport(armour(Buffer.concat([body, Buffer.from([0])])), "pw"), isKeyExportError("bad_passphrase_or_mac"));
  });

  it("version byte 2 (or 0) → unsupported_version", async () => {
    for (const v of [0, 2, 0xff]) {
      const body = decodeBody(file);
      body[0] = v;
      await assert.rejects(decryptKeyExport(armour(body), "pw"), (e: unknown) => {
        isKeyExportError("unsupported_version")(e);
        assert.equal((e as KeyExportError).details.version, v);
        return true;
      });
    }
    // Even a short body is reported by its version first.
    await assert.rejects(decryptKeyExport(armour(Buffer.from([2, 0, 0])), "pw"), isKeyExportError("unsupported_version"));
  });

  it("garbage, missing armour, bad base64, too short → bad_format", async () => {
    const body = decodeBody(file).toString("base64");
    const cases: Record<string, string> = {
      empty: "",
      garbage: "this is not a key file",
      binaryish: "\u0000\u0001\u0002",
      bodyWithoutArmour: body,
      noFooter: `${KEY_EXPORT_HEADER}\n${body}\n`,
      footerFirst: `${KEY_EXPORT_FOOTER}\n${body}\n${KEY_EXPORT_HEADER}\n`,
      noHeader: `${body}\n${KEY_EXPORT_FOOTER}\n`,
      emptyBody: `${KEY_EXPORT_HEADER}\n${KEY_EXPORT_FOOTER}\n`,
      badChars: `${KEY_EXPORT_HEADER}\n${body.slice(0, 40)}!*${body.slice(42)}\n${KEY_EXPORT_FOOTER}\n`,
      urlSafeAlphabet: `${KEY_EXPORT_HEADER}\n${body.replace(/\+/g, "-").replace(/\//g, "_")}-_\n${KEY_EXPORT_FOOTER}\n`,
      paddingInTheMiddle: `${KEY_EXPORT_HEADER}\nAQ==\n${body}\n${KEY_EXPORT_FOOTER}\n`,
      lengthOneMod4: `${KEY_EXPORT_HEADER}\n${body.replace(/=+$/, "").slice(0, 4 * 30 + 1)}\n${KEY_EXPORT_FOOTER}\n`,
      tooShort: armour(Buffer.concat([Buffer.from([1]), randomBytes(67)])),
      justVersion: armour(Buffer.from([1])),
      zeroRounds: armour(Buffer.concat([Buffer.from([1]), randomBytes(32), Buffer.alloc(4), randomBytes(40)])),
    };
    for (const [name, text] of Object.entries(cases)) {
      await assert.rejects(decryptKeyExport(text, "pw"), isKeyExportError("bad_format"), name);
    }
  });

  it("authentic plaintext that is not a JSON array of session objects → bad_json", async () => {
    const objectFile = handMadeFile(Buffer.from('{"sessions": []}'), "pw");
    await assert.rejects(decryptKeyExport(objectFile, "pw"), (e: unknown) => {
      isKeyExportError("bad_json")(e);
      assert.equal((e as KeyExportError).details.type, "object");
      return true;
    });
    // The unparsed variant hands the text back as is.
    assert.equal(await decryptKeyExportToJson(objectFile, "pw"), '{"sessions": []}');

    const bad: Record<string, Buffer> = {
      notJson: Buffer.from("[{"),
      arrayOfNumbers: Buffer.from("[1, 2]"),
      arrayWithNull: Buffer.from(`[${JSON.stringify(keys[0])}, null]`),
      nestedArray: Buffer.from("[[]]"),
      string: Buffer.from('"[]"'),
      notUtf8: Buffer.from([0x5b, 0xff, 0xfe, 0x5d]),
    };
    for (const [name, plaintext] of Object.entries(bad)) {
      await assert.rejects(decryptKeyExport(handMadeFile(plaintext, "pw"), "pw"), isKeyExportError("bad_json"), name);
    }
    // Invalid UTF-8 is refused even by the unparsed variant.
    await assert.rejects(decryptKeyExportToJson(handMadeFile(bad.notUtf8!, "pw"), "pw"), isKeyExportError("bad_json"));
  });

  it("crosses the worker boundary as a KeyExportError with its reason", async () => {
    const err = await decryptKeyExport(file, "nope").then(
      () => assert.fail("should have thrown"),
      (e: unknown) => e,
    );
    const back = deserializeError(JSON.parse(JSON.stringify(serializeError(err))));
    assert.ok(back instanceof KeyExportError);
    assert.ok(MatrixSdkError.isSdkError(back));
    assert.equal(back.reason, "bad_passphrase_or_mac");
    assert.equal(back.code, ErrorCode.KeyExport);
  });
});

describe("key export: Element Web's known-answer vectors", () => {
  for (const [plaintext, passphrase, file] of ELEMENT_VECTORS) {
    it(`decrypts ${JSON.stringify(plaintext)}`, async () => {
      assert.equal(await decryptKeyExportToJson(file, passphrase), plaintext);
      // The first vector's IV has bit 63 set: readers must not require it clear.
      await assert.rejects(decryptKeyExportToJson(file, `${passphrase}x`), isKeyExportError("bad_passphrase_or_mac"));
      // Not a JSON array, so the parsing variant refuses it.
      await assert.rejects(decryptKeyExport(file, passphrase), isKeyExportError("bad_json"));
    });
  }
});

describe("parseKeyExportSessions", () => {
  const base = makeSession(1);

  it("returns every entry, unknown algorithms included, and defaults the optional fields", () => {
    const { forwarding_curve25519_key_chain: _chain, sender_claimed_keys: _claimed, ...minimal } = base;
    const other = { ...base, algorithm: "org.example.future", session_id: "other" };
    const parsed = parseKeyExportSessions(JSON.stringify([minimal, other]));
    assert.equal(parsed.length, 2);
    assert.deepEqual(parsed[0], { ...minimal, sender_claimed_keys: {}, forwarding_curve25519_key_chain: [] });
    assert.equal(parsed[1]!.algorithm, "org.example.future");
    assert.deepEqual(parseKeyExportSessions("[]"), []);
  });

  it("rejects entries with missing or mistyped fields, naming the index and field", () => {
    const cases: [unknown, string | undefined][] = [
      [{ ...base, room_id: undefined }, "room_id"],
      [{ ...base, algorithm: 1 }, "algorithm"],
      [{ ...base, sender_key: null }, "sender_key"],
      [{ ...base, session_id: ["x"] }, "session_id"],
      [{ ...base, session_key: {} }, "session_key"],
      [{ ...base, sender_claimed_keys: { ed25519: 5 } }, "sender_claimed_keys"],
      [{ ...base, sender_claimed_keys: ["k"] }, "sender_claimed_keys"],
      [{ ...base, forwarding_curve25519_key_chain: "k" }, "forwarding_curve25519_key_chain"],
      [{ ...base, forwarding_curve25519_key_chain: [1] }, "forwarding_curve25519_key_chain"],
      [{ ...base, "m.shared_history": "yes" }, "m.shared_history"],
      ["string entry", undefined],
    ];
    for (const [entry, field] of cases) {
      assert.throws(
        () => parseKeyExportSessions(JSON.stringify([base, entry])),
        (e: unknown) => {
          isKeyExportError("bad_json")(e);
          assert.equal((e as KeyExportError).details.index, 1);
          assert.equal((e as KeyExportError).details.field, field);
          return true;
        },
        String(field),
      );
    }
  });
});
