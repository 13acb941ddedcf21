/**
 * Interactive verification types shared by the worker and the main thread (spec: client-server
 * API, "Key verification framework" and "Short Authentication String (SAS) verification").
 * @packageDocumentation
 */

/** Where a flow's messages go: to-device messages, or events in a room (related to the request). */
export type VerificationTransport = "to_device" | "room";

/**
 * Phases of a flow, in order; `cancelled` can follow any of them.
 * - `requested`: a request was sent or received; `ready`: accepted, no method started yet;
 * - `started`: SAS started, keys being exchanged; `keys_exchanged`: the short authentication
 *   strings can be shown; `confirmed`: we confirmed they match and sent our MAC;
 * - `mac_verified`: their MAC checked out (keys trusted), waiting for their `done`; `done`.
 */
export type VerificationPhase = "requested" | "ready" | "started" | "keys_exchanged" | "confirmed" | "mac_verified" | "done" | "cancelled";

/** One emoji of a short authentication string (from the spec's table). */
export interface SasEmoji {
  /** The emoji. */
  symbol: string;
  /** Its English description from the spec's table. */
  name: string;
}

/** Keys of the other party that a completed SAS verified. */
export interface VerifiedKeys {
  userId: string;
  /** Their device whose ed25519 key was verified, if it was. */
  deviceId: string | null;
  /** Their master cross-signing key (public), if it was verified. */
  masterKey: string | null;
}

/** What the application sees of a flow. */
export interface VerificationFlowView {
  /** The flow's ID: the to-device `transaction_id`, or the event ID of the in-room request. */
  flowId: string;
  transport: VerificationTransport;
  /** The room of an in-room flow. */
  roomId: string | null;
  otherUserId: string;
  /** The other device, once known (a to-device request to several devices learns it from the answer). */
  otherDeviceId: string | null;
  /** Whether we sent the request. */
  initiatedByUs: boolean;
  phase: VerificationPhase;
  /** The short authentication strings, once the keys were exchanged. */
  sas: { emoji: SasEmoji[] | null; decimal: [number, number, number] | null } | null;
  /** Why the flow was cancelled, and by whom. */
  cancel: { code: string; reason: string; byUs: boolean } | null;
  /** What the MAC check verified (set from `mac_verified` on). */
  verified: VerifiedKeys | null;
}

/** A verification message the client must send. */
export type VerificationMessage =
  | { transport: "to_device"; flowId: string; userId: string; deviceIds: string[]; type: string; content: Record<string, unknown> }
  | { transport: "room"; flowId: string; roomId: string; type: string; content: Record<string, unknown> };

/** What every verification call of the worker returns. */
export interface VerificationActionResult {
  /** Messages to send, in order. */
  messages: VerificationMessage[];
  /** Flows whose view changed. */
  updates: VerificationFlowView[];
  /** A `/keys/signatures/upload` body for what a finished SAS verified (cross-signing), or null. */
  signatureUpload: Record<string, unknown> | null;
}

/** A user action on a flow. */
export type VerificationAction = "accept" | "start_sas" | "confirm" | "mismatch" | "cancel";
