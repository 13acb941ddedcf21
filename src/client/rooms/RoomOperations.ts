/**
 * The room endpoints that are not event sends: create, join, invite, leave, kick, ban, members,
 * state events, history pages, single events, redactions, typing and read receipts.
 * @internal
 */
import { MEGOLM_ALGORITHM, type RoomDecryptResult } from "../../protocol/api.js";
import { MatrixHttpError } from "../../protocol/errors.js";
import { makeTxnId, p, type HttpClient } from "../../http/HttpClient.js";
import type { CryptoAccess } from "../CryptoAccess.js";
import type { RoomEvent, UndecryptableEvent } from "../events.js";
import { isObj, type Json } from "../json.js";
import { isRedacted, type TimelineEmitter } from "../timeline.js";
import type { MessagesOptions, MessagesPage, Room, RoomEncryptionSettings } from "./Room.js";
import type { RoomEncryptionTracker } from "./RoomEncryptionTracker.js";
import type { RoomRegistry } from "./RoomRegistry.js";

/** Options of {@link MatrixClient.createRoom}. */
export interface CreateRoomOptions {
  encrypted?: boolean;
  invite?: string[];
  name?: string;
  preset?: "private_chat" | "public_chat" | "trusted_private_chat";
  isDirect?: boolean;
  encryptionSettings?: { rotationPeriodMs?: number; rotationPeriodMsgs?: number };
}

/** What the room operations need. @internal */
export interface RoomOperationsDeps {
  http: HttpClient;
  crypto: CryptoAccess;
  rooms: RoomRegistry;
  roomEncryption: RoomEncryptionTracker;
  timeline: TimelineEmitter;
  /** The logged-in user (set before any room operation can run). */
  userId: () => string;
}

/** Room endpoints (create, join, membership, state, history). @internal */
export class RoomOperations {
  constructor(private readonly deps: RoomOperationsDeps) {}

  /** Create a room, optionally encrypted, inviting users. */
  async createRoom(opts: CreateRoomOptions = {}): Promise<Room> {
    const body: Json = { preset: opts.preset ?? "private_chat", invite: opts.invite ?? [] };
    if (opts.name) body.name = opts.name;
    if (opts.isDirect) body.is_direct = true;
    let encryption: RoomEncryptionSettings | null = null;
    if (opts.encrypted) {
      encryption = { algorithm: MEGOLM_ALGORITHM };
      if (opts.encryptionSettings?.rotationPeriodMs) encryption.rotation_period_ms = opts.encryptionSettings.rotationPeriodMs;
      if (opts.encryptionSettings?.rotationPeriodMsgs) encryption.rotation_period_msgs = opts.encryptionSettings.rotationPeriodMsgs;
      body.initial_state = [{ type: "m.room.encryption", state_key: "", content: encryption }];
    }
    const res = await this.deps.http.request<Json>("POST", "/_matrix/client/v3/createRoom", { body });
    if (typeof res.room_id !== "string") throw new MatrixHttpError(200, "M_BAD_JSON", "createRoom response lacks room_id");
    const room = this.deps.rooms.get(res.room_id);
    room.members.set(this.deps.userId(), "join");
    for (const u of opts.invite ?? []) room.members.set(u, "invite");
    room.encryption = encryption;
    if (encryption) await this.deps.roomEncryption.note(room, encryption);
    return room;
  }

  /** Join a room by ID or alias. */
  async joinRoom(roomIdOrAlias: string): Promise<Room> {
    const res = await this.deps.http.request<Json>("POST", p`/_matrix/client/v3/join/${roomIdOrAlias}`, { body: {} });
    if (typeof res.room_id !== "string") throw new MatrixHttpError(200, "M_BAD_JSON", "join response lacks room_id");
    const room = this.deps.rooms.get(res.room_id);
    room.members.set(this.deps.userId(), "join");
    room.membersLoaded = false;
    return room;
  }

  /** Invite a user. */
  async invite(roomId: string, userId: string): Promise<void> {
    await this.deps.http.request("POST", p`/_matrix/client/v3/rooms/${roomId}/invite`, { body: { user_id: userId } });
  }

  /** Leave a room. */
  async leave(roomId: string): Promise<void> {
    await this.deps.http.request("POST", p`/_matrix/client/v3/rooms/${roomId}/leave`, { body: {} });
  }

  /** Kick a user. */
  async kick(roomId: string, userId: string, reason?: string): Promise<void> {
    await this.deps.http.request("POST", p`/_matrix/client/v3/rooms/${roomId}/kick`, { body: reason ? { user_id: userId, reason } : { user_id: userId } });
  }

  /** Ban a user. */
  async ban(roomId: string, userId: string, reason?: string): Promise<void> {
    await this.deps.http.request("POST", p`/_matrix/client/v3/rooms/${roomId}/ban`, { body: reason ? { user_id: userId, reason } : { user_id: userId } });
  }

