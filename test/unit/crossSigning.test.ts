import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { createPrivateKey, createPublicKey, sign as nodeSign, verify as nodeVerify } from "node:crypto";
import Olm from "@matrix-org/olm";
import * as wasm from "@matrix-org/matrix-sdk-crypto-wasm";
import { canonicalJson, signablePart } from "../../workers/engine/canonicalJson.js";
import {
  checkDeviceChain,
  crossSigningKeysFromSeeds,
  deviceSigningUploadBody,
  generateCrossSigningKeys,
  mergeSignatureUploads,
  parseCrossSigningKey,
  publicKeyFromSeed,
  signDevice,
  signJsonWithSeed,
  signUserMaster,
  verifyJsonSignature,
  type CrossSigningKeyObject,
  type CrossSigningKeySet,
  type DeviceSigner,
} from "../../workers/engine/identities/crossSigning.js";
import { ErrorCode, InvalidArgumentError } from "../../src/protocol/errors.js";

type Json = Record<string, unknown>;
type Sigs = Record<string, Record<string, string>>;

// ---------------------------------------------------------------------------------------------
// independent Ed25519 (OpenSSL through node:crypto), used to check what libolm's PkSigning produced

const SPKI_ED25519 = Buffer.from("302a300506032b6570032100", "hex");
const PKCS8_ED25519 = Buffer.from("302e020100300506032b657004220420", "hex");
const unb64 = (s: string): Buffer => Buffer.from(s, "base64");
const b64 = (b: Uint8Array): string => Buffer.from(b).toString("base64").replace(/=+$/, "");

function nodeVerifyB64(publicKey: string, message: string, signature: string): boolean {
  const key = createPublicKey({ key: Buffer.concat([SPKI_ED25519, unb64(publicKey)]), format: "der", type: "spki" });
  return nodeVerify(null, Buffer.from(message, "utf8"), key, unb64(signature));
}
function nodePrivateKey(seed: Uint8Array): ReturnType<typeof createPrivateKey> {
  return createPrivateKey({ key: Buffer.concat([PKCS8_ED25519, Buffer.from(seed)]), format: "der", type: "pkcs8" });
}
function nodePublicKeyOfSeed(seed: Uint8Array): string {
  const jwk = createPublicKey(nodePrivateKey(seed)).export({ format: "jwk" });
  return b64(Buffer.from(String(jwk.x), "base64url"));
}
/** The signature under `userId` / `keyId`, checked by node:crypto over canonical JSON of the signed part. */
function nodeVerifyJson(obj: Json, userId: string, keyId: string, publicKey: string): boolean {
  const sig = (obj.signatures as Sigs | undefined)?.[userId]?.[`ed25519:${keyId}`];
  return sig !== undefined && nodeVerifyB64(publicKey, canonicalJson(signablePart(obj)), sig);
}
const sigsOf = (obj: Json): Sigs => (obj.signatures ?? {}) as Sigs;
/** Flip one base64 character of a signature (still valid base64, wrong signature). */
const flip = (s: string): string => (s[0] === "A" ? "B" : "A") + s.slice(1);

// ---------------------------------------------------------------------------------------------
// test fixtures: devices are real libolm accounts

interface TestDevice {
  userId: string;
  deviceId: string;
  account: Olm.Account;
  ed25519: string;
  /** Self-signed device keys, as in `/keys/upload` and `/keys/query`. */
  keys: Json;
  signer: DeviceSigner;
}

const accounts: Olm.Account[] = [];
function makeDevice(userId: string, deviceId: string): TestDevice {
  const account = new Olm.Account();
  account.create();
  accounts.push(account);
  const idk = JSON.parse(account.identity_keys()) as { curve25519: string; ed25519: string };
  const unsigned: Json = {
    user_id: userId,
    device_id: deviceId,
    algorithms: ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
    keys: { [`curve25519:${deviceId}`]: idk.curve25519, [`ed25519:${deviceId}`]: idk.ed25519 },
  };
  const keys = { ...unsigned, signatures: { [userId]: { [`ed25519:${deviceId}`]: account.sign(canonicalJson(unsigned)) } } };
  return { userId, deviceId, account, ed25519: idk.ed25519, keys, signer: { deviceId, signWithDevice: (c) => account.sign(c) } };
}

