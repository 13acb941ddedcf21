/**
 * A room as the application sees it (`Room`), and the narrow interface it drives the client
 * through (`RoomHost`), so that this file does not import the client.
 */
import { MEGOLM_ALGORITHM } from "../../protocol/api.js";
import type { RoomEvent, UndecryptableEvent } from "../events.js";
import type { AttachmentInput, SendFileOptions } from "../media/media.js";
import type { VerificationRequest } from "../verification/VerificationRequest.js";
import { editContent, reactionContent, replyContent, threadContent, type ReplyTarget } from "./RoomMessages.js";
import { RoomStateView, type PowerLevels } from "./RoomStateView.js";

/** Options of `Room.getMessages`: where a page of history starts, its direction and size. */
export interface MessagesOptions {
  /** Pagination token to start from (e.g. the one `room.timelineGap` gives, or a page's `end`); default: the room's latest event. */
  from?: string;
  /** `"b"` (default): towards older events; `"f"`: towards newer ones. */
  dir?: "b" | "f";
  /** Most events in the page (default 50). */
  limit?: number;
}

/** A page of room history (`/messages`). */
export interface MessagesPage {
  /** The page's events in timeline order (oldest first), decrypted where possible. */
  events: (RoomEvent | UndecryptableEvent)[];
  /** The token the page started from. */
  start: string;
  /** The token of the next page in the same direction; undefined when there is no more history. */
  end?: string;
}

/** Content of an `m.room.encryption` state event. */
export interface RoomEncryptionSettings {
  algorithm: string;
  rotation_period_ms?: number;
  rotation_period_msgs?: number;
  [k: string]: unknown;
}

/**
 * What a {@link Room} needs from its client (implemented by `MatrixClient`, which routes each call
 * to the component doing that job). Declared here so that `Room` does not import the client.
 * @internal
 */
export interface RoomHost {
  /** Send an event through the room's send queue (encrypted in encrypted rooms). */
  sendRoomEvent(room: Room, type: string, content: Record<string, unknown>): Promise<string>;
  /** Upload a file (encrypted in encrypted rooms) and send its message. */
  sendFileMessage(room: Room, msgtype: string, input: AttachmentInput, opts: SendFileOptions): Promise<string>;
  /** Make sure the room's encryption state is known (worker, then server). */
  refreshRoomEncryption(room: Room): Promise<void>;
  /** Record that the room is encrypted (main thread and worker). */
  noteRoomEncryption(room: Room, encryption: RoomEncryptionSettings): Promise<void>;
  /** Send a state event; resolves with its event ID. */
  sendStateEvent(roomId: string, type: string, stateKey: string, content: Record<string, unknown>): Promise<string>;
  /** Invite a user. */
  inviteToRoom(roomId: string, userId: string): Promise<void>;
  /** Leave the room. */
  leaveRoom(roomId: string): Promise<void>;
  /** The last `limit` events from the server, oldest first, decrypted where possible. */
  fetchRoomHistory(roomId: string, limit?: number): Promise<(RoomEvent | UndecryptableEvent)[]>;
  /** Joined members, from the server. */
  getJoinedMembers(roomId: string): Promise<string[]>;
  /** Send an in-room verification request to `userId`. */
  requestRoomVerification(roomId: string, userId: string): Promise<VerificationRequest>;
  /** One page of history from the server, decrypted where possible. */
  getRoomMessages(roomId: string, opts: MessagesOptions): Promise<MessagesPage>;
  /** A state event's content (with `{ event: true }`: the whole event) from the server, or null. */
  getRoomState(roomId: string, type: string, stateKey: string, opts?: { event?: boolean }): Promise<Record<string, unknown> | null>;
  /** Redact an event; resolves with the redaction's event ID. */
  redactEvent(roomId: string, eventId: string, reason?: string): Promise<string>;
  /** Typing notification. */
  setTyping(roomId: string, typing: boolean, timeoutMs?: number): Promise<void>;
  /** Read receipt. */
  sendReadReceipt(roomId: string, eventId: string, opts?: { private?: boolean }): Promise<void>;
}

