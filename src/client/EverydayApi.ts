/**
 * The room and account endpoints of the public facade (membership, state, profile, presence, account data, aliases, single events,
 * redactions, typing, receipts, history pages, room state, and the escape hatch for any endpoint),
 * routed to `account/AccountEndpoints` and `rooms/RoomOperations`. `MatrixClient` extends it, so
 * these methods are the client's; kept apart so the facade stays one screenful per concern.
 */
import { createWriteStream } from "node:fs";
import { EventEmitter } from "eventemitter3";
import { makeTxnId, p, type HttpClient, type RequestOptions } from "../http/HttpClient.js";
import { downloadAttachment, downloadToBuffer, uploadPlain, type AttachmentInput } from "./media/media.js";
import type { AccountEndpoints, Presence, PresenceState, UserProfile } from "./account/AccountEndpoints.js";
import type { MatrixClientEvents, RoomEvent, UndecryptableEvent } from "./events.js";
import type { MessagesOptions, MessagesPage } from "./rooms/Room.js";
import type { RoomOperations } from "./rooms/RoomOperations.js";

/** The client's everyday endpoints; see `MatrixClient`, which is the class to use. */
export abstract class EverydayApi extends EventEmitter<MatrixClientEvents> {
  /** @internal */
  protected abstract readonly http: HttpClient;
  /** @internal */
  protected abstract readonly roomOps: RoomOperations;
  /** @internal */
  protected abstract readonly accountEndpoints: AccountEndpoints;

  /**
   * Call any client-server endpoint with the client's access token, retries (network errors,
   * 429 with `retry_after_ms`, 5xx) and logging: the escape hatch for what the SDK does not wrap.
   * `path` is the encoded path from the server root (build it with the exported `p` tag, which
   * encodes each value), `opts` as {@link RequestOptions} (`query`, `body`, `retry`, `timeoutMs`…).
   * Resolves with the parsed JSON answer; throws `MatrixHttpError` for a non-2xx answer.
   * Nothing sent this way is encrypted: use `room.sendEvent` for room events.
   *
   * @example
   * const { joined_rooms } = await client.request<{ joined_rooms: string[] }>("GET", "/_matrix/client/v3/joined_rooms");
   */
  request<T = Record<string, unknown>>(method: string, path: string, opts: RequestOptions = {}): Promise<T> {
    return this.http.request<T>(method, path, opts);
  }

  /**
   * Fetch the last `limit` events of a room from the server (`/messages`), oldest first, decrypted
   * where possible. Nothing is emitted. For older pages use `Room.getMessages`.
   */
  fetchRoomHistory(roomId: string, limit = 50): Promise<(RoomEvent | UndecryptableEvent)[]> {
    return this.roomOps.fetchHistory(roomId, limit);
  }
  /** @internal (use `Room.invite`) */
  inviteToRoom(roomId: string, userId: string): Promise<void> {
    return this.roomOps.invite(roomId, userId);
  }
  /** @internal (use `Room.leave`) */
  leaveRoom(roomId: string): Promise<void> {
    return this.roomOps.leave(roomId);
  }
  /** Kick a user. */
  kick(roomId: string, userId: string, reason?: string): Promise<void> {
    return this.roomOps.kick(roomId, userId, reason);
  }
  /** Ban a user. */
  ban(roomId: string, userId: string, reason?: string): Promise<void> {
    return this.roomOps.ban(roomId, userId, reason);
  }
  /** @internal (use `Room.getJoinedMembers`) */
  getJoinedMembers(roomId: string): Promise<string[]> {
    return this.roomOps.getJoinedMembers(roomId);
  }
  /** Send a state event; resolves with the event ID. */
  sendStateEvent(roomId: string, type: string, stateKey: string, content: Record<string, unknown>): Promise<string> {
    return this.roomOps.sendStateEvent(roomId, type, stateKey, content);
  }