/** A user with cross-signing keys made by the code under test, and one device signed by them. */
interface TestUser {
  userId: string;
  device: TestDevice;
  keys: CrossSigningKeySet;
  /** As `/keys/query` would return them. */
  master: Json;
  selfSigning: Json;
  deviceKeys: Json;
}
function makeUser(userId: string, deviceId = "DEVICE"): TestUser {
  const device = makeDevice(userId, deviceId);
  const keys = generateCrossSigningKeys(Olm, userId, device.signer);
  const upload = signDevice(Olm, device.keys, userId, keys.selfSigning.seed, keys.selfSigning.publicKey);
  const deviceKeys = mergeSignatureUploads({ [userId]: { [deviceId]: device.keys } }, upload)[userId]![deviceId]!;
  return { userId, device, keys, master: keys.master.object, selfSigning: keys.selfSigning.object, deviceKeys };
}
function chainOf(u: TestUser): ReturnType<typeof checkDeviceChain> {
  return checkDeviceChain(Olm, { master: u.master, selfSigning: u.selfSigning, device: u.deviceKeys, userId: u.userId });
}
/** Replace the signature under `userId` / `keyId` of `obj`. */
function withSig(obj: Json, userId: string, keyId: string, sig: string): Json {
  const sigs = structuredClone(sigsOf(obj));
  sigs[userId] = { ...(sigs[userId] ?? {}), [keyId]: sig };
  return { ...obj, signatures: sigs };
}

function isInvalidArgument(e: unknown): boolean {
  assert.ok(e instanceof InvalidArgumentError, `expected InvalidArgumentError, got ${String(e)}`);
  assert.equal(e.code, ErrorCode.InvalidArgument);
  return true;
}

const ALICE = "@alice:example.org";
const BOB = "@bob:example.org";

before(async () => {
  await Olm.init();
});
after(() => {
  for (const a of accounts) a.free();
});

// ---------------------------------------------------------------------------------------------