/** A `Map` that reports every change of its contents (a room's members: see `Room.stateVersion`). @internal */
class StateMap extends Map<string, string> {
  constructor(private readonly changed: () => void) {
    super();
  }
  override set(key: string, value: string): this {
    if (super.get(key) !== value || !super.has(key)) this.changed();
    return super.set(key, value);
  }
  override delete(key: string): boolean {
    const had = super.delete(key);
    if (had) this.changed();
    return had;
  }
  override clear(): void {
    if (this.size) this.changed();
    super.clear();
  }
}

/**
 * A room the client knows. Sending methods encrypt automatically in encrypted rooms; a message is
 * never sent in plaintext to a room that is (or may be) encrypted.
 */
export class Room {
  /** Per-room device verification; defaults to the client's `verifyDevices`. */
  verifyDevices: boolean;
  /** Share keys only with devices cross-signed by their owner; defaults to the client's option. */
  onlyCrossSignedDevices = false;
  #encryption: RoomEncryptionSettings | null | undefined = undefined;
  /** Members seen in sync state: user ID → membership. */
  readonly members: Map<string, string> = new StateMap(() => this.stateVersion++);
  /**
   * Bumped whenever {@link Room.members} or {@link Room.encryption} change, so that a sync saves
   * only the rooms whose state it changed (`RoomRegistry.persisted`).
   * @internal
   */
  stateVersion = 0;
  /** @internal members were loaded into the crypto worker in this process */
  membersLoaded = false;
  private readonly stateView: RoomStateView;

  /** @internal */
  constructor(
    private readonly client: RoomHost,
    /** Room ID. */
    readonly roomId: string,
    verifyDevices: boolean,
  ) {
    this.verifyDevices = verifyDevices;
    this.stateView = new RoomStateView((type, stateKey, event) => client.getRoomState(roomId, type, stateKey, { event: event === true }));
  }

