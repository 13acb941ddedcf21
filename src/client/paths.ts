import { homedir } from "node:os";
import { join } from "node:path";

/** Name of the folder the SDK keeps its data in, inside the platform's user data directory. */
export const APP_NAME = "matrix-e2ee-worker-sdk";

/**
 * The platform's user data directory for `appName` (as appdirs' `user_data_dir`): Linux
 * `$XDG_DATA_HOME/<name>` or `~/.local/share/<name>`, macOS `~/Library/Application Support/<name>`,
 * Windows `%LOCALAPPDATA%\<name>`.
 */
export function userDataDir(appName = APP_NAME, env: NodeJS.ProcessEnv = process.env, platform: NodeJS.Platform = process.platform): string {
  if (platform === "win32") return join(env.LOCALAPPDATA ?? join(homedir(), "AppData", "Local"), appName);
  if (platform === "darwin") return join(homedir(), "Library", "Application Support", appName);
  const xdg = env.XDG_DATA_HOME;
  return join(xdg && xdg.startsWith("/") ? xdg : join(homedir(), ".local", "share"), appName);
}

/**
 * The pickle key used when `storeConf.pickleKey` is not set. A constant: it keeps keys out of
 * casual view but does not protect a store file someone can read (see the README).
 */
export const DEFAULT_PICKLE_KEY = "matrix-e2ee-worker-sdk default pickle key";
