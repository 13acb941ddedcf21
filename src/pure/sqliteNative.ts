/**
 * What to tell the user when SQLite cannot be opened: better-sqlite3's native module missing (an
 * install that skipped its build) or built for another Node.js ABI gets its cause and the fix,
 * instead of the bindings package's list of searched paths. Shared by the crypto store (worker)
 * and the client state store (main thread). Pure: no imports.
 * @packageDocumentation
 */

/** Whether `e` says better-sqlite3's compiled module could not be loaded. */
export function isSqliteNativeModuleError(e: unknown): boolean {
  const msg = e instanceof Error ? e.message : String(e);
  const code = (e as { code?: unknown } | null)?.code;
  return (
    msg.includes("Could not locate the bindings file") ||
    msg.includes("better_sqlite3.node") ||
    code === "ERR_DLOPEN_FAILED" ||
    /NODE_MODULE_VERSION/.test(msg)
  );
}

/** `what: <cause>`; for a native-module failure the cause names better-sqlite3 and how to build it. */
export function sqliteOpenFailure(what: string, e: unknown): string {
  const msg = e instanceof Error ? e.message : String(e);
  if (!isSqliteNativeModuleError(e)) return `${what}: ${msg}`;
  return (
    `${what}: better-sqlite3's native module (better_sqlite3.node) is missing or was built for another Node.js version. ` +
    "Build it with `npm rebuild better-sqlite3` (it needs python3, make and a C++ compiler; if node-gyp cannot download " +
    "the Node.js headers, run `npm_config_nodedir=/usr npm rebuild better-sqlite3`; for Electron, rebuild it for Electron's ABI " +
    `with @electron/rebuild). Underlying error: ${msg.split("\n")[0]}`
  );
}

/** Details for the store error: `nativeModuleMissing: true` when {@link isSqliteNativeModuleError}. */
export function sqliteOpenDetails(e: unknown): { nativeModuleMissing?: true } {
  return isSqliteNativeModuleError(e) ? { nativeModuleMissing: true } : {};
}
