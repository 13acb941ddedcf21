import type { DeviceInfo } from "../protocol/api.js";

/** What a Device needs from its client. @internal */
export interface DeviceOwner {
  setDeviceFlags(userId: string, deviceId: string, flags: { verified?: boolean; blacklisted?: boolean; ignored?: boolean }): Promise<DeviceInfo>;
}

/**
 * A device of a Matrix user, with its identity keys and local trust flags.
 *
 * The three flags are independent: `verified` (you checked its fingerprint), `blacklisted` (it
 * never receives room keys; wins over the others), `ignored` (it cannot be verified but gets keys
 * anyway when device verification is on). The setters resolve once the worker has persisted them.
 */
export class Device {
  /** @internal */
  constructor(
    private info: DeviceInfo,
    private readonly owner: DeviceOwner,
  ) {}

  /** Owner's user ID. */
  get userId(): string {
    return this.info.userId;
  }
  /** Device ID. */
  get deviceId(): string {
    return this.info.deviceId;
  }
  /** Display name published by the device, if any. */
  get displayName(): string | null {
    return this.info.displayName;
  }
  /** Ed25519 fingerprint key (unpadded base64). */
  get ed25519(): string {
    return this.info.ed25519;
  }
  /** Curve25519 identity key (unpadded base64). */
  get curve25519(): string {
    return this.info.curve25519;
  }
  /** Marked verified by the local user. */
  get verified(): boolean {
    return this.info.verified;
  }
  /** Never receives room keys. */
  get blacklisted(): boolean {
    return this.info.blacklisted;
  }
  /** Receives keys without being verified when device verification is on. */
  get ignored(): boolean {
    return this.info.ignored;
  }
  /** Cross-signed by its owner (master → self-signing key → device). */
  get crossSigned(): boolean {
    return this.info.crossSigned;
  }
  /** Cross-signed by its owner, and the owner's identity is ours or one we verified. */
  get crossSigningVerified(): boolean {
    return this.info.crossSigningVerified;
  }
  /** The device is no longer listed by the server. */
  get deleted(): boolean {
    return this.info.deleted;
  }

  /** Mark verified or not; resolves once persisted. */
  async setVerified(value: boolean): Promise<void> {
    this.info = await this.owner.setDeviceFlags(this.userId, this.deviceId, { verified: value });
  }
  /** Blacklist or not; resolves once persisted. Blacklisting rotates room sessions it holds at the next send. */
  async setBlacklisted(value: boolean): Promise<void> {
    this.info = await this.owner.setDeviceFlags(this.userId, this.deviceId, { blacklisted: value });
  }
  /** Ignore or not; resolves once persisted. */
  async setIgnored(value: boolean): Promise<void> {
    this.info = await this.owner.setDeviceFlags(this.userId, this.deviceId, { ignored: value });
  }

  /** Plain data (no secrets are held here). */
  toJSON(): DeviceInfo {
    return { ...this.info };
  }
}
