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
import { isRedacted } from "../timeline.js";

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

/** Whether `v` survives `JSON.stringify` (values nested deeper than the stack allows do not). */
function serializable(v: unknown): boolean {
  try {
    JSON.stringify(v);
    return true;
  } catch {
    return false;
  }
}

/**
 * `value` without what cannot be serialised: returned as is when it can be; otherwise its items
 * (array) or members (object) that cannot are dropped, each logged under its path in `part`; a
 * primitive that cannot (none from JSON.parse) becomes undefined. One level is enough: an item
 * that serialises is kept whole.
 */
function dropUnserializable<T>(value: T, part: string, nextBatch: string, log: Logger): T {
  if (serializable(value)) return value;
  /** Whether `v` (at `path`) is kept; logged when not. */
  const kept = (v: unknown, path: string): boolean => {
    if (serializable(v)) return true;
    log.warn(`dropped ${path} of sync ${nextBatch}: it cannot be serialised (reason: unserializable)`);
    return false;
  };
  if (Array.isArray(value)) return value.filter((item, i) => kept(item, `${part}[${i}]`)) as T;
  if (isObj(value)) return Object.fromEntries(Object.entries(value).filter(([k, v]) => kept(v, `${part}.${k}`))) as T;
  kept(value, part);
  return undefined as T;
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

/**
 * The worker's `receiveSyncChanges` input for a sync, serialized. A part that cannot be serialised
 * (nested deeper than the stack allows) is dropped and logged with its path, never failing the sync.
 * @internal
 */
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
  try {
    return JSON.stringify(input);
  } catch {
    // A part nested too deep to serialise (a hostile server) would fail this sync on every retry:
    // drop what cannot be serialised, part by part (logged), and process the rest.
  }
  const { nextBatch } = work;
  const keep = <T>(value: T, part: string): T => dropUnserializable(value, part, nextBatch, log);
  input.toDevice = keep(input.toDevice, "to_device.events");
  input.deviceLists = { changed: keep(devLists.changed, "device_lists.changed"), left: keep(devLists.left, "device_lists.left") };
  if (input.oneTimeKeyCounts) input.oneTimeKeyCounts = keep(input.oneTimeKeyCounts, "device_one_time_keys_count");
  if (fb !== undefined) input.unusedFallbackKeyTypes = keep(fb, res.device_unused_fallback_key_types !== undefined ? "device_unused_fallback_key_types" : "org.matrix.msc2732.device_unused_fallback_key_types");
  input.rooms = input.rooms.map((r) => ({ ...r, stateEvents: keep(r.stateEvents, `rooms.${r.membership}.${r.roomId}.${r.membership === "invite" ? "invite_state" : "state"}`) }));
  return JSON.stringify(input);
}

/** The encrypted timeline events of a sync, reduced for `decryptSyncTimelines`; null when there are none. @internal */
export function decryptPayload(timelines: { roomId: string; events: Json[] }[]): DecryptPayload | null {
  const payload: DecryptPayload = [];
  for (const t of timelines) {
    const events: EncryptedEventInput[] = [];
    for (const e of t.events) {
      if (e.type !== "m.room.encrypted" || isRedacted(e)) continue;
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
