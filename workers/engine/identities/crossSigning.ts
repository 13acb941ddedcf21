/**
 * Cross-signing building blocks (Matrix client-server spec, "End-to-end encryption" →
 * "Cross-signing"): key generation, signing and verifying signed JSON with a cross-signing key,
 * parsing the public key objects of `/keys/query` and `/keys/device_signing/upload`, checking a
 * device's signature chain, and building `/keys/signatures/upload` bodies.
 *
 * Pure functions: no network, no store. The initialised Olm module is passed in by the caller.
 * Private keys are 32-byte Ed25519 seeds (what `Olm.PkSigning.init_with_seed` takes, and what the
 * spec's secret storage holds, base64-encoded, under `m.cross_signing.*`).
 *
 * Every signature here is over the canonical JSON of the object without `signatures` and
 * `unsigned` (spec Appendices, "Signing JSON").
 *
 * @internal
 */
import type Olm from "@matrix-org/olm";
import { InvalidArgumentError } from "../../../src/protocol/errors.js";
import { canonicalJson, signablePart } from "../canonicalJson.js";

type OlmModule = typeof Olm;
type Json = Record<string, unknown>;

/** `usage` values of the three cross-signing keys. */
export type CrossSigningUsage = "master" | "self_signing" | "user_signing";

/** `signatures` of a signed JSON object: user ID → key ID (`ed25519:…`) → unpadded base64 signature. */
export type Signatures = Record<string, Record<string, string>>;

/**
 * A cross-signing public key object (spec `CrossSigningKey`), as uploaded to
 * `/keys/device_signing/upload` and returned by `/keys/query` in `master_keys`,
 * `self_signing_keys` and `user_signing_keys`.
 */
export interface CrossSigningKeyObject {
  user_id: string;
  usage: string[];
  /** Exactly one entry: `"ed25519:<public key>": "<public key>"`. */
  keys: Record<string, string>;
  signatures?: Signatures;
  [extra: string]: unknown;
}

/** A cross-signing key pair: the private 32-byte seed and the unpadded base64 Ed25519 public key. */
export interface CrossSigningKeyPair {
  /** The private key (Ed25519 seed). Secret: never log it. */
  seed: Uint8Array;
  /** Unpadded base64 public key; also the key ID, as `ed25519:<publicKey>`. */
  publicKey: string;
}

/** A cross-signing key pair with its signed public key object. */
export interface CrossSigningKey extends CrossSigningKeyPair {
  /** The signed public key object, ready for `/keys/device_signing/upload`. */
  object: CrossSigningKeyObject;
}

/** The three cross-signing keys of a user. */
export interface CrossSigningKeySet {
  master: CrossSigningKey;
  selfSigning: CrossSigningKey;
  userSigning: CrossSigningKey;
}

/** Signs with the current device's Ed25519 key (for example `account.sign`). */
export interface DeviceSigner {
  deviceId: string;
  /** Returns the unpadded base64 Ed25519 signature of `canonical` by the device key. */
  signWithDevice(canonical: string): string;
}

/** Private seeds of the three cross-signing keys (for restoring them, e.g. from secret storage). */
export interface CrossSigningSeeds {
  master: Uint8Array;
  selfSigning: Uint8Array;
  userSigning: Uint8Array;
}

/** Body of `POST /_matrix/client/v3/keys/device_signing/upload` (without `auth`). */
export interface DeviceSigningUploadBody {
  master_key: CrossSigningKeyObject;
  self_signing_key: CrossSigningKeyObject;
  user_signing_key: CrossSigningKeyObject;
}

/**
 * (Part of) the body of `POST /_matrix/client/v3/keys/signatures/upload`:
 * user ID → key ID (device ID, or the public key for a cross-signing key) → the signed object,
 * whose `signatures` hold only the new signatures.
 */
export type SignatureUploadBody = Record<string, Record<string, Json>>;

/** `T` with its `signatures` replaced by a {@link Signatures} map (other properties kept). */
export type WithSignatures<T> = { [K in keyof T as K extends "signatures" ? never : K]: T[K] } & { signatures: Signatures };

