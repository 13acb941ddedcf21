/**
 * Event types the client emits.
 * @packageDocumentation
 */
import type { EventEmitter } from "eventemitter3";
import type { DecryptionFailureCodeValue, VerificationStatusValue } from "../protocol/api.js";
import type { VerificationRequest } from "./verification/VerificationRequest.js";

/** How a decrypted event was protected and who sent it, per the crypto worker. */
export interface EventEncryptionInfo {
  /** Curve25519 key of the sending device. */
  senderCurve25519: string;
  /** Ed25519 key the sending device claimed for the Megolm session. */
  claimedEd25519: string;
  /** Sending device ID, when known. */
  senderDeviceId: string | null;
  /** Trust in the sender (see {@link VerificationStatusValue}). */
  verification: VerificationStatusValue;
  /** The sending device is cross-signed by its owner. */
  crossSigned: boolean;
  sessionId: string;
  messageIndex: number;
  /** Devices that forwarded the session (empty when it came from the sender). */
  forwardingChain: string[];
}

/** A room timeline event, decrypted when it was encrypted and could be decrypted. */
export interface RoomEvent {
  roomId: string;
  eventId: string;
  sender: string;
  /** Event type; for decrypted events, the decrypted type (e.g. `m.room.message`). */
  type: string;
  content: Record<string, unknown>;
  originServerTs: number;
  stateKey?: string;
  unsigned?: Record<string, unknown>;
  /** Set when the event arrived encrypted and was decrypted. */
  encryption?: EventEncryptionInfo;
  /** True when the event was decrypted later than it arrived (its key came afterwards). */
  lateDecryption?: boolean;
  /**
   * Set when the event was redacted: the redaction event (`unsigned.redacted_because`). Its
   * `content` is what the server kept (`{}` for messages; for an encrypted event, `type` stays
   * `m.room.encrypted`: the ciphertext is gone, so it is not a decryption failure).
   */
  redactedBecause?: Record<string, unknown>;
}

/** An encrypted room event that could not be decrypted (yet). */
export interface UndecryptableEvent {
  roomId: string;
  eventId: string;
  sender: string;
  originServerTs: number;
  /** Reason code. `missing_session`/`unknown_index` events are retried when their key arrives. */
  code: DecryptionFailureCodeValue;
  message: string;
  sessionId: string | null;
  /** The withheld code, when the sender refused to share the key. */
  withheldCode?: string;
  /** The raw encrypted event. */
  raw: Record<string, unknown>;
}

/** A to-device event (decrypted when it came Olm-encrypted). */
export interface ToDeviceEvent {
  type: string;
  sender: string;
  content: Record<string, unknown>;
  /** Whether it came encrypted (Olm). */
  encrypted: boolean;
  /** Curve25519 key of the sending device (encrypted events only). */
  senderCurve25519: string | null;
}

/** Summary emitted after each processed sync. */
export interface SyncInfo {
  nextBatch: string;
  /** Timeline events emitted for this sync. */
  events: number;
}

/** Events of {@link MatrixClient}. */
export interface MatrixClientEvents {
  /** Every timeline event of joined rooms, in order, decrypted where possible. */
  "room.event": (event: RoomEvent) => void;
  /** An encrypted event that could not be decrypted, with its reason code. */
  "room.undecryptable": (event: UndecryptableEvent) => void;
  /**
   * Events of a room could not all be fetched after a limited sync (more than 1,000 missed, or a
   * network error); `from` is the pagination token where the gap starts (use `/messages`).
   */
  "room.timelineGap": (roomId: string, from: string) => void;
  /** We were invited to a room. */
  "room.invite": (roomId: string, inviter: string | null) => void;
  /** A room became encrypted. */
  "room.encrypted": (roomId: string, encryption: Record<string, unknown>) => void;
  /** A Megolm session (room key) was received and stored. */
  "room.key": (key: { roomId: string; sessionId: string; senderKey: string }) => void;
  /** A to-device event (room keys are consumed internally and not emitted). */
  "toDevice": (event: ToDeviceEvent) => void;
  /** A to-device message failed to decrypt or was rejected (reason-coded, already logged). */
  "toDevice.failure": (failure: { sender: string; type: string; code: string; message: string }) => void;
  /** A sync was fully processed and its token committed. */
  "sync": (info: SyncInfo) => void;
  /** A non-fatal error (sync failure, request failure). The client keeps going. */
  "error": (err: Error) => void;
  /** A user's cross-signing identity changed (not trusted until acknowledged). */
  "user.identityChanged": (userId: string) => void;
  /** The crypto worker died; it is being restarted. */
  "crypto.workerCrashed": (err: Error) => void;
  /** The crypto worker was restarted and reloaded its state. */
  "crypto.workerRestarted": () => void;
  /**
   * The key backup version we uploaded to was deleted or replaced on the server (another device
   * reset it): uploading stopped. `current` (the server's version now, or null) is not trusted
   * until `enableKeyBackup` is called again (and finds it trusted).
   */
  "keyBackup.versionChanged": (change: { previous: string; current: string | null }) => void;
  /** Another device or user asks to verify us interactively (SAS emoji/decimal): accept or cancel it. */
  "verification.request": (request: VerificationRequest) => void;
}

/** Where the client's components emit its events (the client itself). @internal */
export type ClientEventSink = Pick<EventEmitter<MatrixClientEvents>, "emit">;

/** Emit `err` as an `error` event, wrapped in an `Error` when it is not one. @internal */
export function emitError(sink: ClientEventSink, err: unknown): void {
  sink.emit("error", err instanceof Error ? err : new Error(String(err)));
}
