/**
 * Knows whether a room is encrypted: records it on the main thread and in the worker, and asks the
 * worker, then the server, when it is not known yet. A room once encrypted stays encrypted.
 * @internal
 */
import { MatrixHttpError } from "../../protocol/errors.js";
import { p, type HttpClient } from "../../http/HttpClient.js";
import type { CryptoAccess } from "../CryptoAccess.js";
import type { Json } from "../json.js";
import type { Room, RoomEncryptionSettings } from "./Room.js";

/** A room's encryption state, main thread and worker. @internal */
export class RoomEncryptionTracker {
  constructor(
    private readonly http: HttpClient,
    private readonly crypto: CryptoAccess,
  ) {}

  /** Record that a room is encrypted (main thread, and the worker once it is set up). */
  async note(room: Room, encryption: RoomEncryptionSettings): Promise<void> {
    if (!room.encrypted) room.encryption = encryption;
    if (this.crypto.ready) await this.crypto.api.setRoomEncryption(room.roomId, room.encryption as Json);
  }

  /** Make sure we know whether a room is encrypted (asks the worker, then the server). */
  async refresh(room: Room): Promise<void> {
    if (room.encrypted) return;
    if (this.crypto.ready) {
      const info = await this.crypto.api.getRoomInfo(room.roomId);
      if (info.encryption) {
        room.encryption = info.encryption as RoomEncryptionSettings;
        return;
      }
    }
    try {
      const content = await this.http.request<Json>("GET", p`/_matrix/client/v3/rooms/${room.roomId}/state/m.room.encryption/`);
      if (typeof content.algorithm === "string") await this.note(room, content as RoomEncryptionSettings);
      else room.encryption = null;
    } catch (err) {
      if (err instanceof MatrixHttpError && err.status === 404) room.encryption = null;
      else throw err;
    }
  }
}
