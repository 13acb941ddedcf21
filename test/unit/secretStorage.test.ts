import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { webcrypto } from "node:crypto";
import fc from "fast-check";
import {
  PASSPHRASE_ALGORITHM_PBKDF2,
  SECRET_STORAGE_ALGORITHM_V1_AES,
  SecretStorageError,
  checkKey,
  decodeRecoveryKey,
  decryptSecret,
  deriveKeyFromPassphrase,
  encodeRecoveryKey,
  encryptSecret,
  generateRecoveryKey,
  makeKeyDescription,
  newSecretStorageKeyId,
  type AesHmacSha2EncryptedData,
  type SecretStorageErrorReason,
} from "../../workers/engine/secrets/secretStorage.js";
import { ErrorCode, InvalidArgumentError, deserializeError, serializeError } from "../../src/protocol/errors.js";

const subtle = webcrypto.subtle;
type CryptoKey = webcrypto.CryptoKey;
const b64 = (b: Uint8Array): string => Buffer.from(b).toString("base64").replace(/=+$/, "");
const padded = (s: string): string => s + "=".repeat((4 - (s.length % 4)) % 4);
const unb64 = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, "base64"));
const BASE58 = /^[1-9A-HJ-NP-Za-km-z]+$/;

function isSecretStorageError(reason: SecretStorageErrorReason): (e: unknown) => boolean {
  return (e: unknown) => {
    assert.ok(e instanceof SecretStorageError, `expected SecretStorageError, got ${String(e)}`);
    assert.ok(e instanceof InvalidArgumentError);
    assert.equal(e.code, ErrorCode.InvalidArgument);
    assert.equal(e.reason, reason, `reason: ${e.message}`);
    assert.equal(e.details.reason, reason);
    return true;
  };
}
function isInvalidArgument(e: unknown): boolean {
  assert.ok(e instanceof InvalidArgumentError, `expected InvalidArgumentError, got ${String(e)}`);
  return true;
}

// ---------------------------------------------------------------------------------------------
// An independent reference of m.secret_storage.v1.aes-hmac-sha2 on WebCrypto, written from the spec
// text the way matrix-js-sdk implements it (HKDF-SHA-256 with 32 zero bytes of salt; AES-CTR with a
// 64-bit counter; HMAC-SHA-256 over the ciphertext).

async function refKeys(key: Uint8Array, name: string): Promise<[CryptoKey, CryptoKey]> {
  const hkdf = await subtle.importKey("raw", key, "HKDF", false, ["deriveBits"]);
  const bits = new Uint8Array(
    await subtle.deriveBits({ name: "HKDF", hash: "SHA-256", salt: new Uint8Array(32), info: new TextEncoder().encode(name) }, hkdf, 512),
  );
  const aes = await subtle.importKey("raw", bits.slice(0, 32), { name: "AES-CTR" }, false, ["encrypt", "decrypt"]);
  const mac = await subtle.importKey("raw", bits.slice(32), { name: "HMAC", hash: "SHA-256" }, false, ["sign", "verify"]);
  return [aes, mac];
}
async function refEncrypt(data: Uint8Array, key: Uint8Array, name: string, iv: Uint8Array): Promise<AesHmacSha2EncryptedData> {
  const [aes, mac] = await refKeys(key, name);
  const ct = new Uint8Array(await subtle.encrypt({ name: "AES-CTR", counter: iv, length: 64 }, aes, data));
  const tag = new Uint8Array(await subtle.sign("HMAC", mac, ct));
  return { iv: b64(iv), ciphertext: b64(ct), mac: b64(tag) };
}
async function refDecrypt(data: AesHmacSha2EncryptedData, key: Uint8Array, name: string): Promise<string | null> {
  const [aes, mac] = await refKeys(key, name);
  const ct = unb64(data.ciphertext);
  if (!(await subtle.verify("HMAC", mac, unb64(data.mac), ct))) return null;
  return new TextDecoder().decode(await subtle.decrypt({ name: "AES-CTR", counter: unb64(data.iv), length: 64 }, aes, ct));
}
function randomIv(): Uint8Array {
  const iv = webcrypto.getRandomValues(new Uint8Array(16));
  iv[8]! &= 0x7f;
  return iv;
}

// ---------------------------------------------------------------------------------------------
// Known answers from other implementations (not produced by the code under test)

