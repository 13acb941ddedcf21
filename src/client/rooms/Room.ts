/**
 * A room as the application sees it (`Room`), and the narrow interface it drives the client
 * through (`RoomHost`), so that this file does not import the client.
 */
import { MEGOLM_ALGORITHM } from "../../protocol/api.js";
import type { RoomEvent, UndecryptableEvent } from "../events.js";
import type { AttachmentInput, SendFileOptions } from "../media/media.js";
import type { VerificationRequest } from "../verification/VerificationRequest.js";

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
  /** `undefined` until known: the room's encryption settings, or null when not encrypted. */
  encryption: RoomEncryptionSettings | null | undefined = undefined;
  /** Members seen in sync state: user ID → membership. */
  readonly members = new Map<string, string>();
  /** @internal members were loaded into the crypto worker in this process */
  membersLoaded = false;

  /** @internal */
  constructor(
    private readonly client: RoomHost,
    /** Room ID. */
    readonly roomId: string,
    verifyDevices: boolean,
  ) {
    this.verifyDevices = verifyDevices;
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

  /** Invite a user. */
  /**
   * Ask `userId` to verify with us interactively (SAS emoji/decimal) in this room (a DM with them;
   * encrypted like any message here). Resolves with the request in phase `requested`; see
   * {@link VerificationRequest}.
   */
  requestVerification(userId: string): Promise<VerificationRequest> {
    return this.client.requestRoomVerification(this.roomId, userId);
  }

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
  /** Joined members, from the server. */
  async getJoinedMembers(): Promise<string[]> {
    return this.client.getJoinedMembers(this.roomId);
  }
}