  /** `undefined` until known: the room's encryption settings, or null when not encrypted. */
  get encryption(): RoomEncryptionSettings | null | undefined {
    return this.#encryption;
  }
  set encryption(value: RoomEncryptionSettings | null | undefined) {
    if (value !== this.#encryption) this.stateVersion++;
    this.#encryption = value;
  }

  /** Whether the room is known to be encrypted. */
  get encrypted(): boolean {
    return this.encryption != null;
  }

  /** Send `m.text`. */
  sendText(text: string): Promise<string> {
    return this.sendMessage({ msgtype: "m.text", body: text });
  }
  /** Send `m.notice`. */
  sendNotice(text: string): Promise<string> {
    return this.sendMessage({ msgtype: "m.notice", body: text });
  }
  /** Send `m.emote`. */
  sendEmote(text: string): Promise<string> {
    return this.sendMessage({ msgtype: "m.emote", body: text });
  }
  /** Send HTML with a plain-text fallback body. */
  sendHtml(html: string, body?: string, msgtype = "m.text"): Promise<string> {
    return this.sendMessage({ msgtype, body: body ?? html.replace(/<[^>]*>/g, ""), format: "org.matrix.custom.html", formatted_body: html });
  }
  /** Send any `m.room.message` content (images, files, locations…); encrypted in encrypted rooms. */
  sendMessage(content: Record<string, unknown>): Promise<string> {
    return this.sendEvent("m.room.message", content);
  }
  /** Upload and send a file (`m.file`): path, bytes or stream. Encrypted in encrypted rooms (`file`, never `url`). */
  sendFile(input: AttachmentInput, opts: SendFileOptions = {}): Promise<string> {
    return this.client.sendFileMessage(this, "m.file", input, opts);
  }
  /** Upload and send an image (`m.image`); encrypted in encrypted rooms. */
  sendImage(input: AttachmentInput, opts: SendFileOptions = {}): Promise<string> {
    return this.client.sendFileMessage(this, "m.image", input, opts);
  }
  /** Upload and send a video (`m.video`); encrypted in encrypted rooms. */
  sendVideo(input: AttachmentInput, opts: SendFileOptions = {}): Promise<string> {
    return this.client.sendFileMessage(this, "m.video", input, opts);
  }
  /** Upload and send audio (`m.audio`); encrypted in encrypted rooms. */
  sendAudio(input: AttachmentInput, opts: SendFileOptions = {}): Promise<string> {
    return this.client.sendFileMessage(this, "m.audio", input, opts);
  }
  /** Send any message event; encrypted in encrypted rooms. Resolves with the event ID. */
  sendEvent(type: string, content: Record<string, unknown>): Promise<string> {
    return this.client.sendRoomEvent(this, type, content);
  }

  // Relations (rooms/RoomMessages): in encrypted rooms `m.relates_to` stays in the clear.

  /**
   * Reply to `to` with `m.text`: a rich reply (`m.relates_to.m.in_reply_to`, the quoted fallback
   * body and `<mx-reply>` block, `m.mentions` naming `to.sender`). A reply to a thread message
   * stays in the thread.
   */
  replyText(to: ReplyTarget, text: string): Promise<string> {
    return this.sendReply(to, { msgtype: "m.text", body: text });
  }
  /** Reply to `to` with `m.notice` (see {@link Room.replyText}). */
  replyNotice(to: ReplyTarget, text: string): Promise<string> {
    return this.sendReply(to, { msgtype: "m.notice", body: text });
  }
  /** Reply to `to` with HTML and a plain-text body (default: the HTML without tags; see {@link Room.replyText}). */
  replyHtml(to: ReplyTarget, html: string, body?: string, msgtype = "m.text"): Promise<string> {
    return this.sendReply(to, { msgtype, body: body ?? html.replace(/<[^>]*>/g, ""), format: "org.matrix.custom.html", formatted_body: html });
  }
  /** Reply to `to` with any message content (gets the fallback, `m.mentions` and the relation). */
  sendReply(to: ReplyTarget, content: Record<string, unknown>): Promise<string> {
    return this.sendMessage(replyContent(to, content));
  }
  /** React to an event (`m.reaction`, `m.annotation` with `key`, e.g. "👍"). Resolves with the reaction's event ID. */
  react(eventId: string, key: string): Promise<string> {
    return this.sendEvent("m.reaction", reactionContent(eventId, key));
  }
  /**
   * Edit one of our messages (`m.replace`): `newContent` is the complete new content, e.g.
   * `{ msgtype: "m.text", body: "fixed" }`. Clients without edits show `* ` + the new body.
   */
  edit(eventId: string, newContent: Record<string, unknown>): Promise<string> {
    return this.sendMessage(editContent(eventId, newContent));
  }
  /**
   * Send a message content in the thread of `rootEventId` (`m.thread`); `inReplyTo` is the latest
   * thread event you saw (the reply fallback for clients without threads; default the root).
   */
  sendThreadMessage(rootEventId: string, content: Record<string, unknown>, inReplyTo?: string): Promise<string> {
    return this.sendMessage(threadContent(rootEventId, content, inReplyTo));
  }
  /** Send `m.text` in the thread of `rootEventId` (see {@link Room.sendThreadMessage}). */
  sendThreadText(rootEventId: string, text: string, inReplyTo?: string): Promise<string> {
    return this.sendThreadMessage(rootEventId, { msgtype: "m.text", body: text }, inReplyTo);
  }
  /** Redact an event (ours, or anyone's with the power to); resolves with the redaction's event ID. */
  redact(eventId: string, reason?: string): Promise<string> {
    return this.client.redactEvent(this.roomId, eventId, reason);
  }
  /** Show that we are typing (for `timeoutMs`, default 30 s), or stop (`false`). */
  setTyping(typing: boolean, timeoutMs = 30_000): Promise<void> {
    return this.client.setTyping(this.roomId, typing, timeoutMs);
  }
  /** Mark the room read up to `eventId` (`m.read`; `{ private: true }`: `m.read.private`, not shown to others). */
  sendReadReceipt(eventId: string, opts: { private?: boolean } = {}): Promise<void> {
    return this.client.sendReadReceipt(this.roomId, eventId, opts);
  }

  // State (rooms/RoomStateView), read from the server.

  /** A state event's content (`stateKey` default ""), or null when the room has none. */
  getState(type: string, stateKey = ""): Promise<Record<string, unknown> | null> {
    return this.stateView.getState(type, stateKey);
  }
  /** The room's name (`m.room.name`), or null. */
  getName(): Promise<string | null> {
    return this.stateView.getName();
  }
  /** The room's topic (`m.room.topic`), or null. */
  getTopic(): Promise<string | null> {
    return this.stateView.getTopic();
  }
  /** The room's power levels (`m.room.power_levels` with the spec's defaults filled in). */
  getPowerLevels(): Promise<PowerLevels> {
    return this.stateView.getPowerLevels();
  }
  /** Whether `userId` may send `eventType` here under the current power levels (`{ state: true }` for a state event). */
  userCanSend(userId: string, eventType: string, opts: { state?: boolean } = {}): Promise<boolean> {
    return this.stateView.userCanSend(userId, eventType, opts);
  }
  /** Set the room's name. */
  setName(name: string): Promise<string> {
    return this.client.sendStateEvent(this.roomId, "m.room.name", "", { name });
  }
  /** Set the room's topic. */
  setTopic(topic: string): Promise<string> {
    return this.client.sendStateEvent(this.roomId, "m.room.topic", "", { topic });
  }

  /**
   * Turn on encryption (Megolm). Resolves true when the room is encrypted afterwards. Once enabled,
   * encryption cannot be disabled; calling it on an encrypted room changes nothing.
   */
  async enableEncryption(opts: { rotationPeriodMs?: number; rotationPeriodMsgs?: number } = {}): Promise<boolean> {
    await this.client.refreshRoomEncryption(this);
    if (this.encrypted) return true;
    const content: RoomEncryptionSettings = { algorithm: MEGOLM_ALGORITHM };
    if (opts.rotationPeriodMs) content.rotation_period_ms = opts.rotationPeriodMs;
    if (opts.rotationPeriodMsgs) content.rotation_period_msgs = opts.rotationPeriodMsgs;
    await this.client.sendStateEvent(this.roomId, "m.room.encryption", "", content);
    await this.client.noteRoomEncryption(this, content);
    return true;
  }

  /**
   * Ask `userId` to verify with us interactively (SAS emoji/decimal) in this room (a DM with them;
   * encrypted like any message here). Resolves with the request in phase `requested`; see
   * {@link VerificationRequest}.
   */
  requestVerification(userId: string): Promise<VerificationRequest> {
    return this.client.requestRoomVerification(this.roomId, userId);
  }

  /** Invite a user. */
  invite(userId: string): Promise<void> {
    return this.client.inviteToRoom(this.roomId, userId);
  }
  /** Leave the room. */
  leave(): Promise<void> {
    return this.client.leaveRoom(this.roomId);
  }
  /** The last `limit` events from the server, oldest first, decrypted where possible. */
  getHistory(limit = 50): Promise<(RoomEvent | UndecryptableEvent)[]> {
    return this.client.fetchRoomHistory(this.roomId, limit);
  }
  /**
   * One page of history from a pagination token (`from`: e.g. the token of `room.timelineGap`,
   * or the `end` of the previous page; default the latest event), in timeline order, decrypted
   * where possible. Nothing is emitted. Page on with `{ from: page.end }` until `end` is undefined.
   */
  getMessages(opts: MessagesOptions = {}): Promise<MessagesPage> {
    return this.client.getRoomMessages(this.roomId, opts);
  }
  /** Joined members, from the server. */
  async getJoinedMembers(): Promise<string[]> {
    return this.client.getJoinedMembers(this.roomId);
  }
}
