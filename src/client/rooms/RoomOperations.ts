/**
 * The room endpoints that are not sends: create, join, invite, leave, kick, ban, members, state
 * events and history.
 * @internal
 */
import { MEGOLM_ALGORITHM, type RoomDecryptResult } from "../../protocol/api.js";
import { MatrixHttpError } from "../../protocol/errors.js";
import { p, type HttpClient } from "../../http/HttpClient.js";
import type { CryptoAccess } from "../CryptoAccess.js";
import type { RoomEvent, UndecryptableEvent } from "../events.js";
import { isObj, type Json } from "../json.js";
import type { TimelineEmitter } from "../timeline.js";
import type { Room, RoomEncryptionSettings } from "./Room.js";
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

  /** The last `limit` events of a room (`/messages`), oldest first, decrypted where possible. Nothing is emitted. */
  async fetchHistory(roomId: string, limit: number): Promise<(RoomEvent | UndecryptableEvent)[]> {
    const res = await this.deps.http.request<Json>("GET", p`/_matrix/client/v3/rooms/${roomId}/messages`, { query: { dir: "b", limit } });
    const chunk = (Array.isArray(res.chunk) ? res.chunk : []).filter(isObj).reverse();
    const enc = chunk.filter((e) => e.type === "m.room.encrypted");
    let results = new Map<string, RoomDecryptResult>();
    if (enc.length && this.deps.crypto.ready) {
      results = new Map((await this.deps.crypto.api.decryptRoomEvents(roomId, JSON.stringify(enc))).map((r) => [r.eventId, r]));
    }
    return chunk.map((ev) => this.deps.timeline.item(roomId, ev, typeof ev.event_id === "string" ? results.get(ev.event_id) : undefined, false));
  }
}
