/**
 * The per-room send queue: one room's sends run one after another in call order, each doing
 * members → device keys (keys/query) → Olm sessions (keys/claim) → share the room key (to-device)
 * → encrypt → PUT (DESIGN §3, first rule); different rooms run concurrently. Like matrix-js-sdk's
 * `RoomEncryptor`, whose promise chain per room plays the part of the lock here.
 * @internal
 */
import { MEGOLM_ALGORITHM, type DeviceInfo, type OutgoingRequest } from "../../protocol/api.js";
import { ClientClosedError, EncryptionDisabledError, UnknownDevicesError, UnsupportedAlgorithmError } from "../../protocol/errors.js";
import { makeTxnId, p, type HttpClient } from "../../http/HttpClient.js";
import { KeyedMutex } from "../../util/KeyedMutex.js";
import type { CryptoAccess } from "../CryptoAccess.js";
import { Device, type DeviceOwner } from "../Device.js";
import { isObj, type Json } from "../json.js";
import type { Room } from "../rooms/Room.js";
import type { RoomEncryptionTracker } from "../rooms/RoomEncryptionTracker.js";
import type { KeyClaimManager } from "./KeyClaimManager.js";
import type { OutgoingRequestSender } from "./OutgoingRequestSender.js";

/** What the send queue needs. @internal */
export interface RoomSendQueueDeps {
  http: HttpClient;
  crypto: CryptoAccess;
  /** The client's encryption flag. */
  encryption: boolean;
  isClosed: () => boolean;
  roomEncryption: RoomEncryptionTracker;
  keyClaims: KeyClaimManager;
  sender: OutgoingRequestSender;
  /** Owner of the `Device` objects an `UnknownDevicesError` carries. */
  devices: DeviceOwner;
}

/**
 * Rounds of room-key sharing per send: the engine hands out again the key shares whose answers it
 * did not get (a worker restarted while they were in flight forgets them), so a send shares until
 * the engine has nothing left to share.
 */
const MAX_SHARE_ROUNDS = 3;

/** Per-room FIFO of event sends. @internal */
export class RoomSendQueue {
  /** The per-room lock (FIFO, idle rooms dropped). */
  private readonly roomLocks = new KeyedMutex();

  constructor(private readonly deps: RoomSendQueueDeps) {}

  /**
   * Send an event, encrypting in encrypted rooms (never in plaintext to a room that is or may be
   * encrypted: before a plaintext send, the room's state is checked with the server unless a sync
   * since the last check says it is still unencrypted, see `RoomEncryptionTracker`). With
   * encryption off, an encrypted room rejects with `EncryptionDisabledError`. Claim → share →
   * encrypt → send run under the room's FIFO lock, so concurrent sends share the key once, keep
   * their order and make one state check. Resolves with the event ID.
   */
  async send(room: Room, type: string, content: Record<string, unknown>): Promise<string> {
    const { http, encryption, roomEncryption } = this.deps;
    if (this.deps.isClosed()) throw new ClientClosedError();
    return this.roomLocks.run(room.roomId, async () => {
      // Never in plaintext on a stale "not encrypted" (the room may have turned encrypted since).
      await roomEncryption.ensureFresh(room);
      if (!room.encrypted) {
        try {
          const res = await http.request<Json>("PUT", p`/_matrix/client/v3/rooms/${room.roomId}/send/${type}/${makeTxnId()}`, { body: content });
          return typeof res.event_id === "string" ? res.event_id : "";
        } catch (err) {
          roomEncryption.invalidate(room);
          throw err;
        }
      }
      if (!encryption) throw new EncryptionDisabledError(`Room ${room.roomId} is encrypted but encryption is not enabled in this client; refusing to send in plaintext.`);
      if (room.encryption!.algorithm !== MEGOLM_ALGORITHM) throw new UnsupportedAlgorithmError(room.roomId, room.encryption!.algorithm);
      const encrypted = await this.encryptForRoom(room, type, content);
      const res = await http.request<Json>("PUT", p`/_matrix/client/v3/rooms/${room.roomId}/send/m.room.encrypted/${makeTxnId()}`, { body: encrypted });
      return typeof res.event_id === "string" ? res.event_id : "";
    });
  }