  /** Joined members, from the server. */
  async getJoinedMembers(roomId: string): Promise<string[]> {
    const res = await this.deps.http.request<Json>("GET", p`/_matrix/client/v3/rooms/${roomId}/joined_members`);
    return isObj(res.joined) ? Object.keys(res.joined) : [];
  }

  /** Send a state event; resolves with the event ID. */
  async sendStateEvent(roomId: string, type: string, stateKey: string, content: Record<string, unknown>): Promise<string> {
    const res = await this.deps.http.request<Json>("PUT", p`/_matrix/client/v3/rooms/${roomId}/state/${type}/${stateKey}`, { body: content });
    return typeof res.event_id === "string" ? res.event_id : "";
  }

  /** A state event's content (`event`: the whole event), or null when the room has none of that type and key (404). */
  async getState(roomId: string, type: string, stateKey: string, event = false): Promise<Record<string, unknown> | null> {
    try {
      return await this.deps.http.request<Json>("GET", p`/_matrix/client/v3/rooms/${roomId}/state/${type}/${stateKey}`, event ? { query: { format: "event" } } : {});
    } catch (err) {
      if (err instanceof MatrixHttpError && err.status === 404) return null;
      throw err;
    }
  }

  /** The last `limit` events of a room, oldest first, decrypted where possible. Nothing is emitted. */
  async fetchHistory(roomId: string, limit: number): Promise<(RoomEvent | UndecryptableEvent)[]> {
    return (await this.getMessages(roomId, { limit })).events;
  }

  /** One page of a room's history (`/messages`), in timeline order, decrypted where possible. Nothing is emitted. */
  async getMessages(roomId: string, opts: MessagesOptions = {}): Promise<MessagesPage> {
    const dir = opts.dir ?? "b";
    const res = await this.deps.http.request<Json>("GET", p`/_matrix/client/v3/rooms/${roomId}/messages`, { query: { dir, limit: opts.limit ?? 50, from: opts.from } });
    const chunk = (Array.isArray(res.chunk) ? res.chunk : []).filter(isObj);
    if (dir === "b") chunk.reverse();
    const page: MessagesPage = { events: await this.decrypted(roomId, chunk), start: typeof res.start === "string" ? res.start : (opts.from ?? "") };
    if (typeof res.end === "string" && chunk.length) page.end = res.end;
    return page;
  }

  /** One event of a room (`/rooms/{roomId}/event/{eventId}`), decrypted where possible. */
  async getEvent(roomId: string, eventId: string): Promise<RoomEvent | UndecryptableEvent> {
    const ev: unknown = await this.deps.http.request("GET", p`/_matrix/client/v3/rooms/${roomId}/event/${eventId}`);
    if (!isObj(ev)) throw new MatrixHttpError(200, "M_BAD_JSON", "the event answer is not an object");
    return (await this.decrypted(roomId, [ev]))[0]!;
  }

  /** Redact an event; resolves with the redaction's event ID. */
  async redact(roomId: string, eventId: string, reason?: string): Promise<string> {
    const res = await this.deps.http.request<Json>("PUT", p`/_matrix/client/v3/rooms/${roomId}/redact/${eventId}/${makeTxnId()}`, { body: reason ? { reason } : {} });
    return typeof res.event_id === "string" ? res.event_id : "";
  }

  /** Show (for `timeoutMs`) or stop showing that we are typing. */
  async setTyping(roomId: string, typing: boolean, timeoutMs: number): Promise<void> {
    await this.deps.http.request("PUT", p`/_matrix/client/v3/rooms/${roomId}/typing/${this.deps.userId()}`, { body: typing ? { typing, timeout: timeoutMs } : { typing } });
  }

  /** Send a read receipt (`m.read`, or `m.read.private`) for an event. */
  async sendReadReceipt(roomId: string, eventId: string, type: "m.read" | "m.read.private"): Promise<void> {
    await this.deps.http.request("POST", p`/_matrix/client/v3/rooms/${roomId}/receipt/${type}/${eventId}`, { body: {} });
  }

  /** Raw events → timeline items, the encrypted ones decrypted in one worker call (redacted ones never sent to it). */
  private async decrypted(roomId: string, events: Json[]): Promise<(RoomEvent | UndecryptableEvent)[]> {
    const enc = events.filter((e) => e.type === "m.room.encrypted" && !isRedacted(e));
    let results = new Map<string, RoomDecryptResult>();
    if (enc.length && this.deps.crypto.ready) {
      results = new Map((await this.deps.crypto.api.decryptRoomEvents(roomId, JSON.stringify(enc))).map((r) => [r.eventId, r]));
    }
    return events.map((ev) => this.deps.timeline.item(roomId, ev, typeof ev.event_id === "string" ? results.get(ev.event_id) : undefined, false));
  }
}
