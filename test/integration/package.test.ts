/**
 * The package as installed (issue 16 items 6 and 8): this checkout packed with `npm pack` and
 * installed with real npm into a fresh app (dependencies from a local registry serving the
 * repository's node_modules: no network). The key CLI runs through npm's `.bin` link; every module
 * shipped imports only what is shipped; the LICENSE ships; without better-sqlite3's native module
 * the store says so and how to build it.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { builtinModules } from "node:module";
import { dirname, join, posix } from "node:path";
import { USAGE } from "../../src/cli/keys.js";
import { installPackedSdk, REPO_ROOT, run, type InstalledSdk } from "../support/installedPackage.js";

/** Module specifiers a compiled file loads: static and dynamic imports, and `new URL(…, import.meta.url)`. */
function specifiers(code: string): string[] {
  const out: string[] = [];
  for (const re of [/(?:\bfrom\s*|\bimport\s*\(\s*|^import\s+)"([^"]+)"/gm, /new URL\(\s*"([^"]+)",\s*import\.meta\.url\)/g]) {
    for (const m of code.matchAll(re)) out.push(m[1]!);
  }
  return out;
}

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

  it("every shipped module imports only shipped files, node built-ins and the package's dependencies", () => {
    const shipped = new Set(sdk.files);
    const pkg = JSON.parse(readFileSync(join(sdk.packageDir, "package.json"), "utf8")) as { dependencies: Record<string, string> };
    const missing: string[] = [];
    for (const file of sdk.files.filter((f) => f.endsWith(".js"))) {
      for (const spec of specifiers(readFileSync(join(sdk.packageDir, file), "utf8"))) {
        if (spec.startsWith(".")) {
          const target = posix.normalize(posix.join(posix.dirname(file), spec)).replace(/\/$/, "");
          if (!shipped.has(target) && !sdk.files.some((f) => f.startsWith(`${target}/`))) missing.push(`${file} → ${spec}`);
        } else if (!spec.startsWith("node:") && !builtinModules.includes(spec)) {
          const name = spec.startsWith("@") ? spec.split("/").slice(0, 2).join("/") : spec.split("/")[0]!;
          if (!(name in pkg.dependencies)) missing.push(`${file} → ${spec} (not a dependency)`);
        }
      }
    }
    assert.deepEqual(missing, []);
  });

  it("ships the Apache-2.0 LICENSE its package.json names", () => {
    const pkg = JSON.parse(readFileSync(join(sdk.packageDir, "package.json"), "utf8")) as { license: string };
    assert.equal(pkg.license, "Apache-2.0");
    assert.equal(sdk.files.includes("LICENSE"), true);
    assert.equal(readFileSync(join(sdk.packageDir, "LICENSE"), "utf8"), readFileSync(join(REPO_ROOT, "LICENSE"), "utf8"));
  });

  it("without better-sqlite3's native module, opening the store says that module is missing (typed StoreError)", async () => {
    const build = join(sdk.appDir, "node_modules", "better-sqlite3", "build");
    assert.equal(existsSync(build), true);
    const script = join(sdk.appDir, "open-store.mjs");
    writeFileSync(
      script,
      `import { MatrixClient, StoreError } from "matrix-e2ee-worker-sdk";
const client = new MatrixClient("http://127.0.0.1:9", { encryption: true, restoreDeviceId: true, encryptionConf: { storeConf: { dbPath: process.argv[2] } } });
try { await client.login("@bot:example.org", "pw"); console.log("{}"); }
catch (e) { console.log(JSON.stringify({ storeError: e instanceof StoreError, code: e.code, nativeModuleMissing: e.details?.nativeModuleMissing ?? null })); }
finally { await client.close(); }
`,
    );
    renameSync(build, `${build}.off`);
    try {
      const r = await run(process.execPath, [script, join(dirname(script), "store")], sdk.appDir);
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(JSON.parse(r.stdout), { storeError: true, code: "M_SDK_STORE", nativeModuleMissing: true });
    } finally {
      renameSync(`${build}.off`, build);
    }
  });
});
