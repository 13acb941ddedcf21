/**
 * The one place where a decrypted room event's verification label is decided: from the session's
 * provenance (bound when the key was received) and the current trust of the device it came from.
 * Nothing else in the SDK may label an event `own` or `verified`.
 * @internal
 */
import { DecryptionFailureCode, VerificationStatus, type VerificationStatusValue } from "../../../src/protocol/api.js";
import type { DeviceRecord, InboundGroupSessionRecord, SenderData } from "../../../src/protocol/store.js";

/**
 * A session's provenance as the label function sees it: the stored {@link SenderData}, or for
 * sessions stored before schema 4 (no record), what their `source` allows:
 * `legacy_olm` is a `room_key` session whose Olm sender was not recorded.
 * @internal
 */
export type Provenance = SenderData | { kind: "legacy_olm"; curve25519: string; ed25519: string };

/** The provenance of a stored session (its record, or the legacy derivation from `source`). @internal */
export function provenanceOf(rec: InboundGroupSessionRecord): Provenance {
  if (rec.senderData) return rec.senderData;
  switch (rec.source) {
    case "own":
      return { kind: "own" };
    case "room_key":
      return { kind: "legacy_olm", curve25519: rec.senderKey, ed25519: rec.claimedEd25519 };
    case "forwarded":
      return { kind: "forwarded", userId: "", deviceId: null, curve25519: rec.forwardingChain[rec.forwardingChain.length - 1] ?? "" };
    case "imported":
      return { kind: "imported" };
  }
}

/** A device and what cross-signing says of it. @internal */
export interface DeviceWithTrust {
  device: DeviceRecord;
  /** Signed by its owner's self-signing key under the owner's master key. */
  crossSigned: boolean;
  /** …and we trust that master key. */
  crossSigningVerified: boolean;
}

/** What the label decision looks at. @internal */
export interface SenderTrustInput {
  provenance: Provenance;
  /** The event's `sender` (claimed by the homeserver, not authenticated by Megolm). */
  eventSender: string;
  /** The event content's `device_id`, when present (claimed by the sender). */
  claimedDeviceId: string | null;
  /** Our own user and device. */
  own: { userId: string; deviceId: string };
  /** The device of `userId` that owns `curve25519` now, with its trust (looked up by user AND key). */
  lookupDevice: (userId: string, curve25519: string) => DeviceWithTrust | null;
}

/** The label of an event, or the reason it is refused. @internal */
export type SenderTrustResult =
  | { ok: true; verification: VerificationStatusValue; senderDeviceId: string | null; crossSigned: boolean }
  | { ok: false; code: typeof DecryptionFailureCode.SenderMismatch; message: string };

const mismatch = (message: string): SenderTrustResult => ({ ok: false, code: DecryptionFailureCode.SenderMismatch, message });

/**
 * Decide the verification label of an event decrypted with a session of the given provenance.
 *
 * | provenance | condition | result |
 * |---|---|---|
 * | `own` | event sender is not our user | `sender_mismatch` |
 * | `own` | otherwise | `own`, our device ID |
 * | `forwarded` | the event sender is not the user the key was requested for (`claimedSender`) | `sender_mismatch` |
 * | `forwarded`, `imported`, `backup` | otherwise (whatever keys the session claims, even ours) | `unauthenticated`, device ID as claimed |
 * | `olm` | event sender differs from the Olm sender bound at receipt | `sender_mismatch` |
 * | `olm`, `legacy_olm` | the sender has no known device with the session's curve25519 key | `unknown_device`, no device ID |
 * | `olm`, `legacy_olm` | that device's ed25519 key differs from the key the session claims | `sender_mismatch` (possible forgery) |
 * | `olm`, `legacy_olm` | the event's `device_id` names another device | `sender_mismatch` |
 * | `olm`, `legacy_olm` | the device is verified locally, or cross-signed by an identity we trust | `verified` |
 * | `olm`, `legacy_olm` | otherwise | `unverified` |
 *
 * `legacy_olm` (sessions stored before the sender was recorded) looks the device up among the
 * event sender's devices; `olm` among the devices of the Olm sender bound at receipt. Device
 * trust is current (a device verified later upgrades old events; a blacklisted one does not
 * downgrade the label: blacklisting governs sending).
 *
 * The room and the sender key a session claims are checked before this, for every provenance
 * (the session is looked up by room, sender key and session ID, and its record must match the
 * event's room and `sender_key`). That is all an imported or backed-up session claims: a key file
 * names no sender user, so such sessions are bound to their room and creator key only.
 */
export function senderTrust(input: SenderTrustInput): SenderTrustResult {
  const p = input.provenance;
  switch (p.kind) {
    case "own":
      if (input.eventSender !== input.own.userId) return mismatch("event from another user uses our own session");
      return { ok: true, verification: VerificationStatus.Own, senderDeviceId: input.own.deviceId, crossSigned: false };
    case "forwarded":
      if (p.claimedSender !== undefined && input.eventSender !== p.claimedSender) return mismatch(`the forwarded key was requested for events of ${p.claimedSender}, the event claims ${input.eventSender}`);
      return { ok: true, verification: VerificationStatus.Unauthenticated, senderDeviceId: input.claimedDeviceId, crossSigned: false };
    case "imported":
    case "backup":
      return { ok: true, verification: VerificationStatus.Unauthenticated, senderDeviceId: input.claimedDeviceId, crossSigned: false };
    case "olm":
    case "legacy_olm": {
      if (p.kind === "olm" && input.eventSender !== p.userId) return mismatch(`the room key came over Olm from ${p.userId}, the event claims ${input.eventSender}`);
      const found = input.lookupDevice(p.kind === "olm" ? p.userId : input.eventSender, p.curve25519);
      if (!found) return { ok: true, verification: VerificationStatus.UnknownDevice, senderDeviceId: null, crossSigned: false };
      const { device } = found;
      if (device.ed25519 !== p.ed25519) return mismatch("the session's claimed ed25519 key differs from the device's key (possible forgery)");
      if (input.claimedDeviceId !== null && input.claimedDeviceId !== device.deviceId) return mismatch("device_id differs from the device owning sender_key");
      const verified = device.verified || found.crossSigningVerified;
      return { ok: true, verification: verified ? VerificationStatus.Verified : VerificationStatus.Unverified, senderDeviceId: device.deviceId, crossSigned: found.crossSigned };
    }
  }
}
