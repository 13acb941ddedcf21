/**
 * Turns raw timeline events plus their decryption results into what listeners get (`RoomEvent`,
 * `UndecryptableEvent`), and delivers them so that a throwing listener cannot fail a sync.
 *
 * Shared by the sync path (`sync/SyncProcessor`), room history (`rooms/RoomOperations`) and key
 * import (`keys/KeyExportManager`), hence at the top of `src/client` rather than in one of them.
 * @internal
 */
import type { RoomDecryptResult } from "../protocol/api.js";
import type { Logger } from "../pure/logger.js";
import { emitError, type ClientEventSink, type MatrixClientEvents, type RoomEvent, type UndecryptableEvent } from "./events.js";
import { isObj, type Json } from "./json.js";

/** The `content` of a decrypted payload (checked to be an object by the worker). */
function plaintextContent(plaintextJson: string): Json {
  const p = JSON.parse(plaintextJson) as { content?: unknown };
  return isObj(p.content) ? p.content : {};
}

/**
 * A decrypted content with the relation of the encrypted event's cleartext (where the spec puts
 * `m.relates_to` of encrypted events, so that servers can aggregate them), as matrix-js-sdk
 * exposes it; a relation only inside the ciphertext (older senders) is kept when there is none.
 */
function withClearRelation(content: Json, ev: Json): Json {
  const rel = isObj(ev.content) ? ev.content["m.relates_to"] : undefined;
  return isObj(rel) ? { ...content, "m.relates_to": rel } : content;
}

/**
 * Whether a raw event was redacted (the server put the redaction in `unsigned.redacted_because`).
 * A redacted encrypted event has lost its ciphertext: it is never given to the worker to decrypt,
 * and comes out as a redacted {@link RoomEvent}, not as a decryption failure.
 * @internal
 */
export function isRedacted(ev: Json): boolean {
  return isObj(ev.unsigned) && isObj(ev.unsigned.redacted_because);
}

/**
 * A raw timeline event plus its decryption result → what listeners get. `encryption` is the
 * client's encryption flag: it picks the reason given for an encrypted event without a result.
 * @internal
 */
export function toTimelineItem(roomId: string, ev: Json, r: RoomDecryptResult | undefined, late: boolean, encryption: boolean): RoomEvent | UndecryptableEvent {
  if (r?.ok) {
    const out: RoomEvent = {
      roomId,
      eventId: r.eventId,
      sender: r.sender,
      type: r.type,
      content: withClearRelation(plaintextContent(r.plaintextJson), ev),
      originServerTs: r.originServerTs,
      encryption: {
        senderCurve25519: r.senderCurve25519,
        claimedEd25519: r.claimedEd25519,
        senderDeviceId: r.senderDeviceId,
        verification: r.verification,
        crossSigned: r.crossSigned,
        sessionId: r.sessionId,
        messageIndex: r.messageIndex,
        forwardingChain: r.forwardingChain,
      },
    };
    if (late) out.lateDecryption = true;
    if (isObj(ev.unsigned)) out.unsigned = ev.unsigned;
    return out;
  }
  if (ev.type === "m.room.encrypted" && !isRedacted(ev)) {
    const content = isObj(ev.content) ? ev.content : {};
    const utd: UndecryptableEvent = {
      roomId,
      eventId: typeof ev.event_id === "string" ? ev.event_id : "",
      sender: typeof ev.sender === "string" ? ev.sender : "",
      originServerTs: typeof ev.origin_server_ts === "number" ? ev.origin_server_ts : 0,
      code: r && !r.ok ? r.code : encryption ? "malformed" : "missing_session",
      message: r && !r.ok ? r.message : encryption ? "no decryption result" : "encryption is disabled",
      sessionId: r && !r.ok ? r.sessionId : typeof content.session_id === "string" ? content.session_id : null,
      raw: ev,
    };
    if (r && !r.ok && r.withheldCode) utd.withheldCode = r.withheldCode;
    return utd;
  }
  const out: RoomEvent = {
    roomId,
    eventId: typeof ev.event_id === "string" ? ev.event_id : "",
    sender: typeof ev.sender === "string" ? ev.sender : "",
    type: typeof ev.type === "string" ? ev.type : "",
    content: isObj(ev.content) ? ev.content : {},
    originServerTs: typeof ev.origin_server_ts === "number" ? ev.origin_server_ts : 0,
  };
  if (typeof ev.state_key === "string") out.stateKey = ev.state_key;
  if (isObj(ev.unsigned)) {
    out.unsigned = ev.unsigned;
    if (isObj(ev.unsigned.redacted_because)) out.redactedBecause = ev.unsigned.redacted_because;
  }
  return out;
}

/** Emits timeline items as `room.event` / `room.undecryptable`, isolating the sync from throwing listeners. @internal */
export class TimelineEmitter {
  constructor(
    private readonly events: ClientEventSink,
    private readonly log: Logger,
    /** The client's encryption flag (see {@link toTimelineItem}). */
    private readonly encryption: boolean,
  ) {}

  /** {@link toTimelineItem} with the client's encryption flag. */
  item(roomId: string, ev: Json, r: RoomDecryptResult | undefined, late: boolean): RoomEvent | UndecryptableEvent {
    return toTimelineItem(roomId, ev, r, late, this.encryption);
  }

  /** Emit one timeline event, decrypted (`room.event`) or not (`room.undecryptable`). */
  emitTimelineEvent(roomId: string, ev: Json, r: RoomDecryptResult | undefined, late: boolean): void {
    const item = this.item(roomId, ev, r, late);
    if ("code" in item) this.deliver("room.undecryptable", item);
    else this.deliver("room.event", item);
  }

  /** Emit an event decrypted after the fact (a key arrived or was imported): `ev` needs only its `event_id`. */
  emitDecrypted(roomId: string, ev: Json, r: RoomDecryptResult & { ok: true }, late: boolean): void {
    this.deliver("room.event", this.item(roomId, ev, r, late) as RoomEvent);
  }

  /**
   * Emit to application listeners. A throwing listener must not fail the sync (which would then be
   * processed again and again): its error is reported as an `error` event.
   */
  private deliver<K extends "room.event" | "room.undecryptable">(event: K, arg: Parameters<MatrixClientEvents[K]>[0]): void {
    try {
      (this.events.emit as (e: string, a: unknown) => boolean)(event, arg);
    } catch (err) {
      this.log.warn(`a ${event} listener threw: ${String(err)}`);
      try {
        emitError(this.events, err);
      } catch {
        // an error listener that throws is ignored
      }
    }
  }
}