/** RFC 7748's Alice private key, and its recovery key in the matrix-js-sdk, matrix-ios-sdk,
 * matrix-android-sdk2 and Trixnity test suites. */
const RFC7748_KEY = Uint8Array.from(Buffer.from("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a", "hex"));
const RFC7748_RECOVERY_KEY = "EsTc LW2K PGiF wKEA 3As5 g5c4 BXwk qeeJ ZJV8 Q9fu gUMN UE4d";

/** matrix-rust-sdk crates/matrix-sdk-crypto/src/secret_storage.rs, test `base58_parsing`. */
const RUST_BASE58_KEY = "EsT           pRvZTnjck8    YrhRAtw XLS84Nr2r9S9LGAWDaExVAPBvLRK   ";
const RUST_BASE58_DECODED = Uint8Array.from([
  159, 189, 70, 187, 52, 81, 113, 198, 246, 2, 44, 154, 37, 213, 104, 27, 165, 78, 236, 106, 108, 73, 83, 243, 173, 192, 185, 110, 157, 145, 173, 163,
]);

/** matrix-rust-sdk secret_storage.rs, test `from_account_data_and_base58` (padded base64). */
const RUST_KEY_B58 = "EsTj 3yST y93F SLpB jJsz eAXc 2XzA ygD3 w69H fGaN TKBj jXEd";
const RUST_KEY_B58_DESCRIPTION = {
  algorithm: SECRET_STORAGE_ALGORITHM_V1_AES,
  iv: "xv5b6/p3ExEw++wTyfSHEg==",
  mac: "ujBBbXahnTAMkmPUX2/0+VTfUh63pGyVRuBcDMgmJC8=",
};

/** matrix-rust-sdk secret_storage.rs, test `from_account_data_and_passphrase` (unpadded base64). */
const RUST_PASSPHRASE = "It's a secret to everybody";
const RUST_PASSPHRASE_DESCRIPTION = {
  algorithm: SECRET_STORAGE_ALGORITHM_V1_AES,
  iv: "gH2iNpiETFhApvW6/FFEJQ",
  mac: "9Lw12m5SKDipNghdQXKjgpfdj1/K7HFI2brO+UWAGoM",
  passphrase: { algorithm: "m.pbkdf2", salt: "IuLnH7S85YtZmkkBJKwNUKxWF42g9O1H", iterations: 10 },
};

