/**
 * Takes a `/sync` response apart: its room sections and timelines, the crypto worker's
 * `receiveSyncChanges` input (serialized) and the encrypted timeline events reduced to what
 * decryption reads. Depends on nothing but the response, so a prefetched sync can be prepared
 * while the worker is still busy with the previous one.
 * @internal
 */
import type { EncryptedEventInput, Primitive, SyncChangesInput } from "../../protocol/api.js";
import { MatrixHttpError } from "../../protocol/errors.js";
import type { Logger } from "../../pure/logger.js";
import { isObj, type Json } from "../json.js";

/** `decryptSyncTimelines` input: per room, its encrypted timeline events. @internal */
export type DecryptPayload = { roomId: string; events: EncryptedEventInput[] }[];

/** A `/sync` response taken apart for processing (see {@link prepareSync}). @internal */
export interface SyncWork {
  res: unknown;
  nextBatch: string;
  join: Json;
  invite: Json;
  leave: Json;
  cryptoRooms: SyncChangesInput["rooms"];
  /** Joined rooms' timelines as received; `gapFrom` is the `prev_batch` of a limited timeline. */
  timelines: { roomId: string; events: Json[]; gapFrom: string | null }[];
  /** `receiveSyncChanges` input, serialized (null: not prepared). */
  cryptoInputJson: string | null;
  /** `decryptSyncTimelines` input (null: not prepared, or nothing to decrypt). */
  decrypt: DecryptPayload | null;
}

/** The events array of `section[key]` (`{ events: [...] }` in a sync response), or none. @internal */
export function syncEvents(section: unknown, key: string): unknown[] {
  if (!isObj(section) || !isObj(section[key])) return [];
  const evs = (section[key] as Json).events;
  return Array.isArray(evs) ? evs : [];
}

/** `v` when it is a JSON primitive, else null (what crosses to the worker is never nested). */
function primitive(v: unknown): Primitive {
  return v === null || v === undefined || typeof v === "string" || typeof v === "number" || typeof v === "boolean" ? v : null;
}

/** Items of `list` that can be serialized; the others are logged and dropped. */
function keepSerializable<T>(list: T[], log: Logger, what: string): T[] {
  return list.filter((item) => {
    try {
      JSON.stringify(item);
      return true;
    } catch {
      log.warn(`dropped a ${what} that cannot be serialized (reason: malformed)`);
      return false;
    }
  });
}

/**
 * Serialize for the worker. Deeply nested or cyclic input (a hostile server) cannot be
 * serialized: then `prune` drops the offending items (logged) and serialization is retried, so
 * one bad event never blocks the sync.
 */
function toWorkerJson(value: unknown, prune: () => void): string {
  try {
    return JSON.stringify(value);
  } catch {
    prune();
    return JSON.stringify(value);
  }
}

/**
 * Take a `/sync` response apart. With `withCrypto` (encryption set up), the worker's inputs are
 * prepared too: the serialized `receiveSyncChanges` input, and the events to decrypt unless a
 * timeline gap must be fetched first. Throws `MatrixHttpError` (M_BAD_JSON) without `next_batch`.
 * @internal
 */
export function prepareSync(res: unknown, withCrypto: boolean, log: Logger): SyncWork {
  if (!isObj(res) || typeof res.next_batch !== "string") throw new MatrixHttpError(200, "M_BAD_JSON", "sync response without next_batch");
  const nextBatch = res.next_batch;
  const roomsSection = isObj(res.rooms) ? res.rooms : {};
  const join = isObj(roomsSection.join) ? roomsSection.join : {};
  const invite = isObj(roomsSection.invite) ? roomsSection.invite : {};
  const leave = isObj(roomsSection.leave) ? roomsSection.leave : {};
  const stateOf = (section: unknown): unknown[] => [...syncEvents(section, "state"), ...syncEvents(section, "timeline").filter((e) => isObj(e) && typeof e.state_key === "string")];
  const cryptoRooms: SyncChangesInput["rooms"] = [];
  for (const [roomId, r] of Object.entries(join)) cryptoRooms.push({ roomId, membership: "join", stateEvents: stateOf(r) });
  for (const [roomId, r] of Object.entries(leave)) cryptoRooms.push({ roomId, membership: "leave", stateEvents: stateOf(r) });
  for (const [roomId, r] of Object.entries(invite)) cryptoRooms.push({ roomId, membership: "invite", stateEvents: syncEvents(r, "invite_state") });
  const timelines: SyncWork["timelines"] = [];
  for (const [roomId, r] of Object.entries(join)) {
    const tl = isObj(r) && isObj(r.timeline) ? r.timeline : {};
    timelines.push({ roomId, events: syncEvents(r, "timeline").filter(isObj), gapFrom: tl.limited === true && typeof tl.prev_batch === "string" ? tl.prev_batch : null });
  }
  const work: SyncWork = { res, nextBatch, join, invite, leave, cryptoRooms, timelines, cryptoInputJson: null, decrypt: null };
  if (withCrypto) {
    work.cryptoInputJson = cryptoInputJson(work, log);
    // With a gap to fetch first, the events to decrypt are known only after the fetch.
    if (!timelines.some((t) => t.gapFrom !== null)) work.decrypt = decryptPayload(timelines);
  }
  return work;
}

/** The worker's `receiveSyncChanges` input for a sync, serialized. @internal */
export function cryptoInputJson(work: SyncWork, log: Logger): string {
  const res = work.res as Json;
  const devLists = isObj(res.device_lists) ? res.device_lists : {};
  const input: SyncChangesInput = {
    nextBatch: work.nextBatch,
    toDevice: syncEvents(res, "to_device"),
    deviceLists: { changed: devLists.changed, left: devLists.left },
    rooms: work.cryptoRooms,
  };
  if (isObj(res.device_one_time_keys_count)) input.oneTimeKeyCounts = res.device_one_time_keys_count;
  const fb = res.device_unused_fallback_key_types ?? res["org.matrix.msc2732.device_unused_fallback_key_types"];
  if (fb !== undefined) input.unusedFallbackKeyTypes = fb;
  return toWorkerJson(input, () => {
    input.toDevice = keepSerializable(input.toDevice, log, "to-device event");
    for (const r of input.rooms) r.stateEvents = keepSerializable(r.stateEvents, log, "state event");
  });
}

/** The encrypted timeline events of a sync, reduced for `decryptSyncTimelines`; null when there are none. @internal */
export function decryptPayload(timelines: { roomId: string; events: Json[] }[]): DecryptPayload | null {
  const payload: DecryptPayload = [];
  for (const t of timelines) {
    const events: EncryptedEventInput[] = [];
    for (const e of t.events) {
      if (e.type !== "m.room.encrypted") continue;
      const c = e.content;
      events.push({
        type: "m.room.encrypted",
        event_id: primitive(e.event_id),
        sender: primitive(e.sender),
        origin_server_ts: primitive(e.origin_server_ts),
        content: isObj(c) ? { algorithm: primitive(c.algorithm), ciphertext: primitive(c.ciphertext), session_id: primitive(c.session_id), sender_key: primitive(c.sender_key), device_id: primitive(c.device_id) } : null,
      });
    }
    if (events.length) payload.push({ roomId: t.roomId, events });
  }
  return payload.length ? payload : null;
}