/** Outcome of {@link parseCrossSigningKey}. */
export type ParsedCrossSigningKey =
  | { ok: true; publicKey: string; raw: CrossSigningKeyObject }
  | { ok: false; reason: string };

/** Outcome of {@link checkDeviceChain}. */
export interface DeviceChainResult {
  /**
   * The master key object is well-formed for the user (`user_id`, `usage` includes `master`,
   * exactly one Ed25519 key), and every signature on it that can be checked here verifies:
   * a self-signature under its own key ID, and a signature by `device` (when the device's own
   * self-signature holds). A master key "signed" under one of those IDs by any other key is not valid.
   */
  masterValid: boolean;
  /** The master key signed the self-signing key object (which is well-formed for the user). */
  selfSigningSignedByMaster: boolean;
  /** The self-signing key signed the device keys object. */
  deviceSignedBySelfSigning: boolean;
  /** The device keys object is signed by its own `ed25519:<device_id>` key, and is the user's. */
  deviceSelfSigned: boolean;
  /** The device (self-signed) also signed the master key, as the key's creator usually does. */
  masterSignedByDevice: boolean;
  /**
   * The whole chain holds: `masterValid`, `selfSigningSignedByMaster`,
   * `deviceSignedBySelfSigning` and `deviceSelfSigned`. Whether the master key itself is trusted
   * (verified, or pinned) is the caller's decision.
   */
  ownerSigned: boolean;
  /** Why `ownerSigned` is false (the first failed check), when it is. */
  reason?: string;
}

const SEED_LENGTH = 32;
const B64 = /^[A-Za-z0-9+/]*={0,2}$/;