describe("secret storage: recovery key", () => {
  it("encodes and decodes the known answer of matrix-js-sdk / iOS / Android / Trixnity", () => {
    assert.equal(encodeRecoveryKey(RFC7748_KEY), RFC7748_RECOVERY_KEY);
    assert.deepEqual(decodeRecoveryKey(RFC7748_RECOVERY_KEY), RFC7748_KEY);
    // Whitespace is not significant.
    assert.deepEqual(decodeRecoveryKey(RFC7748_RECOVERY_KEY.replace(/ /g, "")), RFC7748_KEY);
    assert.deepEqual(decodeRecoveryKey(` ${RFC7748_RECOVERY_KEY.replace(" g5c4 ", " g5c4\r\n\t")}   `), RFC7748_KEY);
  });

  it("decodes matrix-rust-sdk's base58 vectors and refuses its bad ones with the same reasons", () => {
    assert.deepEqual(decodeRecoveryKey(RUST_BASE58_KEY), RUST_BASE58_DECODED);
    assert.equal(encodeRecoveryKey(RUST_BASE58_DECODED).replace(/ /g, ""), RUST_BASE58_KEY.replace(/\s/g, ""));
    assert.throws(() => decodeRecoveryKey("EsTpRvZTnjck8YrhRAtwXLS84Nr2r9S9LGAWDaExVAPBvLRk"), isSecretStorageError("bad_recovery_key_parity"));
    assert.throws(() => decodeRecoveryKey("AATpRvZTnjck8YrhRAtwXLS84Nr2r9S9LGAWDaExVAPBvLRk"), isSecretStorageError("bad_recovery_key_prefix"));
    assert.throws(() => decodeRecoveryKey("AATpRvZTnjck8YrhRAtwXLS84Nr2r9S9"), isSecretStorageError("bad_recovery_key_length"));
    assert.throws(() => decodeRecoveryKey("AATpRvZTnjck8YrhRAtwXLS84Nr0OIl"), isSecretStorageError("bad_recovery_key_alphabet"));
  });

  it("refuses Trixnity's bad vectors", () => {
    assert.throws(() => decodeRecoveryKey("FsTc LW2K PGiF wKEA 3As5 g5c4 BXwk qeeJ ZJV8 Q9fu gUMN UE4d"), isSecretStorageError("bad_recovery_key_prefix"));
    assert.throws(() => decodeRecoveryKey("EqTc LW2K PGiF wKEA 3As5 g5c4 BXwk qeeJ ZJV8 Q9fu gUMN UE4d"), isSecretStorageError("bad_recovery_key_prefix"));
    assert.throws(() => decodeRecoveryKey("EsTc LW2K PGiF wKEA 3As5 g5c4 BXwk qeeJ ZJV8 Q9fu gUMN UE4e"), isSecretStorageError("bad_recovery_key_parity"));
    assert.throws(() => decodeRecoveryKey("abc"), isSecretStorageError("bad_recovery_key_length"));
    assert.throws(() => decodeRecoveryKey(""), isSecretStorageError("bad_recovery_key_length"));
    assert.throws(() => decodeRecoveryKey(RFC7748_RECOVERY_KEY + "1"), isSecretStorageError("bad_recovery_key_length"));
  });

  it("generateRecoveryKey: 32 random bytes, spec format, round trip", () => {
    const seen = new Set<string>();
    for (let i = 0; i < 20; i++) {
      const { privateKey, encoded } = generateRecoveryKey();
      assert.equal(privateKey.length, 32);
      assert.match(encoded, /^([1-9A-HJ-NP-Za-km-z]{4} )*[1-9A-HJ-NP-Za-km-z]{1,4}$/);
      assert.equal(encoded.replace(/ /g, "").length, 48, "35 bytes are 48 base58 characters");
      // Within the encodings of 0x8B 0x01 ‖ 00…00 and 0x8B 0x01 ‖ FF…FF (the alphabet is in ASCII order).
      assert.ok(encoded >= encodeRecoveryKey(new Uint8Array(32)) && encoded <= encodeRecoveryKey(new Uint8Array(32).fill(255)), encoded);
      assert.deepEqual(decodeRecoveryKey(encoded), privateKey);
      seen.add(encoded);
    }
    assert.equal(seen.size, 20);
  });

  it("round-trips every 32-byte key, and the decoded bytes follow the spec layout", () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 32, maxLength: 32 }), (key) => {
        const text = encodeRecoveryKey(key);
        assert.ok(BASE58.test(text.replace(/ /g, "")));
        assert.ok(text.split(" ").every((g, i, all) => g.length === 4 || i === all.length - 1));
        assert.deepEqual(decodeRecoveryKey(text), key);
      }),
      { numRuns: 300, examples: [[new Uint8Array(32)], [new Uint8Array(32).fill(255)]] },
    );
  });

  it("a single changed character is detected (or at least never yields the original key)", () => {
    const { privateKey, encoded } = generateRecoveryKey();
    const compact = encoded.replace(/ /g, "");
    const alphabet = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
    for (let i = 0; i < compact.length; i++) {
      const c = alphabet[(alphabet.indexOf(compact[i]!) + 1) % 58]!;
      const typo = compact.slice(0, i) + c + compact.slice(i + 1);
      try {
        assert.notDeepEqual(decodeRecoveryKey(typo), privateKey);
      } catch (e) {
        assert.ok(e instanceof SecretStorageError);
      }
    }
  });

  it("checks its argument", () => {
    assert.throws(() => encodeRecoveryKey(new Uint8Array(31)), isInvalidArgument);
    assert.throws(() => decodeRecoveryKey(5 as unknown as string), isInvalidArgument);
  });
});