describe("cross-signing: keys and signed JSON", () => {
  it("PkSigning seeds and signatures are plain Ed25519 (RFC 8032), as node:crypto computes them", () => {
    const keys = generateCrossSigningKeys(Olm, ALICE);
    for (const k of [keys.master, keys.selfSigning, keys.userSigning]) {
      assert.ok(k.seed instanceof Uint8Array);
      assert.equal(k.seed.length, 32);
      assert.match(k.publicKey, /^[A-Za-z0-9+/]{43}$/);
      assert.equal(nodePublicKeyOfSeed(k.seed), k.publicKey);
      assert.equal(publicKeyFromSeed(Olm, k.seed), k.publicKey);
    }
    assert.equal(new Set([keys.master.publicKey, keys.selfSigning.publicKey, keys.userSigning.publicKey]).size, 3);
    // Ed25519 is deterministic: OpenSSL signing the same canonical bytes gives the same signature.
    const obj = { b: "é ☃ \u{1F600}", a: [1, { z: true, y: null }], user_id: ALICE };
    const signed = signJsonWithSeed(Olm, obj, ALICE, keys.master.seed, keys.master.publicKey);
    const nodeSig = nodeSign(null, Buffer.from(canonicalJson(obj), "utf8"), nodePrivateKey(keys.master.seed));
    assert.equal(signed.signatures[ALICE]![`ed25519:${keys.master.publicKey}`], b64(nodeSig));
  });

  it("generateCrossSigningKeys builds the spec's key objects, signed as the spec describes", () => {
    const dev = makeDevice(ALICE, "ALICEDEV");
    const keys = generateCrossSigningKeys(Olm, ALICE, dev.signer);
    const m = keys.master.publicKey;
    const expect = (usage: string, pub: string): Json => ({ user_id: ALICE, usage: [usage], keys: { [`ed25519:${pub}`]: pub } });
    assert.deepEqual(signablePart(keys.master.object), expect("master", m));
    assert.deepEqual(signablePart(keys.selfSigning.object), expect("self_signing", keys.selfSigning.publicKey));
    assert.deepEqual(signablePart(keys.userSigning.object), expect("user_signing", keys.userSigning.publicKey));
    // master: by itself and by the device; SSK and USK: by the master only.
    assert.deepEqual(Object.keys(sigsOf(keys.master.object)[ALICE]!).sort(), [`ed25519:${m}`, "ed25519:ALICEDEV"].sort());
    assert.ok(nodeVerifyJson(keys.master.object, ALICE, m, m));
    assert.ok(nodeVerifyJson(keys.master.object, ALICE, "ALICEDEV", dev.ed25519));
    for (const k of [keys.selfSigning, keys.userSigning]) {
      assert.deepEqual(Object.keys(sigsOf(k.object)), [ALICE]);
      assert.deepEqual(Object.keys(sigsOf(k.object)[ALICE]!), [`ed25519:${m}`]);
      assert.ok(nodeVerifyJson(k.object, ALICE, m, m));
      assert.ok(verifyJsonSignature(Olm, k.object, ALICE, m, m));
    }
    assert.deepEqual(deviceSigningUploadBody(keys), {
      master_key: keys.master.object,
      self_signing_key: keys.selfSigning.object,
      user_signing_key: keys.userSigning.object,
    });
    // Without a device, the master key carries only its self-signature.
    const bare = generateCrossSigningKeys(Olm, ALICE);
    assert.deepEqual(Object.keys(sigsOf(bare.master.object)[ALICE]!), [`ed25519:${bare.master.publicKey}`]);
  });

  it("crossSigningKeysFromSeeds is deterministic and checks its input", () => {
    const keys = generateCrossSigningKeys(Olm, ALICE);
    const seeds = { master: keys.master.seed, selfSigning: keys.selfSigning.seed, userSigning: keys.userSigning.seed };
    assert.deepEqual(crossSigningKeysFromSeeds(Olm, ALICE, seeds), keys);
    assert.throws(() => crossSigningKeysFromSeeds(Olm, ALICE, { ...seeds, master: new Uint8Array(31) }), isInvalidArgument);
    assert.throws(() => crossSigningKeysFromSeeds(Olm, ALICE, { ...seeds, userSigning: seeds.master }), isInvalidArgument);
    assert.throws(() => crossSigningKeysFromSeeds(Olm, "", seeds), isInvalidArgument);
    const collide: DeviceSigner = { deviceId: keys.selfSigning.publicKey, signWithDevice: () => "x" };
    assert.throws(() => crossSigningKeysFromSeeds(Olm, ALICE, seeds, collide), isInvalidArgument);
  });

  it("signJsonWithSeed keeps other signatures and unsigned, and signs neither", () => {
    const { master } = generateCrossSigningKeys(Olm, ALICE);
    const input = { user_id: ALICE, n: 5, unsigned: { age: 1 }, signatures: { [BOB]: { "ed25519:X": "sig" }, [ALICE]: { "ed25519:Y": "y" } } };
    const copy = structuredClone(input);
    const out = signJsonWithSeed(Olm, input, ALICE, master.seed, master.publicKey);
    assert.deepEqual(input, copy, "the input is not modified");
    assert.deepEqual(out.unsigned, { age: 1 });
    assert.equal(out.signatures[BOB]!["ed25519:X"], "sig");
    assert.equal(out.signatures[ALICE]!["ed25519:Y"], "y");
    assert.ok(verifyJsonSignature(Olm, out, ALICE, master.publicKey, master.publicKey));
    assert.ok(nodeVerifyB64(master.publicKey, canonicalJson({ user_id: ALICE, n: 5 }), out.signatures[ALICE]![`ed25519:${master.publicKey}`]!));
    // unsigned and other signatures may change; the signed content may not.
    assert.ok(verifyJsonSignature(Olm, { ...out, unsigned: { other: true } }, ALICE, master.publicKey, master.publicKey));
    assert.ok(verifyJsonSignature(Olm, withSig(out, BOB, "ed25519:Z", "z"), ALICE, master.publicKey, master.publicKey));
    assert.equal(verifyJsonSignature(Olm, { ...out, n: 6 }, ALICE, master.publicKey, master.publicKey), false);
    assert.throws(() => signJsonWithSeed(Olm, { x: 1.5 }, ALICE, master.seed, master.publicKey), isInvalidArgument);
    assert.throws(() => signJsonWithSeed(Olm, { x: 1 }, ALICE, new Uint8Array(16), master.publicKey), isInvalidArgument);
  });

  it("verifyJsonSignature is false, never throwing, for missing, wrong or malformed signatures", () => {
    const { master, selfSigning } = generateCrossSigningKeys(Olm, ALICE);
    const m = master.publicKey;
    const obj = signJsonWithSeed(Olm, { a: 1 }, ALICE, master.seed, m);
    const sig = obj.signatures[ALICE]![`ed25519:${m}`]!;
    assert.ok(verifyJsonSignature(Olm, obj, ALICE, m, m));
    assert.equal(verifyJsonSignature(Olm, obj, BOB, m, m), false, "other user");
    assert.equal(verifyJsonSignature(Olm, obj, ALICE, "other", m), false, "other key ID");
    assert.equal(verifyJsonSignature(Olm, obj, ALICE, m, selfSigning.publicKey), false, "other public key");
    assert.equal(verifyJsonSignature(Olm, withSig(obj, ALICE, `ed25519:${m}`, flip(sig)), ALICE, m, m), false, "flipped");
    assert.equal(verifyJsonSignature(Olm, withSig(obj, ALICE, `ed25519:${m}`, "!!"), ALICE, m, m), false, "not base64");
    assert.equal(verifyJsonSignature(Olm, obj, ALICE, m, "short"), false, "bad public key");
    assert.equal(verifyJsonSignature(Olm, { ...obj, f: 0.5 }, ALICE, m, m), false, "not canonical JSON");
    for (const bad of [null, "x", [], { signatures: "x" }, { signatures: { [ALICE]: "x" } }]) {
      assert.equal(verifyJsonSignature(Olm, bad, ALICE, m, m), false);
    }
  });

  it("parseCrossSigningKey accepts exactly one ed25519 key of the expected user and usage", () => {
    const keys = generateCrossSigningKeys(Olm, ALICE);
    const m = keys.master.publicKey;
    const ok = parseCrossSigningKey(keys.master.object, ALICE, "master");
    assert.deepEqual(ok, { ok: true, publicKey: m, raw: keys.master.object });
    assert.ok(parseCrossSigningKey({ ...keys.master.object, usage: ["master", "other"] }, ALICE, "master").ok);
    const second = keys.selfSigning.publicKey;
    const bad: [unknown, string, "master" | "self_signing" | "user_signing", RegExp][] = [
      [null, ALICE, "master", /not a JSON object/],
      [keys.master.object, BOB, "master", /user_id/],
      [keys.master.object, ALICE, "self_signing", /usage/],
      [{ ...keys.master.object, usage: "master" }, ALICE, "master", /usage/],
      [{ ...keys.master.object, keys: {} }, ALICE, "master", /exactly one key, found 0/],
      [{ ...keys.master.object, keys: { [`ed25519:${m}`]: m, [`ed25519:${second}`]: second } }, ALICE, "master", /exactly one key, found 2/],
      [{ ...keys.master.object, keys: { [`curve25519:${m}`]: m } }, ALICE, "master", /not an ed25519 key/],
      [{ ...keys.master.object, keys: { [`ed25519:${second}`]: m } }, ALICE, "master", /does not match/],
      [{ ...keys.master.object, keys: { "ed25519:abc": "abc" } }, ALICE, "master", /32 bytes/],
      [{ ...keys.master.object, signatures: "x" }, ALICE, "master", /signatures/],
    ];
    for (const [obj, user, usage, reason] of bad) {
      const r = parseCrossSigningKey(obj, user, usage);
      assert.equal(r.ok, false);
      if (!r.ok) assert.match(r.reason, reason);
    }
  });

  it("signDevice returns the /keys/signatures/upload body with only the new signature", () => {
    const dev = makeDevice(ALICE, "ALICEDEV");
    const { selfSigning } = generateCrossSigningKeys(Olm, ALICE);
    const body = signDevice(Olm, { ...dev.keys, unsigned: { device_display_name: "phone" } }, ALICE, selfSigning.seed, selfSigning.publicKey);
    assert.deepEqual(Object.keys(body), [ALICE]);
    assert.deepEqual(Object.keys(body[ALICE]!), ["ALICEDEV"]);
    const signed = body[ALICE]!.ALICEDEV!;
    assert.equal(signed.unsigned, undefined);
    assert.deepEqual(signablePart(signed), signablePart(dev.keys));
    assert.deepEqual(Object.keys(sigsOf(signed)), [ALICE]);
    assert.deepEqual(Object.keys(sigsOf(signed)[ALICE]!), [`ed25519:${selfSigning.publicKey}`]);
    assert.ok(nodeVerifyJson(signed, ALICE, selfSigning.publicKey, selfSigning.publicKey));

    const other = generateCrossSigningKeys(Olm, ALICE).selfSigning;
    assert.throws(() => signDevice(Olm, dev.keys, ALICE, other.seed, selfSigning.publicKey), isInvalidArgument, "seed/public key mismatch");
    assert.throws(() => signDevice(Olm, dev.keys, BOB, selfSigning.seed, selfSigning.publicKey), isInvalidArgument, "another user's device");
    assert.throws(() => signDevice(Olm, { ...dev.keys, keys: {} }, ALICE, selfSigning.seed, selfSigning.publicKey), isInvalidArgument);
    assert.throws(() => signDevice(Olm, "x", ALICE, selfSigning.seed, selfSigning.publicKey), isInvalidArgument);
  });

  it("signUserMaster returns the upload body for another user's master key", () => {
    const bob = makeUser(BOB);
    const { userSigning, master } = generateCrossSigningKeys(Olm, ALICE);
    const body = signUserMaster(Olm, { ...bob.master, unsigned: { x: 1 } }, ALICE, userSigning.seed, userSigning.publicKey);
    const signed = body[BOB]![bob.keys.master.publicKey]!;
    assert.deepEqual(signablePart(signed), signablePart(bob.master));
    assert.equal(signed.unsigned, undefined);
    assert.deepEqual(sigsOf(signed), { [ALICE]: { [`ed25519:${userSigning.publicKey}`]: sigsOf(signed)[ALICE]![`ed25519:${userSigning.publicKey}`]! } });
    assert.ok(nodeVerifyJson(signed, ALICE, userSigning.publicKey, userSigning.publicKey));
    assert.throws(() => signUserMaster(Olm, master, ALICE, userSigning.seed, userSigning.publicKey), isInvalidArgument, "own master");
    assert.throws(() => signUserMaster(Olm, bob.selfSigning, ALICE, userSigning.seed, userSigning.publicKey), isInvalidArgument, "not a master key");
    assert.throws(() => signUserMaster(Olm, bob.master, ALICE, master.seed, userSigning.publicKey), isInvalidArgument, "seed mismatch");
  });

  it("mergeSignatureUploads merges signatures of the same object and refuses different objects", () => {
    const u = makeUser(ALICE, "D1");
    const a = signDevice(Olm, u.device.keys, ALICE, u.keys.selfSigning.seed, u.keys.selfSigning.publicKey);
    const other = generateCrossSigningKeys(Olm, ALICE).selfSigning;
    const b = signDevice(Olm, u.device.keys, ALICE, other.seed, other.publicKey);
    const merged = mergeSignatureUploads(a, b)[ALICE]!.D1!;
    assert.deepEqual(Object.keys(sigsOf(merged)[ALICE]!).sort(), [`ed25519:${u.keys.selfSigning.publicKey}`, `ed25519:${other.publicKey}`].sort());
    const d2 = makeDevice(ALICE, "D1");
    const c = signDevice(Olm, d2.keys, ALICE, other.seed, other.publicKey);
    assert.throws(() => mergeSignatureUploads(a, c), isInvalidArgument);
  });
});