function isObj(v: unknown): v is Json {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function checkSeed(seed: unknown, what: string): Uint8Array {
  if (!(seed instanceof Uint8Array) || seed.length !== SEED_LENGTH) {
    throw new InvalidArgumentError(`${what} must be a ${SEED_LENGTH}-byte Uint8Array`);
  }
  return seed;
}

function checkString(v: unknown, what: string): string {
  if (typeof v !== "string" || v.length === 0) throw new InvalidArgumentError(`${what} must be a non-empty string`);
  return v;
}

/** Canonical JSON of the signed part of `obj`; invalid JSON values become an InvalidArgumentError. */
function signedBytes(obj: Json): string {
  try {
    return canonicalJson(signablePart(obj));
  } catch (err) {
    throw new InvalidArgumentError(`object cannot be signed: ${(err as Error).message}`);
  }
}

/** True if `s` is unpadded (or padded) base64 of exactly 32 bytes. */
function isB64Key32(s: string): boolean {
  if (!B64.test(s)) return false;
  const unpadded = s.replace(/=+$/, "");
  return unpadded.length === 43 && Buffer.from(unpadded, "base64").length === 32;
}

/** Deep copy of a `signatures` value, keeping only well-formed entries. */
function copySignatures(existing: unknown): Signatures {
  const out: Signatures = {};
  if (isObj(existing)) {
    for (const [u, m] of Object.entries(existing)) {
      if (!isObj(m)) continue;
      const inner: Record<string, string> = {};
      for (const [k, s] of Object.entries(m)) if (typeof s === "string") inner[k] = s;
      out[u] = inner;
    }
  }
  return out;
}

/** Copy of `existing` signatures with `sig` added under `userId` / `keyId`. */
function withSignature(existing: unknown, userId: string, keyId: string, sig: string): Signatures {
  const out = copySignatures(existing);
  out[userId] = { ...(out[userId] ?? {}), [keyId]: sig };
  return out;
}

/** The public key (unpadded base64) of an Ed25519 seed. */
export function publicKeyFromSeed(olm: OlmModule, seed: Uint8Array): string {
  checkSeed(seed, "seed");
  const signing = new olm.PkSigning();
  try {
    return signing.init_with_seed(seed);
  } finally {
    signing.free();
  }
}

/** Sign `message` (a string, UTF-8) with the Ed25519 seed; unpadded base64 signature. */
function signWithSeed(olm: OlmModule, seed: Uint8Array, message: string, expectedPublicKey?: string): string {
  checkSeed(seed, "seed");
  const signing = new olm.PkSigning();
  try {
    const pub = signing.init_with_seed(seed);
    if (expectedPublicKey !== undefined && pub !== expectedPublicKey) {
      throw new InvalidArgumentError("the private key does not match the given public key", { publicKey: expectedPublicKey });
    }
    return signing.sign(message);
  } finally {
    signing.free();
  }
}

/**
 * Sign `obj` with the Ed25519 seed, under `signatures[userId]["ed25519:" + keyId]`.
 * Existing signatures are kept; `signatures` and `unsigned` are not part of the signed bytes.
 * Returns a new object (the input is not modified). For cross-signing keys `keyId` is the public key.
 */
export function signJsonWithSeed<T extends Json>(olm: OlmModule, obj: T, userId: string, seed: Uint8Array, keyId: string): WithSignatures<T> {
  if (!isObj(obj)) throw new InvalidArgumentError("only JSON objects can be signed");
  checkString(userId, "userId");
  checkString(keyId, "keyId");
  const sig = signWithSeed(olm, seed, signedBytes(obj));
  return { ...obj, signatures: withSignature(obj.signatures, userId, `ed25519:${keyId}`, sig) };
}

/**
 * Check the signature `signatures[userId]["ed25519:" + keyId]` on `obj` with the Ed25519 public
 * key `publicKey` (unpadded base64). False when missing, malformed or wrong; never throws.
 */
export function verifyJsonSignature(olm: OlmModule, obj: unknown, userId: string, keyId: string, publicKey: string): boolean {
  if (!isObj(obj) || typeof publicKey !== "string") return false;
  const sigs = obj.signatures;
  if (!isObj(sigs)) return false;
  const mine = sigs[userId];
  if (!isObj(mine)) return false;
  const sig = mine[`ed25519:${keyId}`];
  if (typeof sig !== "string") return false;
  let message: string;
  try {
    message = canonicalJson(signablePart(obj));
  } catch {
    return false;
  }
  const utility = new olm.Utility();
  try {
    utility.ed25519_verify(publicKey, message, sig);
    return true;
  } catch {
    return false;
  } finally {
    utility.free();
  }
}

/**
 * Validate a cross-signing public key object: a JSON object whose `user_id` is `expectedUserId`,
 * whose `usage` includes `expectedUsage`, and whose `keys` hold exactly one key, an Ed25519 key
 * listed as `"ed25519:<public key>": "<public key>"` (32 bytes). Signatures are not checked.
 */
export function parseCrossSigningKey(obj: unknown, expectedUserId: string, expectedUsage: CrossSigningUsage): ParsedCrossSigningKey {
  if (!isObj(obj)) return { ok: false, reason: "not a JSON object" };
  if (obj.user_id !== expectedUserId) return { ok: false, reason: `user_id is not ${expectedUserId}` };
  const usage = obj.usage;
  if (!Array.isArray(usage) || !usage.every((u) => typeof u === "string")) return { ok: false, reason: "usage is not a list of strings" };
  if (!usage.includes(expectedUsage)) return { ok: false, reason: `usage does not include ${expectedUsage}` };
  const keys = obj.keys;
  if (!isObj(keys)) return { ok: false, reason: "keys is not an object" };
  const entries = Object.entries(keys);
  if (entries.length !== 1) return { ok: false, reason: `expected exactly one key, found ${entries.length}` };
  const [keyId, publicKey] = entries[0]!;
  if (!keyId.startsWith("ed25519:")) return { ok: false, reason: `key ${keyId} is not an ed25519 key` };
  if (typeof publicKey !== "string" || !isB64Key32(publicKey)) return { ok: false, reason: "the public key is not 32 bytes of base64" };
  if (keyId !== `ed25519:${publicKey}`) return { ok: false, reason: "the key ID does not match the public key" };
  if (obj.signatures !== undefined && !isObj(obj.signatures)) return { ok: false, reason: "signatures is not an object" };
  return { ok: true, publicKey, raw: obj as CrossSigningKeyObject };
}

/** The public key object of a cross-signing key (unsigned). */
function keyObject(userId: string, usage: CrossSigningUsage, publicKey: string): CrossSigningKeyObject {
  return { user_id: userId, usage: [usage], keys: { [`ed25519:${publicKey}`]: publicKey } };
}

/**
 * The cross-signing key objects of existing private keys (for restoring them from secret storage
 * or from a test). The self-signing and user-signing objects are signed by the master key; the
 * master object is signed by the master key itself and, when `device` is given, by the device key
 * (the spec lets devices sign their user's master key; matrix-rust-sdk signs it both ways).
 * Deterministic: Ed25519 signatures depend only on the key and the message.
 */
export function crossSigningKeysFromSeeds(olm: OlmModule, userId: string, seeds: CrossSigningSeeds, device?: DeviceSigner): CrossSigningKeySet {
  checkString(userId, "userId");
  const masterPub = publicKeyFromSeed(olm, checkSeed(seeds.master, "master seed"));
  const sskPub = publicKeyFromSeed(olm, checkSeed(seeds.selfSigning, "self-signing seed"));
  const uskPub = publicKeyFromSeed(olm, checkSeed(seeds.userSigning, "user-signing seed"));
  if (new Set([masterPub, sskPub, uskPub]).size !== 3) throw new InvalidArgumentError("the three cross-signing keys must differ");

  let master: CrossSigningKeyObject = signJsonWithSeed(olm, keyObject(userId, "master", masterPub), userId, seeds.master, masterPub);
  if (device) {
    const deviceId = checkString(device.deviceId, "deviceId");
    if (deviceId === masterPub || deviceId === sskPub || deviceId === uskPub) {
      throw new InvalidArgumentError("the device ID collides with a cross-signing key ID");
    }
    const sig = device.signWithDevice(signedBytes(master));
    checkString(sig, "device signature");
    master = { ...master, signatures: withSignature(master.signatures, userId, `ed25519:${deviceId}`, sig) };
  }
  const selfSigning = signJsonWithSeed(olm, keyObject(userId, "self_signing", sskPub), userId, seeds.master, masterPub);
  const userSigning = signJsonWithSeed(olm, keyObject(userId, "user_signing", uskPub), userId, seeds.master, masterPub);
  return {
    master: { seed: seeds.master, publicKey: masterPub, object: master },
    selfSigning: { seed: seeds.selfSigning, publicKey: sskPub, object: selfSigning },
    userSigning: { seed: seeds.userSigning, publicKey: uskPub, object: userSigning },
  };
}

/**
 * Generate a new cross-signing identity for `userId`: three random Ed25519 key pairs and their
 * signed public key objects (see {@link crossSigningKeysFromSeeds} for who signs what).
 */
export function generateCrossSigningKeys(olm: OlmModule, userId: string, device?: DeviceSigner): CrossSigningKeySet {
  const gen = new olm.PkSigning();
  try {
    return crossSigningKeysFromSeeds(olm, userId, { master: gen.generate_seed(), selfSigning: gen.generate_seed(), userSigning: gen.generate_seed() }, device);
  } finally {
    gen.free();
  }
}

/** The body of `/keys/device_signing/upload` for a key set (the caller adds `auth`). */
export function deviceSigningUploadBody(keys: CrossSigningKeySet): DeviceSigningUploadBody {
  return { master_key: keys.master.object, self_signing_key: keys.selfSigning.object, user_signing_key: keys.userSigning.object };
}

/**
 * Check the chain master key → self-signing key → device of `userId`, with the objects from
 * `/keys/query` (`master_keys[userId]`, `self_signing_keys[userId]`, `device_keys[userId][deviceId]`).
 * Never throws; missing or malformed inputs give false flags and a `reason`.
 */
export function checkDeviceChain(
  olm: OlmModule,
  input: { master: unknown; selfSigning: unknown; device: unknown; userId: string },
): DeviceChainResult {
  const { userId } = input;
  const res: DeviceChainResult = {
    masterValid: false,
    selfSigningSignedByMaster: false,
    deviceSignedBySelfSigning: false,
    deviceSelfSigned: false,
    masterSignedByDevice: false,
    ownerSigned: false,
  };
  const fail = (reason: string): DeviceChainResult => {
    res.reason ??= reason;
    return res;
  };

  const master = parseCrossSigningKey(input.master, userId, "master");
  const ssk = parseCrossSigningKey(input.selfSigning, userId, "self_signing");

  // The device: the user's, with an ed25519:<device_id> key that signed the object.
  const device = input.device;
  let deviceId: string | null = null;
  let deviceKey: string | null = null;
  if (!isObj(device)) fail("the device keys are not a JSON object");
  else if (device.user_id !== userId) fail(`the device's user_id is not ${userId}`);
  else if (typeof device.device_id !== "string" || device.device_id === "") fail("the device has no device_id");
  else if ((master.ok && master.publicKey === device.device_id) || (ssk.ok && ssk.publicKey === device.device_id)) {
    // Device IDs and cross-signing key IDs share the key ID namespace: refuse a colliding device.
    return fail("the device ID collides with a cross-signing key ID");
  } else {
    deviceId = device.device_id;
    const keys = device.keys;
    const k = isObj(keys) ? keys[`ed25519:${deviceId}`] : undefined;
    if (typeof k !== "string") fail("the device has no ed25519 key");
    else {
      deviceKey = k;
      res.deviceSelfSigned = verifyJsonSignature(olm, device, userId, deviceId, deviceKey);
      if (!res.deviceSelfSigned) fail("the device's self-signature is missing or invalid");
    }
  }

  if (!master.ok) fail(`master key: ${master.reason}`);
  else {
    const sigs = isObj(master.raw.signatures) ? master.raw.signatures[userId] : undefined;
    const own = isObj(sigs) && `ed25519:${master.publicKey}` in sigs;
    const ownOk = !own || verifyJsonSignature(olm, master.raw, userId, master.publicKey, master.publicKey);
    const byDevice = deviceId !== null && isObj(sigs) && `ed25519:${deviceId}` in sigs;
    let deviceOk = true;
    if (byDevice && res.deviceSelfSigned && deviceKey !== null && deviceId !== null) {
      deviceOk = verifyJsonSignature(olm, master.raw, userId, deviceId, deviceKey);
      res.masterSignedByDevice = deviceOk;
    }
    res.masterValid = ownOk && deviceOk;
    if (!ownOk) fail("the master key's self-signature is invalid");
    else if (!deviceOk) fail("the master key's signature by the device is invalid");
  }

  if (!ssk.ok) fail(`self-signing key: ${ssk.reason}`);
  else {
    if (master.ok) {
      res.selfSigningSignedByMaster = verifyJsonSignature(olm, ssk.raw, userId, master.publicKey, master.publicKey);
      if (!res.selfSigningSignedByMaster) fail("the self-signing key is not signed by the master key");
    }
    if (deviceId !== null && isObj(device)) {
      res.deviceSignedBySelfSigning = verifyJsonSignature(olm, device, userId, ssk.publicKey, ssk.publicKey);
      if (!res.deviceSignedBySelfSigning) fail("the device is not signed by the self-signing key");
    }
  }

  res.ownerSigned = res.masterValid && res.selfSigningSignedByMaster && res.deviceSignedBySelfSigning && res.deviceSelfSigned;
  if (res.ownerSigned) delete res.reason;
  return res;
}

/**
 * Sign one of our own devices with our self-signing key. Returns the `/keys/signatures/upload`
 * body `{ [userId]: { [deviceId]: deviceKeys } }` where the device keys object (without
 * `unsigned`) carries only the new signature, as the spec's upload format requires.
 */
export function signDevice(olm: OlmModule, deviceKeysObj: unknown, userId: string, selfSigningSeed: Uint8Array, selfSigningPub: string): SignatureUploadBody {
  checkString(userId, "userId");
  checkString(selfSigningPub, "selfSigningPub");
  if (!isObj(deviceKeysObj)) throw new InvalidArgumentError("the device keys must be a JSON object");
  if (deviceKeysObj.user_id !== userId) throw new InvalidArgumentError("a self-signing key only signs its own user's devices", { userId });
  const deviceId = deviceKeysObj.device_id;
  if (typeof deviceId !== "string" || deviceId === "") throw new InvalidArgumentError("the device keys have no device_id");
  const keys = deviceKeysObj.keys;
  if (!isObj(keys) || typeof keys[`ed25519:${deviceId}`] !== "string") throw new InvalidArgumentError("the device keys have no ed25519 key", { deviceId });
  if (deviceId === selfSigningPub) throw new InvalidArgumentError("the device ID collides with a cross-signing key ID", { deviceId });
  const signable = signablePart(deviceKeysObj);
  const sig = signWithSeed(olm, selfSigningSeed, signedBytes(signable), selfSigningPub);
  return { [userId]: { [deviceId]: { ...signable, signatures: { [userId]: { [`ed25519:${selfSigningPub}`]: sig } } } } };
}

/**
 * Sign another user's master key with our user-signing key. Returns the `/keys/signatures/upload`
 * body `{ [theirUserId]: { [theirMasterPublicKey]: masterKey } }` where the master key object
 * (without `unsigned`) carries only the new signature.
 */
export function signUserMaster(olm: OlmModule, otherMasterKeyObj: unknown, ourUserId: string, userSigningSeed: Uint8Array, userSigningPub: string): SignatureUploadBody {
  checkString(ourUserId, "ourUserId");
  checkString(userSigningPub, "userSigningPub");
  const theirUserId = isObj(otherMasterKeyObj) ? otherMasterKeyObj.user_id : undefined;
  if (typeof theirUserId !== "string" || theirUserId === "") throw new InvalidArgumentError("the master key has no user_id");
  if (theirUserId === ourUserId) throw new InvalidArgumentError("the user-signing key signs other users' master keys, not our own");
  const parsed = parseCrossSigningKey(otherMasterKeyObj, theirUserId, "master");
  if (!parsed.ok) throw new InvalidArgumentError(`invalid master key: ${parsed.reason}`, { userId: theirUserId });
  const signable = signablePart(parsed.raw);
  const sig = signWithSeed(olm, userSigningSeed, signedBytes(signable), userSigningPub);
  return { [theirUserId]: { [parsed.publicKey]: { ...signable, signatures: { [ourUserId]: { [`ed25519:${userSigningPub}`]: sig } } } } };
}

/**
 * Merge `/keys/signatures/upload` bodies into one. When two bodies carry the same object, their
 * signatures are merged (the objects themselves must be the same key).
 */
export function mergeSignatureUploads(...bodies: SignatureUploadBody[]): SignatureUploadBody {
  const out: SignatureUploadBody = {};
  for (const body of bodies) {
    for (const [userId, byKey] of Object.entries(body)) {
      const target = (out[userId] ??= {});
      for (const [keyId, obj] of Object.entries(byKey)) {
        const prev = target[keyId];
        if (prev === undefined) {
          target[keyId] = obj;
          continue;
        }
        if (canonicalJson(signablePart(prev)) !== canonicalJson(signablePart(obj))) {
          throw new InvalidArgumentError("two different objects for the same key", { userId, keyId });
        }
        const sigs = copySignatures(prev.signatures);
        for (const [u, m] of Object.entries(copySignatures(obj.signatures))) sigs[u] = { ...(sigs[u] ?? {}), ...m };
        target[keyId] = { ...prev, signatures: sigs };
      }
    }
  }
  return out;
}
