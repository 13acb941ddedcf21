/**
 * The account's everyday endpoints that are not about one room's timeline: profile (display name,
 * avatar), presence, account data (global and per room) and room aliases.
 * @internal
 */
import { MatrixHttpError } from "../../protocol/errors.js";
import { p, type HttpClient } from "../../http/HttpClient.js";
import type { Json } from "../json.js";

/** A user's public profile. */
export interface UserProfile {
  displayName: string | null;
  avatarUrl: string | null;
}

/** A presence state (spec "Presence"). */
export type PresenceState = "online" | "offline" | "unavailable";

/** A user's presence, as the server reports it. */
export interface Presence {
  presence: PresenceState;
  statusMsg: string | null;
  lastActiveAgo: number | null;
  currentlyActive: boolean | null;
}

/** What the account endpoints need. @internal */
export interface AccountEndpointsDeps {
  http: HttpClient;
  /** The logged-in user. */
  userId: () => string;
}

/** Profile, presence, account data and aliases. @internal */
export class AccountEndpoints {
  constructor(private readonly deps: AccountEndpointsDeps) {}

  /** `GET`, or null on 404 (nothing stored there). */
  private async getOrNull(path: string): Promise<Json | null> {
    try {
      return await this.deps.http.request<Json>("GET", path);
    } catch (err) {
      if (err instanceof MatrixHttpError && err.status === 404) return null;
      throw err;
    }
  }

  /** A user's display name and avatar; null fields when unset (a 404 for an unknown user is thrown). */
  async getUserProfile(userId: string): Promise<UserProfile> {
    const res = await this.deps.http.request<Json>("GET", p`/_matrix/client/v3/profile/${userId}`);
    return { displayName: typeof res.displayname === "string" ? res.displayname : null, avatarUrl: typeof res.avatar_url === "string" ? res.avatar_url : null };
  }

  /** Set our display name. */
  async setDisplayName(name: string): Promise<void> {
    await this.deps.http.request("PUT", p`/_matrix/client/v3/profile/${this.deps.userId()}/displayname`, { body: { displayname: name } });
  }

  /** Set our avatar (`mxc://` URI). */
  async setAvatarUrl(mxc: string): Promise<void> {
    await this.deps.http.request("PUT", p`/_matrix/client/v3/profile/${this.deps.userId()}/avatar_url`, { body: { avatar_url: mxc } });
  }

  /** Set our presence, with an optional status message. */
  async setPresence(presence: PresenceState, statusMsg?: string): Promise<void> {
    await this.deps.http.request("PUT", p`/_matrix/client/v3/presence/${this.deps.userId()}/status`, { body: statusMsg === undefined ? { presence } : { presence, status_msg: statusMsg } });
  }

  /** A user's presence. */
  async getPresence(userId: string): Promise<Presence> {
    const res = await this.deps.http.request<Json>("GET", p`/_matrix/client/v3/presence/${userId}/status`);
    const state = res.presence === "online" || res.presence === "unavailable" ? res.presence : "offline";
    return {
      presence: state,
      statusMsg: typeof res.status_msg === "string" ? res.status_msg : null,
      lastActiveAgo: typeof res.last_active_ago === "number" ? res.last_active_ago : null,
      currentlyActive: typeof res.currently_active === "boolean" ? res.currently_active : null,
    };
  }

  /** Our global account data of `type`, or null when unset; per room with `roomId`. */
  async getAccountData(type: string, roomId?: string): Promise<Record<string, unknown> | null> {
    const u = this.deps.userId();
    return this.getOrNull(roomId === undefined ? p`/_matrix/client/v3/user/${u}/account_data/${type}` : p`/_matrix/client/v3/user/${u}/rooms/${roomId}/account_data/${type}`);
  }

  /** Set our global account data of `type`; per room with `roomId`. */
  async setAccountData(type: string, content: Record<string, unknown>, roomId?: string): Promise<void> {
    const u = this.deps.userId();
    const path = roomId === undefined ? p`/_matrix/client/v3/user/${u}/account_data/${type}` : p`/_matrix/client/v3/user/${u}/rooms/${roomId}/account_data/${type}`;
    await this.deps.http.request("PUT", path, { body: content });
  }

  /** The room ID (and servers) an alias points to; null when the alias does not exist. */
  async resolveRoomAlias(alias: string): Promise<{ roomId: string; servers: string[] } | null> {
    const res = await this.getOrNull(p`/_matrix/client/v3/directory/room/${alias}`);
    if (res === null) return null;
    if (typeof res.room_id !== "string") throw new MatrixHttpError(200, "M_BAD_JSON", "directory answer lacks room_id");
    return { roomId: res.room_id, servers: Array.isArray(res.servers) ? res.servers.filter((s): s is string => typeof s === "string") : [] };
  }
}

