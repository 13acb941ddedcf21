/**
 * A remote Matrix device built from raw libolm (`@matrix-org/olm`), fully under the test's
 * control: it signs device keys and one-time keys, opens Olm sessions to the client under test
 * from the keys the client uploaded, and creates Megolm sessions and messages with any room ID.
 */
import Olm from "@matrix-org/olm";
import { canonicalJson, signablePart } from "../../workers/engine/canonicalJson.js";

export const OLM = "m.olm.v1.curve25519-aes-sha2";
export const MEGOLM = "m.megolm.v1.aes-sha2";

type Json = Record<string, unknown>;

let ready: Promise<void> | null = null;
/** Load libolm once per process. */
export function initOlm(): Promise<void> {
  ready ??= Olm.init();
  return ready;
}

/** The identity of a device as the peer needs it to encrypt for it. */
export interface Recipient {
  userId: string;
  deviceId: string;
  curve25519: string;
  ed25519: string;
}

/** The client's identity and one of its one-time keys, read from a keys/upload body. */
export function recipientFromUpload(upload: Json, userId: string, deviceId: string): { recipient: Recipient; otks: string[] } {
  const dk = upload.device_keys as Json;
  const keys = dk.keys as Record<string, string>;
  const otks = Object.values((upload.one_time_keys ?? {}) as Record<string, { key: string }>).map((k) => k.key);
  return { recipient: { userId, deviceId, curve25519: keys[`curve25519:${deviceId}`]!, ed25519: keys[`ed25519:${deviceId}`]! }, otks };
}

export class OlmPeer {
  readonly account: Olm.Account;
  readonly curve25519: string;
  readonly ed25519: string;
  private readonly sessions = new Map<string, Olm.Session>();
  private readonly groups = new Map<string, Olm.OutboundGroupSession>();

  constructor(
    readonly userId: string,
    readonly deviceId: string,
  ) {
    this.account = new Olm.Account();
    this.account.create();
    const k = JSON.parse(this.account.identity_keys()) as { curve25519: string; ed25519: string };
    this.curve25519 = k.curve25519;
    this.ed25519 = k.ed25519;
  }

  /** Sign `obj` (its signable part, canonical JSON) with this device's ed25519 key. */
  sign(obj: Json, as: { userId: string; deviceId: string } = this): Json {
    const sig = this.account.sign(canonicalJson(signablePart(obj)));
    const signatures = (obj.signatures ?? {}) as Record<string, Record<string, string>>;
    return { ...obj, signatures: { ...signatures, [as.userId]: { ...(signatures[as.userId] ?? {}), [`ed25519:${as.deviceId}`]: sig } } };
  }

  /** Signed device keys, as /keys/query returns them. */
  deviceKeys(overrides: Json = {}): Json {
    return this.sign({
      user_id: this.userId,
      device_id: this.deviceId,
      algorithms: [OLM, MEGOLM],
      keys: { [`curve25519:${this.deviceId}`]: this.curve25519, [`ed25519:${this.deviceId}`]: this.ed25519 },
      ...overrides,
    });
  }

  /** `n` fresh signed one-time keys (key ID → key object), marked published. */
  signedOtks(n: number): Record<string, Json> {
    this.account.generate_one_time_keys(n);
    const keys = (JSON.parse(this.account.one_time_keys()) as { curve25519: Record<string, string> }).curve25519;
    this.account.mark_keys_as_published();
    const out: Record<string, Json> = {};
    for (const [id, key] of Object.entries(keys)) out[`signed_curve25519:${id}`] = this.sign({ key });
    return out;
  }

  /** Open (once) an outbound Olm session to the recipient with one of its one-time keys. */
  openSession(to: Recipient, otk: string, fresh = false): void {
    if (this.sessions.has(to.curve25519) && !fresh) return;
    this.sessions.get(to.curve25519)?.free();
    const s = new Olm.Session();
    s.create_outbound(this.account, to.curve25519, otk);
    this.sessions.set(to.curve25519, s);
  }

  /**
   * An Olm-encrypted to-device event for `to` carrying `type`/`content`. `plaintextOverrides`
   * replaces fields of the Olm plaintext (to forge recipient, keys, sender...); `eventSender`
   * is the `sender` the server stamps on the to-device event.
   */
  olmToDevice(to: Recipient, type: string, content: Json, opts: { plaintextOverrides?: Json; eventSender?: string; rawPlaintext?: string; ciphertextKey?: string } = {}): Json {
    const s = this.sessions.get(to.curve25519);
    if (!s) throw new Error("openSession first");
    const plaintext = {
      type,
      content,
      sender: this.userId,
      sender_device: this.deviceId,
      keys: { ed25519: this.ed25519 },
      recipient: to.userId,
      recipient_keys: { ed25519: to.ed25519 },
      ...(opts.plaintextOverrides ?? {}),
    };
    const msg = s.encrypt(opts.rawPlaintext ?? JSON.stringify(plaintext));
    return {
      type: "m.room.encrypted",
      sender: opts.eventSender ?? this.userId,
      content: { algorithm: OLM, sender_key: this.curve25519, ciphertext: { [opts.ciphertextKey ?? to.curve25519]: { type: msg.type, body: msg.body } } },
    };
  }

