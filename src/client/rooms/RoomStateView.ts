/**
 * A room's state as read from the server (`/rooms/{roomId}/state/{type}/{stateKey}`): any state
 * event's content, name, topic, power levels, and whether a user may send an event type (spec
 * "m.room.power_levels").
 */
import { isObj } from "../json.js";

/** A room's power levels with the spec's defaults filled in. */
export interface PowerLevels {
  users: Record<string, number>;
  users_default: number;
  events: Record<string, number>;
  events_default: number;
  state_default: number;
  ban: number;
  kick: number;
  redact: number;
  invite: number;
  /**
   * Users above every level: the room's creators in room versions 12 and later (the sender of
   * `m.room.create` and its `additional_creators`); empty in earlier versions.
   */
  creators: string[];
}

/** An integer power level, or `fallback` when `v` is not one (strings of digits are accepted, as by servers for old rooms). */
function level(v: unknown, fallback: number): number {
  if (typeof v === "number" && Number.isInteger(v)) return v;
  if (typeof v === "string" && /^-?\d+$/.test(v.trim())) return Number(v.trim());
  return fallback;
}

/** A map of integer levels, leaving out entries that are not one. */
function levels(v: unknown): Record<string, number> {
  const out: Record<string, number> = Object.create(null) as Record<string, number>;
  if (!isObj(v)) return out;
  for (const [k, x] of Object.entries(v)) {
    const n = level(x, Number.NaN);
    if (!Number.isNaN(n)) out[k] = n;
  }
  return out;
}

/**
 * The content of `m.room.power_levels` with the spec's defaults (`null`: the room has no such
 * event, where the spec's defaults are 0 for every state and message event).
 */
export function powerLevelsFrom(content: Record<string, unknown> | null, creators: string[] = []): PowerLevels {
  const c = content ?? {};
  const stateDefault = content === null ? 0 : 50;
  return {
    users: levels(c.users),
    users_default: level(c.users_default, 0),
    events: levels(c.events),
    events_default: level(c.events_default, 0),
    state_default: level(c.state_default, stateDefault),
    ban: level(c.ban, 50),
    kick: level(c.kick, 50),
    redact: level(c.redact, 50),
    invite: level(c.invite, 0),
    creators,
  };
}

/**
 * The creators with unlimited power of a room, from its full `m.room.create` event: its sender
 * and `additional_creators` in room versions 12 and later, none in earlier ones.
 */
export function creatorsOf(createEvent: Record<string, unknown> | null): string[] {
  const content = isObj(createEvent?.content) ? createEvent.content : {};
  const version = typeof content.room_version === "string" && /^\d+$/.test(content.room_version) ? Number(content.room_version) : 1;
  if (version < 12 || typeof createEvent?.sender !== "string") return [];
  const more = Array.isArray(content.additional_creators) ? content.additional_creators.filter((u): u is string => typeof u === "string") : [];
  return [createEvent.sender, ...more];
}

/** A user's power level (`Infinity` for a creator in room versions 12 and later). */
export function userPowerLevel(pl: PowerLevels, userId: string): number {
  if (pl.creators.includes(userId)) return Number.POSITIVE_INFINITY;
  return Object.hasOwn(pl.users, userId) ? pl.users[userId]! : pl.users_default;
}

/** Whether `userId` may send `eventType` (a state event when `isState`) under `pl`. */
export function canSend(pl: PowerLevels, userId: string, eventType: string, isState: boolean): boolean {
  const needed = Object.hasOwn(pl.events, eventType) ? pl.events[eventType]! : isState ? pl.state_default : pl.events_default;
  return userPowerLevel(pl, userId) >= needed;
}

/** Reads a room's state from the server. @internal */
export class RoomStateView {
  constructor(
    /** One state event's content (with `event`: the whole event), or null when the room has none of that type and key. */
    private readonly fetchState: (type: string, stateKey: string, event?: boolean) => Promise<Record<string, unknown> | null>,
  ) {}

  /** A state event's content, or null when the room has none. */
  getState(type: string, stateKey = ""): Promise<Record<string, unknown> | null> {
    return this.fetchState(type, stateKey);
  }

  /** The room's name (`m.room.name`), or null. */
  async getName(): Promise<string | null> {
    const c = await this.fetchState("m.room.name", "");
    return typeof c?.name === "string" ? c.name : null;
  }

  /** The room's topic (`m.room.topic`), or null. */
  async getTopic(): Promise<string | null> {
    const c = await this.fetchState("m.room.topic", "");
    return typeof c?.topic === "string" ? c.topic : null;
  }

  /** The room's power levels, defaults filled in, with the creators of room versions 12 and later. */
  async getPowerLevels(): Promise<PowerLevels> {
    const [content, create] = await Promise.all([this.fetchState("m.room.power_levels", ""), this.fetchState("m.room.create", "", true)]);
    return powerLevelsFrom(content, creatorsOf(create));
  }

  /** Whether `userId` may send `eventType` (a state event with `{ state: true }`). */
  async userCanSend(userId: string, eventType: string, opts: { state?: boolean } = {}): Promise<boolean> {
    return canSend(await this.getPowerLevels(), userId, eventType, opts.state === true);
  }
}