describe("secret storage: passphrase", () => {
  it("derives matrix-rust-sdk's passphrase key (PBKDF2-SHA-512 over UTF-8 salt)", async () => {
    const key = await deriveKeyFromPassphrase(RUST_PASSPHRASE, RUST_PASSPHRASE_DESCRIPTION.passphrase.salt, 10);
    assert.equal(key.length, 32);
    assert.equal(checkKey(key, RUST_PASSPHRASE_DESCRIPTION), true);
    const wrong = await deriveKeyFromPassphrase("It's a secret to nobody", RUST_PASSPHRASE_DESCRIPTION.passphrase.salt, 10);
    assert.equal(checkKey(wrong, RUST_PASSPHRASE_DESCRIPTION), false);
    const fewer = await deriveKeyFromPassphrase(RUST_PASSPHRASE, RUST_PASSPHRASE_DESCRIPTION.passphrase.salt, 9);
    assert.equal(checkKey(fewer, RUST_PASSPHRASE_DESCRIPTION), false);
  });

  it("matches WebCrypto's PBKDF2 for other lengths, and checks its arguments", async () => {
    for (const bits of [256, 512, 8]) {
      const ours = await deriveKeyFromPassphrase("pässwörd ☃", "salty", 1000, bits);
      const base = await subtle.importKey("raw", new TextEncoder().encode("pässwörd ☃"), "PBKDF2", false, ["deriveBits"]);
      const ref = new Uint8Array(await subtle.deriveBits({ name: "PBKDF2", hash: "SHA-512", salt: new TextEncoder().encode("salty"), iterations: 1000 }, base, bits));
      assert.deepEqual(ours, ref);
    }
    await assert.rejects(deriveKeyFromPassphrase("p", "s", 0), isInvalidArgument);
    await assert.rejects(deriveKeyFromPassphrase("p", "s", 1.5), isInvalidArgument);
    await assert.rejects(deriveKeyFromPassphrase("p", "s", 1, 12), isInvalidArgument);
    await assert.rejects(deriveKeyFromPassphrase(undefined as unknown as string, "s", 1), isInvalidArgument);
  });
});

describe("secret storage: key description and key check", () => {
  it("accepts matrix-rust-sdk's recovery key description (padded base64)", () => {
    const key = decodeRecoveryKey(RUST_KEY_B58);
    assert.equal(checkKey(key, RUST_KEY_B58_DESCRIPTION), true);
    assert.equal(checkKey(RFC7748_KEY, RUST_KEY_B58_DESCRIPTION), false);
    // the same values unpadded
    assert.equal(checkKey(key, { ...RUST_KEY_B58_DESCRIPTION, iv: RUST_KEY_B58_DESCRIPTION.iv.replace(/=+$/, ""), mac: RUST_KEY_B58_DESCRIPTION.mac.replace(/=+$/, "") }), true);
  });

  it("refuses malformed descriptions as matrix-rust-sdk does (invalid_key_info)", () => {
    const key = decodeRecoveryKey(RUST_KEY_B58);
    assert.equal(checkKey(key, { algorithm: SECRET_STORAGE_ALGORITHM_V1_AES, iv: b64(new Uint8Array(14)), mac: b64(new Uint8Array(32)) }), false);
    assert.equal(checkKey(key, { algorithm: SECRET_STORAGE_ALGORITHM_V1_AES, iv: b64(new Uint8Array(16)), mac: b64(new Uint8Array(10)) }), false);
    assert.equal(checkKey(key, { ...RUST_KEY_B58_DESCRIPTION, algorithm: "m.secret_storage.custom" }), false);
    assert.equal(checkKey(key, { ...RUST_KEY_B58_DESCRIPTION, mac: "not base64!" }), false);
    assert.equal(checkKey(key, { ...RUST_KEY_B58_DESCRIPTION, iv: undefined }), false);
    // Spec: without iv and mac, clients must assume the key is valid (as matrix-rust-sdk does).
    assert.equal(checkKey(key, { algorithm: SECRET_STORAGE_ALGORITHM_V1_AES }), true);
    assert.equal(checkKey(key, null as unknown as Record<string, unknown>), false);
    assert.throws(() => checkKey(new Uint8Array(16), RUST_KEY_B58_DESCRIPTION), isInvalidArgument);
  });

  it("makeKeyDescription: spec fields, unpadded base64, IV bit 63 clear; verified by the WebCrypto reference", async () => {
    const { privateKey } = generateRecoveryKey();
    for (let i = 0; i < 20; i++) {
      const d = makeKeyDescription(privateKey);
      assert.deepEqual(Object.keys(d).sort(), ["algorithm", "iv", "mac"]);
      assert.equal(d.algorithm, SECRET_STORAGE_ALGORITHM_V1_AES);
      assert.doesNotMatch(d.iv!, /=/);
      assert.doesNotMatch(d.mac!, /=/);
      const iv = unb64(d.iv!);
      assert.equal(iv.length, 16);
      assert.equal(iv[8]! & 0x80, 0, "bit 63 of the IV is 0");
      assert.equal(unb64(d.mac!).length, 32);
      assert.equal(checkKey(privateKey, d), true);
      assert.equal(checkKey(generateRecoveryKey().privateKey, d), false);
      // The reference: MAC of 32 zero bytes encrypted under HKDF(key, info "").
      assert.equal((await refEncrypt(new Uint8Array(32), privateKey, "", iv)).mac, d.mac);
    }
    // And a description made by the reference is accepted.
    const iv = randomIv();
    const ref = await refEncrypt(new Uint8Array(32), privateKey, "", iv);
    assert.equal(checkKey(privateKey, { algorithm: SECRET_STORAGE_ALGORITHM_V1_AES, iv: padded(ref.iv), mac: padded(ref.mac) }), true);
  });

  it("makeKeyDescription with a name and a passphrase", async () => {
    const key = await deriveKeyFromPassphrase("correct horse", "SALTSALT", 100);
    const d = makeKeyDescription(key, { name: "m.default", passphrase: { salt: "SALTSALT", iterations: 100 } });
    assert.equal(d.name, "m.default");
    assert.deepEqual(d.passphrase, { algorithm: PASSPHRASE_ALGORITHM_PBKDF2, salt: "SALTSALT", iterations: 100 });
    assert.equal(checkKey(await deriveKeyFromPassphrase("correct horse", d.passphrase!.salt, d.passphrase!.iterations), d), true);
    assert.equal(checkKey(await deriveKeyFromPassphrase("wrong horse", d.passphrase!.salt, d.passphrase!.iterations), d), false);
    const withBits = makeKeyDescription(key, { passphrase: { salt: "s", iterations: 1, bits: 256 } });
    assert.equal(withBits.passphrase!.bits, 256);
    assert.throws(() => makeKeyDescription(key, { passphrase: { salt: "", iterations: 1 } }), isInvalidArgument);
    assert.throws(() => makeKeyDescription(key, { passphrase: { salt: "s", iterations: 0 } }), isInvalidArgument);
    assert.throws(() => makeKeyDescription(new Uint8Array(33)), isInvalidArgument);
  });

  it("newSecretStorageKeyId gives 32 alphanumeric characters", () => {
    const ids = new Set(Array.from({ length: 50 }, () => newSecretStorageKeyId()));
    assert.equal(ids.size, 50);
    for (const id of ids) assert.match(id, /^[A-Za-z0-9]{32}$/);
  });
});

