/**
 * Sends file messages: uploads the file (encrypted, streamed through a 0600 temp file, in a room
 * that is or may be encrypted; in the clear otherwise) and sends the message that points to it.
 * @internal
 */
import { EncryptionDisabledError } from "../../protocol/errors.js";
import type { HttpClient } from "../../http/HttpClient.js";
import type { Room } from "../rooms/Room.js";
import type { RoomEncryptionTracker } from "../rooms/RoomEncryptionTracker.js";
import { fileContent, uploadEncrypted, uploadPlain, type AttachmentInput, type SendFileOptions } from "./media.js";

/** Upload-then-send of `m.file`, `m.image`, `m.video`, `m.audio`. @internal */
export class FileMessageSender {
  constructor(
    private readonly http: HttpClient,
    /** The client's encryption flag. */
    private readonly encryption: boolean,
    private readonly roomEncryption: RoomEncryptionTracker,
  ) {}

  /**
   * Upload `input` and send a `msgtype` message for it through the room (and so its send queue).
   * In an encrypted room the event carries `file`, never `url`. Resolves with the event ID.
   */
  async send(room: Room, msgtype: string, input: AttachmentInput, opts: SendFileOptions): Promise<string> {
    await this.roomEncryption.ensureFresh(room);
    if (room.encrypted) {
      if (!this.encryption) throw new EncryptionDisabledError(`Room ${room.roomId} is encrypted but encryption is not enabled in this client; refusing to upload in plaintext.`);
      const up = await uploadEncrypted(this.http, input);
      return room.sendMessage(fileContent(msgtype, input, opts, { size: up.size, file: up.file }));
    }
    const up = await uploadPlain(this.http, input, opts.mimetype ?? "application/octet-stream", opts.name);
    return room.sendMessage(fileContent(msgtype, input, opts, { size: up.size, mxc: up.mxc }));
  }
}
