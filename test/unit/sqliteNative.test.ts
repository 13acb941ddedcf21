/**
 * A missing or mis-built better-sqlite3 native module is named as such, with how to build it
 * (issue 16 item 8), instead of the bindings package's search list; other failures keep their message.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { sqliteOpenDetails, sqliteOpenFailure } from "../../src/pure/sqliteNative.js";

describe("SQLite open failures", () => {
  it("a missing native module says better-sqlite3's module is missing and how to build it", () => {
    const e = new Error("Could not locate the bindings file. Tried:\n → /app/node_modules/better-sqlite3/build/better_sqlite3.node");
    assert.equal(
      sqliteOpenFailure("Cannot open the crypto store /x/crypto.db", e),
      "Cannot open the crypto store /x/crypto.db: better-sqlite3's native module (better_sqlite3.node) is missing or was built for another Node.js version. " +
        "Build it with `npm rebuild better-sqlite3` (it needs python3, make and a C++ compiler; if node-gyp cannot download the Node.js headers, " +
        "run `npm_config_nodedir=/usr npm rebuild better-sqlite3`; for Electron, rebuild it for Electron's ABI with @electron/rebuild). " +
        "Underlying error: Could not locate the bindings file. Tried:",
    );
    assert.deepEqual(sqliteOpenDetails(e), { nativeModuleMissing: true });
  });

  it("a module built for another Node.js ABI is reported the same way; other errors keep their message", () => {
    const abi = Object.assign(new Error("The module was compiled against a different Node.js version using NODE_MODULE_VERSION 115."), { code: "ERR_DLOPEN_FAILED" });
    assert.deepEqual(sqliteOpenDetails(abi), { nativeModuleMissing: true });
    const other = Object.assign(new Error("unable to open database file"), { code: "SQLITE_CANTOPEN" });
    assert.equal(sqliteOpenFailure("Cannot open X", other), "Cannot open X: unable to open database file");
    assert.deepEqual(sqliteOpenDetails(other), {});
  });
});
