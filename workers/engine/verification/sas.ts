/**
 * The cryptography of SAS verification (`m.sas.v1`, spec: client-server API, "Short Authentication
 * String (SAS) verification"): the commitment, the HKDF info strings, the emoji and decimal
 * strings, and the MACs of keys. The ephemeral curve25519 key and HKDF/HMAC are libolm's `SAS`.
 * @internal
 */
import type Olm from "@matrix-org/olm";
import type { SasEmoji } from "../../../src/protocol/verification.js";
import { canonicalJson } from "../canonicalJson.js";

/** Key agreement protocols we offer/accept, best first. */
export const KEY_AGREEMENT_PROTOCOLS = ["curve25519-hkdf-sha256"] as const;
/** Hashes we offer/accept. */
export const HASHES = ["sha256"] as const;
/** MAC methods we offer/accept, best first (`hkdf-hmac-sha256` only for old peers). */
export const MAC_METHODS = ["hkdf-hmac-sha256.v2", "hkdf-hmac-sha256"] as const;
/** Short authentication string methods. */
export const SAS_METHODS = ["decimal", "emoji"] as const;

/** A MAC method we implement. */
export type MacMethod = (typeof MAC_METHODS)[number];
/** A short authentication string kind. */
export type SasMethod = (typeof SAS_METHODS)[number];

/**
 * The spec's 64 SAS emoji with their English descriptions (data-definitions/sas-emoji.json of
 * the Matrix specification), indexed by number.
 */
export const SAS_EMOJI: readonly (readonly [string, string])[] = [
  ["🐶", "Dog"], ["🐱", "Cat"], ["🦁", "Lion"], ["🐎", "Horse"], ["🦄", "Unicorn"], ["🐷", "Pig"], ["🐘", "Elephant"], ["🐰", "Rabbit"],
  ["🐼", "Panda"], ["🐓", "Rooster"], ["🐧", "Penguin"], ["🐢", "Turtle"], ["🐟", "Fish"], ["🐙", "Octopus"], ["🦋", "Butterfly"], ["🌷", "Flower"],
  ["🌳", "Tree"], ["🌵", "Cactus"], ["🍄", "Mushroom"], ["🌏", "Globe"], ["🌙", "Moon"], ["☁️", "Cloud"], ["🔥", "Fire"], ["🍌", "Banana"],
  ["🍎", "Apple"], ["🍓", "Strawberry"], ["🌽", "Corn"], ["🍕", "Pizza"], ["🎂", "Cake"], ["❤️", "Heart"], ["😀", "Smiley"], ["🤖", "Robot"],
  ["🎩", "Hat"], ["👓", "Glasses"], ["🔧", "Spanner"], ["🎅", "Santa"], ["👍", "Thumbs Up"], ["☂️", "Umbrella"], ["⌛", "Hourglass"], ["⏰", "Clock"],
  ["🎁", "Gift"], ["💡", "Light Bulb"], ["📕", "Book"], ["✏️", "Pencil"], ["📎", "Paperclip"], ["✂️", "Scissors"], ["🔒", "Lock"], ["🔑", "Key"],
  ["🔨", "Hammer"], ["☎️", "Telephone"], ["🏁", "Flag"], ["🚂", "Train"], ["🚲", "Bicycle"], ["✈️", "Aeroplane"], ["🚀", "Rocket"], ["🏆", "Trophy"],
  ["⚽", "Ball"], ["🎸", "Guitar"], ["🎺", "Trumpet"], ["🔔", "Bell"], ["⚓", "Anchor"], ["🎧", "Headphones"], ["📁", "Folder"], ["📌", "Pin"],
];


/** The 7 emoji of the first 42 bits of 6 HKDF bytes (spec: "SAS method: emoji"). */
export function emojiFromBytes(b: Uint8Array): SasEmoji[] {
  if (b.length < 6) throw new RangeError("emoji SAS needs 6 bytes");
  let bits = 0n;
  for (let i = 0; i < 6; i++) bits = (bits << 8n) | BigInt(b[i]!);
  const out: SasEmoji[] = [];
  for (let i = 0; i < 7; i++) {
    const n = Number((bits >> BigInt(48 - 6 * (i + 1))) & 63n);
    const [symbol, name] = SAS_EMOJI[n]!;
    out.push({ symbol, name });
  }
  return out;
}

/** The 3 numbers (1000–9191) of 5 HKDF bytes (spec: "SAS method: decimal"). */
export function decimalFromBytes(b: Uint8Array): [number, number, number] {
  if (b.length < 5) throw new RangeError("decimal SAS needs 5 bytes");
  const [b0, b1, b2, b3, b4] = [b[0]!, b[1]!, b[2]!, b[3]!, b[4]!];
  return [((b0 << 5) | (b1 >> 3)) + 1000, (((b1 & 0x7) << 10) | (b2 << 2) | (b3 >> 6)) + 1000, (((b3 & 0x3f) << 7) | (b4 >> 1)) + 1000];
}

/** The commitment an accepting device sends: sha256 of its public key + canonical JSON of the start content (unpadded base64). */
export function commitment(utility: Olm.Utility, publicKey: string, startContent: Record<string, unknown>): string {
  return utility.sha256(publicKey + canonicalJson(startContent));
}

/** Who sent `m.key.verification.start` and who accepted, with their ephemeral keys. */
export interface SasParties {
  starter: { userId: string; deviceId: string; key: string };
  accepter: { userId: string; deviceId: string; key: string };
  flowId: string;
}

/** The HKDF info of the short authentication string (`curve25519-hkdf-sha256`). */
export function sasInfo(p: SasParties): string {
  const { starter: s, accepter: a } = p;
  return `MATRIX_KEY_VERIFICATION_SAS|${s.userId}|${s.deviceId}|${s.key}|${a.userId}|${a.deviceId}|${a.key}|${p.flowId}`;
}

/** The HKDF info of one MAC: the MAC-ed key's owner and sending device, the receiver, the flow, the key ID. */
export function macInfo(sender: { userId: string; deviceId: string }, receiver: { userId: string; deviceId: string }, flowId: string, keyId: string): string {
  return `MATRIX_KEY_VERIFICATION_MAC${sender.userId}${sender.deviceId}${receiver.userId}${receiver.deviceId}${flowId}${keyId}`;
}

/** A MAC with the agreed method. */
export function calculateMac(sas: Olm.SAS, method: MacMethod, input: string, info: string): string {
  return method === "hkdf-hmac-sha256.v2" ? sas.calculate_mac_fixed_base64(input, info) : sas.calculate_mac(input, info);
}

/**
 * The `mac` and `keys` fields of our `m.key.verification.mac`: one MAC per key we want verified
 * (key ID → public key) and the MAC of their sorted, comma-separated key IDs.
 */
export function macContent(sas: Olm.SAS, method: MacMethod, me: { userId: string; deviceId: string }, them: { userId: string; deviceId: string }, flowId: string, keys: Record<string, string>): { mac: Record<string, string>; keys: string } {
  const mac: Record<string, string> = {};
  for (const [keyId, key] of Object.entries(keys)) mac[keyId] = calculateMac(sas, method, key, macInfo(me, them, flowId, keyId));
  const ids = Object.keys(keys).sort().join(",");
  return { mac, keys: calculateMac(sas, method, ids, macInfo(me, them, flowId, "KEY_IDS")) };
}