describe("cross-signing: checkDeviceChain", () => {
  it("a chain made by generateCrossSigningKeys + signDevice holds", () => {
    assert.deepEqual(chainOf(makeUser(ALICE)), {
      masterValid: true,
      selfSigningSignedByMaster: true,
      deviceSignedBySelfSigning: true,
      deviceSelfSigned: true,
      masterSignedByDevice: true,
      ownerSigned: true,
    });
    // A master key without any signature is still a valid master key (signatures on it are optional).
    const u = makeUser(ALICE);
    u.master = { ...u.master, signatures: {} };
    const r = chainOf(u);
    assert.equal(r.masterValid, true);
    assert.equal(r.masterSignedByDevice, false);
    assert.equal(r.ownerSigned, true);
  });

  it("a tampered chain is not owner-signed", () => {
    const mallory = generateCrossSigningKeys(Olm, ALICE);
    const cases: [string, (u: TestUser) => void, Partial<ReturnType<typeof checkDeviceChain>>][] = [
      [
        "device signed by another self-signing key, under the real key ID",
        (u) => {
          const fake = signDevice(Olm, u.device.keys, ALICE, mallory.selfSigning.seed, mallory.selfSigning.publicKey)[ALICE]![u.device.deviceId]!;
          u.deviceKeys = withSig(u.deviceKeys, ALICE, `ed25519:${u.keys.selfSigning.publicKey}`, sigsOf(fake)[ALICE]![`ed25519:${mallory.selfSigning.publicKey}`]!);
        },
        { deviceSignedBySelfSigning: false, selfSigningSignedByMaster: true, masterValid: true },
      ],
      [
        "device's self-signing signature altered",
        (u) => {
          const k = `ed25519:${u.keys.selfSigning.publicKey}`;
          u.deviceKeys = withSig(u.deviceKeys, ALICE, k, flip(sigsOf(u.deviceKeys)[ALICE]![k]!));
        },
        { deviceSignedBySelfSigning: false },
      ],
      [
        "device content changed after signing",
        (u) => {
          u.deviceKeys = { ...u.deviceKeys, algorithms: ["m.olm.v1.curve25519-aes-sha2"] };
        },
        { deviceSignedBySelfSigning: false, deviceSelfSigned: false },
      ],
      [
        "self-signing key signed by another master key, under the real key ID",
        (u) => {
          const m = u.keys.master.publicKey;
          const fake = signJsonWithSeed(Olm, signablePart(u.selfSigning), ALICE, mallory.master.seed, m);
          u.selfSigning = fake;
        },
        { selfSigningSignedByMaster: false, deviceSignedBySelfSigning: true, masterValid: true },
      ],
      [
        "self-signing key replaced by another one",
        (u) => {
          u.selfSigning = mallory.selfSigning.object;
        },
        { selfSigningSignedByMaster: false, deviceSignedBySelfSigning: false },
      ],
      [
        "master key replaced by another one",
        (u) => {
          u.master = mallory.master.object;
        },
        { masterValid: true, selfSigningSignedByMaster: false },
      ],
      [
        "master key 'self-signed' by another key",
        (u) => {
          const m = u.keys.master.publicKey;
          const fake = signJsonWithSeed(Olm, signablePart(u.master), ALICE, mallory.master.seed, m);
          u.master = withSig(u.master, ALICE, `ed25519:${m}`, sigsOf(fake)[ALICE]![`ed25519:${m}`]!);
        },
        { masterValid: false, selfSigningSignedByMaster: true, deviceSignedBySelfSigning: true },
      ],
      [
        "master key 'signed by the device' with another key",
        (u) => {
          const fake = signJsonWithSeed(Olm, signablePart(u.master), ALICE, mallory.master.seed, u.device.deviceId);
          u.master = withSig(u.master, ALICE, `ed25519:${u.device.deviceId}`, sigsOf(fake)[ALICE]![`ed25519:${u.device.deviceId}`]!);
        },
        { masterValid: false, masterSignedByDevice: false },
      ],
      [
        "master key of another user",
        (u) => {
          u.master = makeUser(BOB).master;
        },
        { masterValid: false, selfSigningSignedByMaster: false },
      ],
      [
        "device with a bad self-signature",
        (u) => {
          const k = `ed25519:${u.device.deviceId}`;
          u.deviceKeys = withSig(u.deviceKeys, ALICE, k, flip(sigsOf(u.deviceKeys)[ALICE]![k]!));
        },
        { deviceSelfSigned: false, deviceSignedBySelfSigning: true },
      ],
      [
        "device without its self-signature",
        (u) => {
          const sigs = structuredClone(sigsOf(u.deviceKeys));
          delete sigs[ALICE]![`ed25519:${u.device.deviceId}`];
          u.deviceKeys = { ...u.deviceKeys, signatures: sigs };
        },
        { deviceSelfSigned: false },
      ],
      [
        "device of another user",
        (u) => {
          u.deviceKeys = makeUser(BOB).deviceKeys;
        },
        { deviceSelfSigned: false, deviceSignedBySelfSigning: false },
      ],
      [
        "missing self-signing key",
        (u) => {
          u.selfSigning = undefined as unknown as Json;
        },
        { selfSigningSignedByMaster: false, deviceSignedBySelfSigning: false },
      ],
      [
        "missing master key",
        (u) => {
          u.master = undefined as unknown as Json;
        },
        { masterValid: false, selfSigningSignedByMaster: false },
      ],
      [
        "self-signing key offered as the master key",
        (u) => {
          u.master = { ...u.selfSigning };
        },
        { masterValid: false },
      ],
    ];
    for (const [name, tamper, expected] of cases) {
      const u = makeUser(ALICE);
      tamper(u);
      const r = chainOf(u);
      assert.equal(r.ownerSigned, false, name);
      assert.equal(typeof r.reason, "string", name);
      for (const [k, v] of Object.entries(expected)) assert.equal(r[k as keyof typeof r], v, `${name}: ${k}`);
    }
  });

  it("a device whose ID is a cross-signing public key is refused", () => {
    const keys = generateCrossSigningKeys(Olm, ALICE);
    const dev = makeDevice(ALICE, keys.selfSigning.publicKey);
    const signed = mergeSignatureUploads(
      { [ALICE]: { [dev.deviceId]: dev.keys } },
      // signDevice refuses this device, so sign by hand
      { [ALICE]: { [dev.deviceId]: signJsonWithSeed(Olm, signablePart(dev.keys), ALICE, keys.selfSigning.seed, keys.selfSigning.publicKey) } },
    )[ALICE]![dev.deviceId]!;
    const r = checkDeviceChain(Olm, { master: keys.master.object, selfSigning: keys.selfSigning.object, device: signed, userId: ALICE });
    assert.equal(r.ownerSigned, false);
    assert.match(r.reason ?? "", /collides/);
    assert.throws(() => signDevice(Olm, dev.keys, ALICE, keys.selfSigning.seed, keys.selfSigning.publicKey), isInvalidArgument);
  });

  it("never throws on junk", () => {
    for (const junk of [null, 1, "x", [], {}, { user_id: ALICE, device_id: 3 }]) {
      const r = checkDeviceChain(Olm, { master: junk, selfSigning: junk, device: junk, userId: ALICE });
      assert.equal(r.ownerSigned, false);
    }
  });
});

