/**
 * Logging in: `/login` with a password, or an existing token checked with `/account/whoami`.
 * @internal
 */
import { MatrixHttpError } from "../protocol/errors.js";
import type { HttpClient } from "../http/HttpClient.js";
import type { Json } from "./json.js";

/** A session the server handed out. @internal */
export interface LoginSession {
  userId: string;
  deviceId: string;
  accessToken: string;
}

/** `POST /login` with a password (for `deviceId`, when given). */
export async function passwordLogin(http: HttpClient, userId: string, password: string, opts: { deviceId?: string | undefined; initialDeviceDisplayName?: string | undefined }): Promise<LoginSession> {
  const body: Json = { type: "m.login.password", identifier: { type: "m.id.user", user: userId }, password };
  if (opts.deviceId) body.device_id = opts.deviceId;
  if (opts.initialDeviceDisplayName) body.initial_device_display_name = opts.initialDeviceDisplayName;
  const res = await http.request<Json>("POST", "/_matrix/client/v3/login", { body, auth: false });
  if (typeof res.access_token !== "string" || typeof res.user_id !== "string" || typeof res.device_id !== "string") {
    throw new MatrixHttpError(200, "M_BAD_JSON", "login response lacks access_token, user_id or device_id");
  }
  return { userId: res.user_id, deviceId: res.device_id, accessToken: res.access_token };
}

/** The user and device of `accessToken` (`GET /account/whoami`); the device is required with encryption. */
export async function tokenLogin(http: HttpClient, accessToken: string, encryption: boolean): Promise<LoginSession> {
  http.setAccessToken(accessToken);
  const who = await http.request<Json>("GET", "/_matrix/client/v3/account/whoami");
  if (typeof who.user_id !== "string" || (encryption && typeof who.device_id !== "string")) {
    throw new MatrixHttpError(200, "M_BAD_JSON", "whoami response lacks user_id or device_id");
  }
  return { userId: who.user_id, deviceId: typeof who.device_id === "string" ? who.device_id : "", accessToken };
}
