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
export function powerLevelsFrom(content: Record<string, unknown> | null): PowerLevels {
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
  };
}

/** A user's power level. */
export function userPowerLevel(pl: PowerLevels, userId: string): number {
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
    /** One state event's content, or null when the room has none of that type and key. */
    private readonly fetchState: (type: string, stateKey: string) => Promise<Record<string, unknown> | null>,
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

  /** The room's power levels, defaults filled in. */
  async getPowerLevels(): Promise<PowerLevels> {
    return powerLevelsFrom(await this.fetchState("m.room.power_levels", ""));
  }

  /** Whether `userId` may send `eventType` (a state event with `{ state: true }`). */
  async userCanSend(userId: string, eventType: string, opts: { state?: boolean } = {}): Promise<boolean> {
    return canSend(await this.getPowerLevels(), userId, eventType, opts.state === true);
  }
}