// ---------------------------------------------------------------------------------------------
// cross-implementation: matrix-rust-sdk's crypto crate (matrix-sdk-crypto-wasm)

describe("cross-signing: cross-implementation with matrix-sdk-crypto-wasm", () => {
  let machine: wasm.OlmMachine;
  /** Alice's own device keys (self-signed) as the Rust machine uploads them. */
  let aliceDevice: Json;
  /** What the Rust machine's bootstrapCrossSigning produced. */
  let rustKeys: { master_key: CrossSigningKeyObject; self_signing_key: CrossSigningKeyObject; user_signing_key: CrossSigningKeyObject };
  let rustSignatures: Record<string, Record<string, Json>>;
  let seeds: { master: Uint8Array; selfSigning: Uint8Array; userSigning: Uint8Array };
  const pub = (o: CrossSigningKeyObject): string => Object.values(o.keys)[0]!;

  /** Answer the machine's pending keys query (if any) with `users`' keys, plus Alice's own. */
  async function answerKeysQuery(users: { userId: string; deviceId: string; deviceKeys: Json; master: Json; selfSigning: Json }[]): Promise<void> {
    const device_keys: Record<string, Record<string, Json>> = { [ALICE]: { ALICEDEV: aliceDevice } };
    const master_keys: Record<string, Json> = { [ALICE]: rustKeys.master_key };
    const self_signing_keys: Record<string, Json> = { [ALICE]: rustKeys.self_signing_key };
    for (const u of users) {
      device_keys[u.userId] = { [u.deviceId]: u.deviceKeys };
      master_keys[u.userId] = u.master;
      self_signing_keys[u.userId] = u.selfSigning;
    }
    const body = { device_keys, master_keys, self_signing_keys, user_signing_keys: { [ALICE]: rustKeys.user_signing_key }, failures: {} };
    let answered = 0;
    for (const r of await machine.outgoingRequests()) {
      if (r.type === wasm.RequestType.KeysUpload) {
        await machine.markRequestAsSent(r.id!, r.type, JSON.stringify({ one_time_key_counts: { signed_curve25519: 50 } }));
      } else if (r.type === wasm.RequestType.KeysQuery) {
        await machine.markRequestAsSent(r.id!, r.type, JSON.stringify(body));
        answered++;
      }
    }
    assert.ok(answered > 0, "the machine asked for keys");
  }

  before(async () => {
    await wasm.initAsync();
    machine = await wasm.OlmMachine.initialize(new wasm.UserId(ALICE), new wasm.DeviceId("ALICEDEV"));
    const upload = (await machine.outgoingRequests()).find((r) => r.type === wasm.RequestType.KeysUpload)!;
    aliceDevice = (JSON.parse(upload.body) as { device_keys: Json }).device_keys;
    const boot = await machine.bootstrapCrossSigning(true);
    rustKeys = JSON.parse(boot.uploadSigningKeysRequest.body) as typeof rustKeys;
    rustSignatures = JSON.parse(boot.uploadSignaturesRequest.body) as typeof rustSignatures;
    const exported = (await machine.exportCrossSigningKeys())!;
    seeds = {
      master: unb64(exported.masterKey!),
      selfSigning: unb64(exported.self_signing_key!),
      userSigning: unb64(exported.userSigningKey!),
    };
  });
  after(() => {
    machine.close();
  });

  it("keys made by Rust: same public keys and byte-identical key objects from the same seeds", () => {
    const ours = crossSigningKeysFromSeeds(Olm, ALICE, seeds);
    assert.equal(ours.master.publicKey, pub(rustKeys.master_key));
    assert.equal(ours.selfSigning.publicKey, pub(rustKeys.self_signing_key));
    assert.equal(ours.userSigning.publicKey, pub(rustKeys.user_signing_key));
    assert.deepEqual(ours.selfSigning.object, rustKeys.self_signing_key);
    assert.deepEqual(ours.userSigning.object, rustKeys.user_signing_key);
    // Rust signs its master key with itself and with the device; the self-signature is identical.
    const m = ours.master.publicKey;
    assert.deepEqual(signablePart(ours.master.object), signablePart(rustKeys.master_key));
    assert.equal(sigsOf(ours.master.object)[ALICE]![`ed25519:${m}`], sigsOf(rustKeys.master_key)[ALICE]![`ed25519:${m}`]);
    const deviceKey = (aliceDevice.keys as Record<string, string>)["ed25519:ALICEDEV"]!;
    assert.ok(verifyJsonSignature(Olm, rustKeys.master_key, ALICE, "ALICEDEV", deviceKey));
    assert.ok(verifyJsonSignature(Olm, rustKeys.master_key, ALICE, m, m));
  });

  it("signDevice produces exactly Rust's signature upload for its own device", () => {
    const ours = signDevice(Olm, aliceDevice, ALICE, seeds.selfSigning, pub(rustKeys.self_signing_key));
    assert.deepEqual(ours, rustSignatures);
  });

  it("checkDeviceChain accepts the chain Rust produced", () => {
    const device = mergeSignatureUploads({ [ALICE]: { ALICEDEV: aliceDevice } }, rustSignatures)[ALICE]!.ALICEDEV!;
    assert.deepEqual(checkDeviceChain(Olm, { master: rustKeys.master_key, selfSigning: rustKeys.self_signing_key, device, userId: ALICE }), {
      masterValid: true,
      selfSigningSignedByMaster: true,
      deviceSignedBySelfSigning: true,
      deviceSelfSigned: true,
      masterSignedByDevice: true,
      ownerSigned: true,
    });
    const unsignedDevice = checkDeviceChain(Olm, { master: rustKeys.master_key, selfSigning: rustKeys.self_signing_key, device: aliceDevice, userId: ALICE });
    assert.equal(unsignedDevice.deviceSignedBySelfSigning, false);
    assert.equal(unsignedDevice.ownerSigned, false);
  });

  it("chains made by us get the same verdict from Rust (isCrossSignedByOwner) and from checkDeviceChain", async () => {
    const mallory = generateCrossSigningKeys(Olm, "@mallory:example.org");
    const scenarios: [name: string, userId: string, tamper: (u: TestUser) => void, expected: boolean | "rejected"][] = [
      ["good", "@good:example.org", () => {}, true],
      ["good, master without signatures", "@nosig:example.org", (u) => void (u.master = { ...u.master, signatures: {} }), true],
      [
        "device signed by another self-signing key",
        "@wrongssk:example.org",
        (u) => {
          const other = signJsonWithSeed(Olm, signablePart(u.device.keys), u.userId, mallory.selfSigning.seed, u.keys.selfSigning.publicKey);
          u.deviceKeys = withSig(u.deviceKeys, u.userId, `ed25519:${u.keys.selfSigning.publicKey}`, sigsOf(other)[u.userId]![`ed25519:${u.keys.selfSigning.publicKey}`]!);
        },
        false,
      ],
      [
        "self-signing key signed by another master key",
        "@sskforged:example.org",
        (u) => void (u.selfSigning = signJsonWithSeed(Olm, signablePart(u.selfSigning), u.userId, mallory.master.seed, u.keys.master.publicKey)),
        false,
      ],
      [
        "device's cross-signature altered",
        "@flipped:example.org",
        (u) => {
          const k = `ed25519:${u.keys.selfSigning.publicKey}`;
          u.deviceKeys = withSig(u.deviceKeys, u.userId, k, flip(sigsOf(u.deviceKeys)[u.userId]![k]!));
        },
        false,
      ],
      [
        "device with a bad self-signature",
        "@badself:example.org",
        (u) => {
          const k = `ed25519:${u.device.deviceId}`;
          u.deviceKeys = withSig(u.deviceKeys, u.userId, k, flip(sigsOf(u.deviceKeys)[u.userId]![k]!));
        },
        "rejected",
      ],
    ];
    const users = scenarios.map(([, userId, tamper]) => {
      const u = makeUser(userId, "DEV");
      tamper(u);
      return u;
    });
    await machine.updateTrackedUsers(users.map((u) => new wasm.UserId(u.userId)));
    await answerKeysQuery(users.map((u) => ({ userId: u.userId, deviceId: "DEV", deviceKeys: u.deviceKeys, master: u.master, selfSigning: u.selfSigning })));
    for (const [i, [name, , , expected]] of scenarios.entries()) {
      const u = users[i]!;
      const device = await machine.getDevice(new wasm.UserId(u.userId), new wasm.DeviceId("DEV"));
      const ours = chainOf(u);
      if (expected === "rejected") {
        assert.equal(device, undefined, `${name}: Rust drops the device`);
        assert.equal(ours.deviceSelfSigned, false, name);
      } else {
        assert.ok(device, `${name}: Rust knows the device`);
        assert.equal(device.isCrossSignedByOwner(), expected, `${name}: Rust`);
      }
      assert.equal(ours.ownerSigned, expected === true, `${name}: checkDeviceChain`);
      // (Rust does not check a master key's self-signature; checkDeviceChain does — see the tests above.)
    }
  });

  it("signUserMaster produces exactly Rust's user-signing signature, and Rust then trusts the device", async () => {
    const bob = makeUser(BOB, "BOBDEV");
    await machine.updateTrackedUsers([new wasm.UserId(BOB)]);
    await answerKeysQuery([{ userId: BOB, deviceId: "BOBDEV", deviceKeys: bob.deviceKeys, master: bob.master, selfSigning: bob.selfSigning }]);
    const identity = await machine.getIdentity(new wasm.UserId(BOB));
    assert.ok(identity instanceof wasm.OtherUserIdentity);
    assert.equal(pub(JSON.parse(identity.masterKey) as CrossSigningKeyObject), bob.keys.master.publicKey);
    const initial = await machine.getDevice(new wasm.UserId(BOB), new wasm.DeviceId("BOBDEV"));
    assert.equal(initial!.isCrossSignedByOwner(), true);
    assert.equal(initial!.isCrossSigningTrusted(), false);

    const rustUpload = JSON.parse((await identity.verify()).body) as unknown;
    const ours = signUserMaster(Olm, bob.master, ALICE, seeds.userSigning, pub(rustKeys.user_signing_key));
    assert.deepEqual(ours, rustUpload);

    // The server would now return Bob's master key with Alice's signature: Rust trusts Bob's device.
    const masterWithOurSig = mergeSignatureUploads({ [BOB]: { [bob.keys.master.publicKey]: bob.master } }, ours)[BOB]![bob.keys.master.publicKey]!;
    await machine.receiveSyncChanges("[]", new wasm.DeviceLists([new wasm.UserId(BOB)]), new Map(), new Set());
    await answerKeysQuery([{ userId: BOB, deviceId: "BOBDEV", deviceKeys: bob.deviceKeys, master: masterWithOurSig, selfSigning: bob.selfSigning }]);
    const trusted = await machine.getDevice(new wasm.UserId(BOB), new wasm.DeviceId("BOBDEV"));
    assert.equal(trusted!.isCrossSigningTrusted(), true);
    const id2 = await machine.getIdentity(new wasm.UserId(BOB));
    assert.equal(id2!.isVerified(), true);
  });
});