  /**
   * Members → sessions → share → encrypt, for one event. If sharing fails, the room's outbound
   * session is discarded so the next send starts clean. Sharing is repeated until the engine has
   * no share left to send: a share sent while the worker restarted is unknown to the new worker,
   * which shares that key again rather than leaving it pending.
   *
   * Locking rule: the caller holds the room's lock.
   */
  private async encryptForRoom(room: Room, type: string, content: Record<string, unknown>): Promise<Json> {
    const { http, keyClaims, sender } = this.deps;
    const crypto = this.deps.crypto.api;
    if (!room.membersLoaded) {
      const res = await http.request<Json>("GET", p`/_matrix/client/v3/rooms/${room.roomId}/members`);
      const members = (Array.isArray(res.chunk) ? res.chunk : [])
        .filter(isObj)
        .filter((e) => typeof e.state_key === "string" && isObj(e.content) && typeof e.content.membership === "string")
        .map((e) => ({ userId: e.state_key as string, membership: (e.content as Json).membership as string }));
      await crypto.setRoomMembers(room.roomId, members);
      for (const m of members) room.members.set(m.userId, m.membership);
      room.membersLoaded = true;
    }
    // Fast path, one worker call: the room's key already reached every current recipient.
    let fast: string | null;
    try {
      fast = await crypto.encryptRoomEventIfReady(room.roomId, type, JSON.stringify(content), room.verifyDevices, room.onlyCrossSignedDevices);
    } catch (err) {
      if (err instanceof UnknownDevicesError) throw this.withDeviceObjects(err);
      throw err;
    }
    if (fast !== null) return withClearRelation(JSON.parse(fast) as Json, content);
    // keys/query for members' devices, then keys/claim for missing Olm sessions (the claim, and
    // the question that leads to it, single flight across rooms).
    try {
      for (let i = 0; i < 4; i++) {
        const step = await keyClaims.run(
          () => crypto.prepareRoomKeyShare(room.roomId, room.verifyDevices, room.onlyCrossSignedDevices),
          (s) => (!s.ready && s.request.kind === "keys_claim" ? s.request : null),
        );
        if (step.ready) break;
        if (step.request.kind !== "keys_claim") await sender.send(step.request);
      }
    } catch (err) {
      if (err instanceof UnknownDevicesError) throw this.withDeviceObjects(err);
      throw err;
    }
    for (let round = 0; round < MAX_SHARE_ROUNDS; round++) {
      let shares: OutgoingRequest[];
      try {
        shares = await crypto.shareRoomKey(room.roomId, room.verifyDevices, room.onlyCrossSignedDevices);
      } catch (err) {
        if (err instanceof UnknownDevicesError) throw this.withDeviceObjects(err);
        throw err;
      }
      if (!shares.length) break;
      try {
        await Promise.all(shares.map((r) => sender.send(r)));
      } catch (err) {
        await crypto.discardRoomKey(room.roomId);
        throw err;
      }
    }
    return withClearRelation(JSON.parse(await crypto.encryptRoomEvent(room.roomId, type, JSON.stringify(content))) as Json, content);
  }

  /** The error with `Device` objects in place of the worker's plain device data. */
  private withDeviceObjects(err: UnknownDevicesError): UnknownDevicesError {
    const userDevices: Record<string, Device[]> = {};
    for (const [userId, list] of Object.entries(err.userDevices)) {
      userDevices[userId] = (list as DeviceInfo[]).map((d) => new Device(d, this.deps.devices));
    }
    err.userDevices = userDevices;
    return err;
  }
}

/**
 * The encrypted content with the event's relation in the clear (spec: end-to-end encryption,
 * m.megolm.v1.aes-sha2), so the server can aggregate replies, edits, reactions, threads and
 * verification flows.
 */
function withClearRelation(encrypted: Json, content: Record<string, unknown>): Json {
  if (isObj(content["m.relates_to"])) encrypted["m.relates_to"] = content["m.relates_to"];
  return encrypted;
}
