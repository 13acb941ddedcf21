/**
 * The vocabulary of the verification machine: the event types of the key verification framework,
 * its time limits (spec: 10 minutes per flow; requests older than 10 minutes or more than 5 in the
 * future ignored), and what the machine takes in and gives out.
 * @internal
 */
import type { VerificationFlowView, VerificationMessage, VerificationTransport } from "../../../src/protocol/verification.js";

/** The verification method we implement. */
export const SAS_V1 = "m.sas.v1";
/** A flow that is not done within this time is cancelled (`m.timeout`). */
export const FLOW_TIMEOUT_MS = 10 * 60_000;
/** Requests older than this (by their timestamp) are ignored. */
export const REQUEST_MAX_AGE_MS = 10 * 60_000;
/** Requests more than this far in the future are ignored. */
export const REQUEST_MAX_FUTURE_MS = 5 * 60_000;

/** The result of every entry point. */
export interface VerificationOutput {
  messages: VerificationMessage[];
  updates: VerificationFlowView[];
}

/** What the machine needs to know about keys (from the device store and cross-signing). */
export interface VerificationKeySource {
  /** The ed25519 key of a device we hold signed device keys for, or null. */
  deviceEd25519(userId: string, deviceId: string): string | null;
  /** The user's master cross-signing key (public) as we know it, or null. */
  masterKey(userId: string): string | null;
}

/** Who we are. */
export interface VerificationIdentity {
  userId: string;
  deviceId: string;
  ed25519: string;
}

/** The event types of the key verification framework. */
export const TYPES = {
  request: "m.key.verification.request",
  ready: "m.key.verification.ready",
  start: "m.key.verification.start",
  accept: "m.key.verification.accept",
  key: "m.key.verification.key",
  mac: "m.key.verification.mac",
  cancel: "m.key.verification.cancel",
  done: "m.key.verification.done",
} as const;

/** Event types the machine handles (to-device types; in room, the request is an `m.room.message`). */
export const VERIFICATION_EVENT_TYPES: readonly string[] = Object.values(TYPES);

/** Where an incoming verification event came from. */
export interface IncomingVerificationContext {
  transport: VerificationTransport;
  /** In-room: the room and the event's ID and timestamp. */
  roomId?: string;
  eventId?: string;
  originServerTs?: number;
}