  /** A user's display name and avatar (`null` when unset). */
  getUserProfile(userId: string): Promise<UserProfile> {
    return this.accountEndpoints.getUserProfile(userId);
  }
  /** Set our display name. */
  setDisplayName(name: string): Promise<void> {
    return this.accountEndpoints.setDisplayName(name);
  }
  /** Set our avatar (an `mxc://` URI, e.g. from `uploadContent`). */
  setAvatarUrl(mxc: string): Promise<void> {
    return this.accountEndpoints.setAvatarUrl(mxc);
  }
  /** Set our presence (`online`, `unavailable`, `offline`), with an optional status message. */
  setPresence(presence: PresenceState, statusMsg?: string): Promise<void> {
    return this.accountEndpoints.setPresence(presence, statusMsg);
  }
  /** A user's presence. */
  getPresence(userId: string): Promise<Presence> {
    return this.accountEndpoints.getPresence(userId);
  }
  /** Our global account data of `type`, or null when unset. */
  getAccountData(type: string): Promise<Record<string, unknown> | null> {
    return this.accountEndpoints.getAccountData(type);
  }
  /** Set our global account data of `type` (kept in the clear on the server). */
  setAccountData(type: string, content: Record<string, unknown>): Promise<void> {
    return this.accountEndpoints.setAccountData(type, content);
  }
  /** Our account data of `type` for one room, or null when unset. */
  getRoomAccountData(roomId: string, type: string): Promise<Record<string, unknown> | null> {
    return this.accountEndpoints.getAccountData(type, roomId);
  }
  /** Set our account data of `type` for one room. */
  setRoomAccountData(roomId: string, type: string, content: Record<string, unknown>): Promise<void> {
    return this.accountEndpoints.setAccountData(type, content, roomId);
  }
  /** The room an alias (`#room:example.org`) points to, with servers to join through; null when unknown. */
  resolveRoomAlias(alias: string): Promise<{ roomId: string; servers: string[] } | null> {
    return this.accountEndpoints.resolveRoomAlias(alias);
  }

  /**
   * One event from the server, decrypted where possible (a redacted event comes back with
   * `redactedBecause`; one we cannot decrypt as an `UndecryptableEvent`). Nothing is emitted.
   */
  getEvent(roomId: string, eventId: string): Promise<RoomEvent | UndecryptableEvent> {
    return this.roomOps.getEvent(roomId, eventId);
  }
  /**
   * Redact an event (`/redact`; the redaction itself is not encrypted, as the spec has it). Resolves
   * with the redaction's event ID. Afterwards the event comes out with `redactedBecause`.
   */
  redactEvent(roomId: string, eventId: string, reason?: string): Promise<string> {
    return this.roomOps.redact(roomId, eventId, reason);
  }
  /** Show that we are typing in a room (for `timeoutMs`, default 30 s), or stop (`false`). */
  setTyping(roomId: string, typing: boolean, timeoutMs = 30_000): Promise<void> {
    return this.roomOps.setTyping(roomId, typing, timeoutMs);
  }
  /** Send a read receipt for an event (`m.read`; `{ private: true }`: `m.read.private`). */
  sendReadReceipt(roomId: string, eventId: string, opts: { private?: boolean } = {}): Promise<void> {
    return this.roomOps.sendReadReceipt(roomId, eventId, opts.private ? "m.read.private" : "m.read");
  }
  /** One page of a room's history from a pagination token (see `Room.getMessages`). */
  getRoomMessages(roomId: string, opts: MessagesOptions = {}): Promise<MessagesPage> {
    return this.roomOps.getMessages(roomId, opts);
  }
  /**
   * A state event's content from the server (with `{ event: true }`: the whole event, with its
   * sender), or null when the room has none (see `Room.getState`).
   */
  getRoomState(roomId: string, type: string, stateKey = "", opts: { event?: boolean } = {}): Promise<Record<string, unknown> | null> {
    return this.roomOps.getState(roomId, type, stateKey, opts.event === true);
  }

  // ---------------------------------------------------------------------------------------------
  // media (media/)

  /** Upload content in the clear (e.g. an avatar); returns the `mxc://` URI. */
  async uploadContent(input: AttachmentInput, opts: { contentType?: string; filename?: string } = {}): Promise<string> {
    return (await uploadPlain(this.http, input, opts.contentType ?? "application/octet-stream", opts.filename)).mxc;
  }

  /**
   * Download the attachment of a message content (`content.file` → decrypted after its SHA-256 is
   * checked; `content.url` → as is). Authenticated media first, legacy endpoints as a fallback.
   */
  downloadAttachment(content: Record<string, unknown>): Promise<Uint8Array> {
    return downloadToBuffer(this.http, content);
  }

  /** Like {@link EverydayApi.downloadAttachment}, streaming into a file (constant memory). */
  async downloadAttachmentToFile(content: Record<string, unknown>, path: string): Promise<void> {
    await downloadAttachment(this.http, content, createWriteStream(path, { mode: 0o600 }));
  }

  /** Send a to-device message in the clear (e.g. custom protocols). */
  async sendToDevice(eventType: string, messages: Record<string, Record<string, Record<string, unknown>>>): Promise<void> {
    await this.http.request("PUT", p`/_matrix/client/v3/sendToDevice/${eventType}/${makeTxnId()}`, { body: { messages } });
  }
}
