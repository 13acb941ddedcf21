/**
 * The provenance table of `senderTrust` (workers/engine/trust/senderTrust.ts): one test per row.
 * Pure function, fake device records; the engine-level consequences are in
 * test/engine/provenance.test.ts.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { provenanceOf, senderTrust, type DeviceWithTrust, type Provenance, type SenderTrustInput } from "../../../workers/engine/trust/senderTrust.js";
import type { DeviceRecord, InboundGroupSessionRecord } from "../../../src/protocol/store.js";

const ME = { userId: "@me:x", deviceId: "MYDEV" };
const ALICE = "@alice:x";
const CURVE = "aliceCurve";
const ED = "aliceEd";

function device(over: Partial<DeviceRecord> = {}): DeviceRecord {
  return { userId: ALICE, deviceId: "ADEV", ed25519: ED, curve25519: CURVE, algorithms: [], verified: false, blacklisted: false, ignored: false, deleted: false, keysJson: "{}", firstSeenTs: 0, ...over };
}

/** A directory holding `devices`, answering by user AND key. */
function lookupIn(devices: DeviceWithTrust[]): SenderTrustInput["lookupDevice"] {
  return (userId, curve) => devices.find((d) => d.device.userId === userId && d.device.curve25519 === curve) ?? null;
}

const olm: Provenance = { kind: "olm", userId: ALICE, deviceId: "ADEV", curve25519: CURVE, ed25519: ED };

function decide(provenance: Provenance, over: Partial<SenderTrustInput> = {}) {
  return senderTrust({ provenance, eventSender: ALICE, claimedDeviceId: null, own: ME, lookupDevice: lookupIn([{ device: device(), crossSigned: false, crossSigningVerified: false }]), ...over });
}

describe("senderTrust: the label of a decrypted event, one test per row of its table", () => {
  it("own session, event from another user: sender_mismatch", () => {
    const r = decide({ kind: "own" }, { eventSender: ALICE });
    assert.equal(r.ok, false);
    assert.equal(!r.ok && r.code, "sender_mismatch");
  });

  it("own session, event from our user: own, with our device ID", () => {
    assert.deepEqual(decide({ kind: "own" }, { eventSender: ME.userId }), { ok: true, verification: "own", senderDeviceId: "MYDEV", crossSigned: false });
  });

  it("forwarded session, event sender is not the user the key was requested for: sender_mismatch", () => {
    const r = decide({ kind: "forwarded", userId: ME.userId, deviceId: "OTHER", curve25519: "fwd", claimedSender: ALICE }, { eventSender: "@mallory:x" });
    assert.equal(r.ok, false);
    assert.equal(!r.ok && r.code, "sender_mismatch");
  });

  it("forwarded, imported and backup sessions: unauthenticated, whatever keys they claim (ours included)", () => {
    const forwarded = [{ kind: "forwarded", userId: ME.userId, deviceId: "OTHER", curve25519: "fwd" }, { kind: "forwarded", userId: ME.userId, deviceId: "OTHER", curve25519: "fwd", claimedSender: ME.userId }];
    for (const p of [...forwarded, { kind: "imported" }, { kind: "backup", version: "1" }] as Provenance[]) {
      // A verified device owning the claimed key changes nothing: the creator is only claimed.
      const r = decide(p, { eventSender: ME.userId, claimedDeviceId: "MYDEV", lookupDevice: lookupIn([{ device: device({ userId: ME.userId, verified: true }), crossSigned: true, crossSigningVerified: true }]) });
      assert.deepEqual(r, { ok: true, verification: "unauthenticated", senderDeviceId: "MYDEV", crossSigned: false }, p.kind);
    }
  });

  it("olm session, event sender differs from the Olm sender bound at receipt: sender_mismatch (even with no device known)", () => {
    const r = decide(olm, { eventSender: "@mallory:x", lookupDevice: () => null });
    assert.equal(!r.ok && r.code, "sender_mismatch");
  });

  it("olm session, the sender has no known device with the session's key: unknown_device, no device ID", () => {
    // Another user's device with the same curve25519 key is not the sender's device.
    const r = decide(olm, { claimedDeviceId: "ADEV", lookupDevice: lookupIn([{ device: device({ userId: "@mallory:x", deviceId: "M" }), crossSigned: false, crossSigningVerified: false }]) });
    assert.deepEqual(r, { ok: true, verification: "unknown_device", senderDeviceId: null, crossSigned: false });
  });

  it("olm session, the device's ed25519 key differs from the session's claimed key: sender_mismatch", () => {
    const r = decide(olm, { lookupDevice: lookupIn([{ device: device({ ed25519: "otherEd", verified: true }), crossSigned: false, crossSigningVerified: false }]) });
    assert.equal(!r.ok && r.code, "sender_mismatch");
  });

  it("olm session, the event's device_id names another device: sender_mismatch", () => {
    const r = decide(olm, { claimedDeviceId: "NOT-ADEV" });
    assert.equal(!r.ok && r.code, "sender_mismatch");
  });

  it("olm session, device verified locally or cross-signed by a trusted identity: verified", () => {
    const local = decide(olm, { lookupDevice: lookupIn([{ device: device({ verified: true }), crossSigned: false, crossSigningVerified: false }]) });
    assert.deepEqual(local, { ok: true, verification: "verified", senderDeviceId: "ADEV", crossSigned: false });
    const cross = decide(olm, { claimedDeviceId: "ADEV", lookupDevice: lookupIn([{ device: device(), crossSigned: true, crossSigningVerified: true }]) });
    assert.deepEqual(cross, { ok: true, verification: "verified", senderDeviceId: "ADEV", crossSigned: true });
  });

  it("olm session, device known but neither verified nor trusted by cross-signing: unverified", () => {
    assert.deepEqual(decide(olm, { lookupDevice: lookupIn([{ device: device(), crossSigned: true, crossSigningVerified: false }]) }), { ok: true, verification: "unverified", senderDeviceId: "ADEV", crossSigned: true });
  });

  it("legacy room_key session (no recorded Olm sender): the device is looked up among the event sender's devices", () => {
    const legacy: Provenance = { kind: "legacy_olm", curve25519: CURVE, ed25519: ED };
    assert.equal((decide(legacy) as { verification: string }).verification, "unverified");
    // The event claims Mallory, who has no device with this key: never Alice's label.
    assert.deepEqual(decide(legacy, { eventSender: "@mallory:x" }), { ok: true, verification: "unknown_device", senderDeviceId: null, crossSigned: false });
  });
});

describe("provenanceOf: sessions stored before provenance was recorded", () => {
  const base: InboundGroupSessionRecord = { roomId: "!r", senderKey: CURVE, sessionId: "s", pickle: "p", claimedEd25519: ED, forwardingChain: ["f1", "f2"], firstKnownIndex: 0, source: "room_key", createdTs: 0 };
  it("maps each legacy source, and prefers the stored record", () => {
    assert.deepEqual(provenanceOf({ ...base, source: "own" }), { kind: "own" });
    assert.deepEqual(provenanceOf(base), { kind: "legacy_olm", curve25519: CURVE, ed25519: ED });
    assert.deepEqual(provenanceOf({ ...base, source: "forwarded" }), { kind: "forwarded", userId: "", deviceId: null, curve25519: "f2" });
    assert.deepEqual(provenanceOf({ ...base, source: "imported" }), { kind: "imported" });
    assert.deepEqual(provenanceOf({ ...base, source: "own", senderData: { kind: "imported" } }), { kind: "imported" });
  });
});
