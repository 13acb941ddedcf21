import type { DeviceInfo, TrustableDevice } from "../protocol/api.js";

/** What a Device needs from its client. @internal */
export interface DeviceOwner {
  setDeviceFlags(userId: string, deviceId: string, flags: { verified?: boolean; blacklisted?: boolean; ignored?: boolean }): Promise<DeviceInfo>;
}

/**
 * A device's data and owner, kept outside the class: `Device` has no private members, so its type
 * is exactly its public shape ({@link TrustableDevice}, what `UnknownDevicesError.userDevices`
 * is typed with) and the two are interchangeable in application code.
 */
const internals = new WeakMap<Device, { info: DeviceInfo; owner: DeviceOwner }>();
const info = (d: Device): DeviceInfo => internals.get(d)!.info;

/** Persist flags through the owner and keep what the worker answered. */
async function setFlags(d: Device, flags: { verified?: boolean; blacklisted?: boolean; ignored?: boolean }): Promise<void> {
  const own = internals.get(d)!;
  own.info = await own.owner.setDeviceFlags(own.info.userId, own.info.deviceId, flags);
}

/**
 * A device of a Matrix user, with its identity keys and local trust flags.
 *
 * The three flags are independent: `verified` (you checked its fingerprint), `blacklisted` (it
 * never receives room keys; wins over the others), `ignored` (it cannot be verified but gets keys
 * anyway when device verification is on). The setters resolve once the worker has persisted them.
 */
export class Device implements TrustableDevice {
  /** @internal */
  constructor(deviceInfo: DeviceInfo, owner: DeviceOwner) {
    internals.set(this, { info: deviceInfo, owner });
  }

  /** Owner's user ID. */
  get userId(): string {
    return info(this).userId;
  }
  /** Device ID. */
  get deviceId(): string {
    return info(this).deviceId;
  }
  /** Display name published by the device, if any. */
  get displayName(): string | null {
    return info(this).displayName;
  }
  /** Ed25519 fingerprint key (unpadded base64). */
  get ed25519(): string {
    return info(this).ed25519;
  }
  /** Curve25519 identity key (unpadded base64). */
  get curve25519(): string {
    return info(this).curve25519;
  }
  /** Marked verified by the local user. */
  get verified(): boolean {
    return info(this).verified;
  }
  /** Never receives room keys. */
  get blacklisted(): boolean {
    return info(this).blacklisted;
  }
  /** Receives keys without being verified when device verification is on. */
  get ignored(): boolean {
    return info(this).ignored;
  }
  /** Cross-signed by its owner (master → self-signing key → device). */
  get crossSigned(): boolean {
    return info(this).crossSigned;
  }
  /** Cross-signed by its owner, and the owner's identity is ours or one we verified. */
  get crossSigningVerified(): boolean {
    return info(this).crossSigningVerified;
  }
  /** The device is no longer listed by the server. */
  get deleted(): boolean {
    return info(this).deleted;
  }

  /** Mark verified or not; resolves once persisted. */
  async setVerified(value: boolean): Promise<void> {
    await setFlags(this, { verified: value });
  }
  /** Blacklist or not; resolves once persisted. Blacklisting rotates room sessions it holds at the next send. */
  async setBlacklisted(value: boolean): Promise<void> {
    await setFlags(this, { blacklisted: value });
  }
  /** Ignore or not; resolves once persisted. */
  async setIgnored(value: boolean): Promise<void> {
    await setFlags(this, { ignored: value });
  }

  /** Plain data (no secrets are held here). */
  toJSON(): DeviceInfo {
    return { ...info(this) };
  }
}