describe("secret storage: encrypted secrets", () => {
  const NAME = "m.cross_signing.master";

  it("round trip; output is unpadded base64 with IV bit 63 clear", () => {
    const { privateKey } = generateRecoveryKey();
    for (const secret of ["", "a", "dwdtCnMYpX08FsFyUbJmRd9ML4frwJkqsXf7pR25LCo", "é ☃ \u{1F600} ".repeat(500)]) {
      const enc = encryptSecret(secret, privateKey, NAME);
      assert.deepEqual(Object.keys(enc).sort(), ["ciphertext", "iv", "mac"]);
      for (const v of Object.values(enc)) assert.doesNotMatch(v, /=/);
      assert.equal(unb64(enc.iv).length, 16);
      assert.equal(unb64(enc.iv)[8]! & 0x80, 0);
      assert.equal(unb64(enc.mac).length, 32);
      assert.equal(unb64(enc.ciphertext).length, Buffer.byteLength(secret, "utf8"));
      assert.equal(decryptSecret(enc, privateKey, NAME), secret);
    }
    const a = encryptSecret("same", privateKey, NAME);
    const b = encryptSecret("same", privateKey, NAME);
    assert.notEqual(a.iv, b.iv, "a fresh IV each time");
  });

  it("agrees with the WebCrypto reference both ways", async () => {
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ minLength: 32, maxLength: 32 }), fc.string({ unit: "grapheme", maxLength: 200 }), fc.string({ maxLength: 40 }), async (key, secret, name) => {
        const ours = encryptSecret(secret, key, name);
        assert.equal(await refDecrypt(ours, key, name), secret);
        const theirs = await refEncrypt(new TextEncoder().encode(secret), key, name, randomIv());
        assert.equal(decryptSecret(theirs, key, name), secret);
        // padded base64 (as some implementations write it) is accepted too
        assert.equal(decryptSecret({ iv: padded(theirs.iv), ciphertext: padded(theirs.ciphertext), mac: padded(theirs.mac) }, key, name), secret);
      }),
      { numRuns: 60 },
    );
  });

  it("a wrong key, a wrong secret name or altered data is a bad MAC", () => {
    const { privateKey } = generateRecoveryKey();
    const enc = encryptSecret("top secret", privateKey, NAME);
    assert.throws(() => decryptSecret(enc, generateRecoveryKey().privateKey, NAME), isSecretStorageError("bad_mac"));
    assert.throws(() => decryptSecret(enc, privateKey, "m.cross_signing.self_signing"), isSecretStorageError("bad_mac"));
    const ct = unb64(enc.ciphertext);
    ct[0]! ^= 1;
    assert.throws(() => decryptSecret({ ...enc, ciphertext: b64(ct) }, privateKey, NAME), isSecretStorageError("bad_mac"));
    const mac = unb64(enc.mac);
    mac[31]! ^= 0x80;
    assert.throws(() => decryptSecret({ ...enc, mac: b64(mac) }, privateKey, NAME), isSecretStorageError("bad_mac"));
    // The MAC covers the ciphertext only: another IV decrypts to garbage, which is not UTF-8 here or differs.
    const iv = unb64(enc.iv);
    iv[0]! ^= 1;
    let out: string | null = null;
    try {
      out = decryptSecret({ ...enc, iv: b64(iv) }, privateKey, NAME);
    } catch (e) {
      assert.ok(isSecretStorageError("bad_format")(e));
    }
    assert.notEqual(out, "top secret");
  });

  it("malformed fields are bad_format", () => {
    const { privateKey } = generateRecoveryKey();
    const enc = encryptSecret("x", privateKey, NAME);
    const bad: [unknown, string][] = [
      [{ ...enc, iv: b64(new Uint8Array(15)) }, "short iv"],
      [{ ...enc, iv: undefined }, "no iv"],
      [{ ...enc, mac: b64(new Uint8Array(31)) }, "short mac"],
      [{ ...enc, mac: "***" }, "mac not base64"],
      [{ ...enc, ciphertext: 5 }, "ciphertext not a string"],
      [{ ...enc, ciphertext: "abcde" }, "impossible base64 length"],
      [{ ...enc, ciphertext: "ab=c" }, "padding in the middle"],
      [null, "null"],
    ];
    for (const [data, what] of bad) {
      assert.throws(() => decryptSecret(data as AesHmacSha2EncryptedData, privateKey, NAME), isSecretStorageError("bad_format"), what);
    }
    assert.throws(() => encryptSecret("x", new Uint8Array(31), NAME), isInvalidArgument);
    assert.throws(() => decryptSecret(enc, new Uint8Array(31), NAME), isInvalidArgument);
  });

  it("the error crosses the worker boundary as InvalidArgumentError with its reason", () => {
    const { privateKey } = generateRecoveryKey();
    let err: unknown;
    try {
      decryptSecret(encryptSecret("x", privateKey, NAME), generateRecoveryKey().privateKey, NAME);
    } catch (e) {
      err = e;
    }
    const back = deserializeError(JSON.parse(JSON.stringify(serializeError(err))) as ReturnType<typeof serializeError>);
    assert.ok(back instanceof InvalidArgumentError);
    assert.equal(back.code, ErrorCode.InvalidArgument);
    assert.equal(back.details.reason, "bad_mac");
    assert.doesNotMatch(JSON.stringify(serializeError(err)), new RegExp(Buffer.from(privateKey).toString("base64").slice(0, 16).replace(/[+/]/g, ".")));
  });

  it("stores a cross-signing seed the way the spec says (base64 of the key, secret name as HKDF info)", async () => {
    const { privateKey } = generateRecoveryKey();
    const seed = webcrypto.getRandomValues(new Uint8Array(32));
    const enc = encryptSecret(b64(seed), privateKey, NAME);
    assert.equal(await refDecrypt(enc, privateKey, NAME), b64(seed));
    assert.deepEqual(unb64(decryptSecret(enc, privateKey, NAME)), seed);
  });
});
