import { MEGOLM_ALGORITHM } from "../protocol/api.js";
import type { MatrixClient } from "./MatrixClient.js";
import type { AttachmentInput, SendFileOptions } from "./media.js";

/** Content of an `m.room.encryption` state event. */
export interface RoomEncryptionSettings {
  algorithm: string;
  rotation_period_ms?: number;
  rotation_period_msgs?: number;
  [k: string]: unknown;
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
    private readonly client: MatrixClient,
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
  invite(userId: string): Promise<void> {
    return this.client.inviteToRoom(this.roomId, userId);
  }
  /** Leave the room. */
  leave(): Promise<void> {
    return this.client.leaveRoom(this.roomId);
  }
  /** The last `limit` events from the server, oldest first, decrypted where possible. */
  getHistory(limit = 50): ReturnType<MatrixClient["fetchRoomHistory"]> {
    return this.client.fetchRoomHistory(this.roomId, limit);
  }
  /** Joined members, from the server. */
  async getJoinedMembers(): Promise<string[]> {
    return this.client.getJoinedMembers(this.roomId);
  }
}