  /** A new outbound Megolm session, kept under `name`. */
  newMegolm(name: string): { sessionId: string; sessionKey: string } {
    const og = new Olm.OutboundGroupSession();
    og.create();
    this.groups.get(name)?.free();
    this.groups.set(name, og);
    return { sessionId: og.session_id(), sessionKey: og.session_key() };
  }

  /** The session in key-export format (what `m.forwarded_room_key` carries), from its current index. */
  exportedSessionKey(name: string): string {
    const og = this.groups.get(name)!;
    const ig = new Olm.InboundGroupSession();
    try {
      ig.create(og.session_key());
      return ig.export_session(ig.first_known_index());
    } finally {
      ig.free();
    }
  }

  megolmSessionId(name: string): string {
    return this.groups.get(name)!.session_id();
  }

  /** The `m.room_key` content for the Megolm session `name` in `roomId`. */
  roomKeyContent(name: string, roomId: string): Json {
    const og = this.groups.get(name)!;
    return { algorithm: MEGOLM, room_id: roomId, session_id: og.session_id(), session_key: og.session_key() };
  }

  /**
   * An `m.room.encrypted` timeline event with session `name`; the ENCRYPTED payload says
   * `payloadRoomId` (normally the room it is delivered in).
   */
  megolmEvent(name: string, payloadRoomId: string, content: Json, eventId: string, opts: { type?: string; sender?: string } = {}): Json {
    const og = this.groups.get(name)!;
    const ciphertext = og.encrypt(JSON.stringify({ type: opts.type ?? "m.room.message", content, room_id: payloadRoomId }));
    return {
      type: "m.room.encrypted",
      event_id: eventId,
      sender: opts.sender ?? this.userId,
      origin_server_ts: Date.now(),
      content: { algorithm: MEGOLM, sender_key: this.curve25519, ciphertext, session_id: og.session_id(), device_id: this.deviceId },
    };
  }

  free(): void {
    for (const s of this.sessions.values()) s.free();
    for (const g of this.groups.values()) g.free();
    this.account.free();
  }
}

/** Decrypt what the client sent to `peer` (to-device Olm and Megolm), to check what left the client. */
export class PeerInbox {
  private readonly inbound = new Map<string, Olm.Session>();
  private readonly groups = new Map<string, Olm.InboundGroupSession>();
  /** Inbound Olm sessions created from the client's pre-key messages (one per outbound session it made). */
  sessionsCreated = 0;
  constructor(private readonly peer: OlmPeer) {}

  /** Decrypt an Olm to-device content addressed to the peer; returns the plaintext object. */
  olm(content: Json): Json {
    const c = (content.ciphertext as Record<string, { type: number; body: string }>)[this.peer.curve25519];
    if (!c) throw new Error("not encrypted for the peer");
    const senderKey = content.sender_key as string;
    let s = this.inbound.get(senderKey);
    if (!s || (c.type === 0 && !s.matches_inbound_from(senderKey, c.body))) {
      s = new Olm.Session();
      s.create_inbound_from(this.peer.account, senderKey, c.body);
      this.peer.account.remove_one_time_keys(s);
      this.inbound.set(senderKey, s);
      this.sessionsCreated++;
    }
    const pt = JSON.parse(s.decrypt(c.type, c.body)) as Json;
    if (pt.type === "m.room_key") {
      const rk = pt.content as Json;
      const g = new Olm.InboundGroupSession();
      g.create(rk.session_key as string);
      this.groups.set(rk.session_id as string, g);
    }
    return pt;
  }

  /** Decrypt a Megolm event content with a session received through {@link olm}. */
  megolm(content: Json): Json {
    return this.megolmIndexed(content).event;
  }

  /** {@link megolm}, with the session and the message index the ciphertext used. */
  megolmIndexed(content: Json): { event: Json; sessionId: string; index: number } {
    const sessionId = content.session_id as string;
    const g = this.groups.get(sessionId);
    if (!g) throw new Error(`peer has no session ${String(content.session_id)}`);
    const d = g.decrypt(content.ciphertext as string);
    return { event: JSON.parse(d.plaintext) as Json, sessionId, index: d.message_index };
  }
}
