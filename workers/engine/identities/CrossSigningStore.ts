/**
 * Cross-signing state kept in the store's key/value settings: our private seeds (sealed with a
 * key derived from the pickle key), the published identities of users (from `/keys/query`), the
 * master key we pinned for each user on first sight (TOFU), a detected change of it, and the
 * identities we verified.
 * @internal
 */
import { createCipheriv, createDecipheriv, createHash, randomBytes } from "node:crypto";
import { StoreError } from "../../../src/protocol/errors.js";
import type { CrossSigningSeeds } from "./crossSigning.js";
import type { Transaction } from "../Transaction.js";

/** A user's published cross-signing keys, as received. */
export interface StoredIdentity {
  master: Record<string, unknown>;
  selfSigning: Record<string, unknown> | null;
  userSigning: Record<string, unknown> | null;
}

/** A pinned master key and a detected change. */
export interface PinState {
  pinned: string;
  /** The new master key when it differs from the pinned one (a change to report, never silently accepted). */
  changedTo: string | null;
}

const SEEDS = "xsign:seeds";
/** Keys prepared by a bootstrap whose upload the server has not accepted yet (never trusted from here). */
const PENDING_SEEDS = "xsign:pending";
const identityKey = (u: string): string => `xsign:identity:${u}`;
const pinKey = (u: string): string => `xsign:pin:${u}`;
const verifiedKey = (u: string): string => `xsign:verified:${u}`;

function sealKey(pickleKey: string): Buffer {
  return createHash("sha256").update("matrix-e2ee-worker-sdk cross-signing seeds\0").update(pickleKey).digest();
}

/**
 * Store `plain` (a JSON-serializable secret) under the setting `slot`, sealed (AES-256-GCM) with a
 * key derived from the pickle key. Shared by every private key the engine keeps in settings.
 */
export function sealValue(tx: Transaction, slot: string, pickleKey: string, plain: unknown): void {
  const iv = randomBytes(12);
  const c = createCipheriv("aes-256-gcm", sealKey(pickleKey), iv);
  const bytes = Buffer.from(JSON.stringify(plain));
  const ct = Buffer.concat([c.update(bytes), c.final()]);
  bytes.fill(0);
  tx.setValue(slot, JSON.stringify({ iv: iv.toString("base64"), ct: ct.toString("base64"), tag: c.getAuthTag().toString("base64") }));
}

/** The secret {@link sealValue} stored under `slot`, or null; `StoreError` when it cannot be opened (wrong pickle key). */
export function unsealValue(tx: Transaction, slot: string, pickleKey: string, what: string): unknown {
  const v = tx.getValue(slot);
  if (!v) return null;
  try {
    const { iv, ct, tag } = JSON.parse(v) as { iv: string; ct: string; tag: string };
    const d = createDecipheriv("aes-256-gcm", sealKey(pickleKey), Buffer.from(iv, "base64"));
    d.setAuthTag(Buffer.from(tag, "base64"));
    const plain = Buffer.concat([d.update(Buffer.from(ct, "base64")), d.final()]);
    const o: unknown = JSON.parse(plain.toString("utf8"));
    plain.fill(0);
    return o;
  } catch {
    throw new StoreError(`the stored ${what} cannot be opened (wrong pickle key?)`);
  }
}

function seal(tx: Transaction, slot: string, pickleKey: string, seeds: CrossSigningSeeds): void {
  sealValue(tx, slot, pickleKey, { m: Buffer.from(seeds.master).toString("base64"), s: Buffer.from(seeds.selfSigning).toString("base64"), u: Buffer.from(seeds.userSigning).toString("base64") });
}

function unseal(tx: Transaction, slot: string, pickleKey: string): CrossSigningSeeds | null {
  const o = unsealValue(tx, slot, pickleKey, "cross-signing keys") as { m: string; s: string; u: string } | null;
  if (!o) return null;
  return { master: new Uint8Array(Buffer.from(o.m, "base64")), selfSigning: new Uint8Array(Buffer.from(o.s, "base64")), userSigning: new Uint8Array(Buffer.from(o.u, "base64")) };
}

/** Save our three private seeds, sealed (AES-256-GCM) with a key derived from the pickle key. */
export function saveSeeds(tx: Transaction, pickleKey: string, seeds: CrossSigningSeeds): void {
  seal(tx, SEEDS, pickleKey, seeds);
}

/** Our private seeds, or null when this device has none. */
export function loadSeeds(tx: Transaction, pickleKey: string): CrossSigningSeeds | null {
  return unseal(tx, SEEDS, pickleKey);
}

/**
 * Save (sealed like {@link saveSeeds}) the seeds of a bootstrap about to be uploaded, or delete
 * them (`null`). They are not our identity until the server accepted them.
 */
export function savePendingSeeds(tx: Transaction, pickleKey: string, seeds: CrossSigningSeeds | null): void {
  if (seeds) seal(tx, PENDING_SEEDS, pickleKey, seeds);
  else tx.setValue(PENDING_SEEDS, null);
}

/** Whether a bootstrap not yet accepted by the server is pending (without opening it). */
export function hasPendingSeeds(tx: Transaction): boolean {
  return tx.getValue(PENDING_SEEDS) !== null;
}

/** The seeds of a bootstrap not yet accepted by the server, or null. */
export function loadPendingSeeds(tx: Transaction, pickleKey: string): CrossSigningSeeds | null {
  return unseal(tx, PENDING_SEEDS, pickleKey);
}

export function saveIdentity(tx: Transaction, userId: string, id: StoredIdentity): void {
  tx.setValue(identityKey(userId), JSON.stringify(id));
}

export function loadIdentity(tx: Transaction, userId: string): StoredIdentity | null {
  const v = tx.getValue(identityKey(userId));
  return v ? (JSON.parse(v) as StoredIdentity) : null;
}

export function loadPin(tx: Transaction, userId: string): PinState | null {
  const v = tx.getValue(pinKey(userId));
  return v ? (JSON.parse(v) as PinState) : null;
}

export function savePin(tx: Transaction, userId: string, pin: PinState): void {
  tx.setValue(pinKey(userId), JSON.stringify(pin));
}

/** The master key we verified for `userId` (signed with our user-signing key), or null. */
export function loadVerified(tx: Transaction, userId: string): string | null {
  return tx.getValue(verifiedKey(userId));
}

export function saveVerified(tx: Transaction, userId: string, masterKey: string | null): void {
  tx.setValue(verifiedKey(userId), masterKey);
}
