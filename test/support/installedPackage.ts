/**
 * The SDK as a user gets it: `npm pack` of this checkout (after `npm run build`), installed with
 * real npm into a fresh temp app, its dependencies served from the repository's `node_modules` by
 * a local registry (no network), `--ignore-scripts` (better-sqlite3's native build comes with the
 * folder). Plus `run`, which spawns a command without blocking this thread (the registry answers
 * from it).
 */
import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { startLocalRegistry } from "./localRegistry.js";

/** The repository root (this file runs from dist/test/support/). */
export const REPO_ROOT = fileURLToPath(new URL("../../../", import.meta.url));

/** A finished command. */
export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Run `cmd args` in `cwd`; npm_* variables of a surrounding `npm test` are not passed on. */
export function run(cmd: string, args: string[], cwd: string, env: Record<string, string> = {}): Promise<RunResult> {
  const base = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.toLowerCase().startsWith("npm_")));
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd, env: { ...base, ...env }, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

/** The installed package: the app folder, the package's folder in it, the packed file list. */
export interface InstalledSdk {
  appDir: string;
  packageDir: string;
  /** Paths inside the tarball (relative, e.g. `dist/src/index.js`). */
  files: string[];
  remove(): void;
}

/** Pack this checkout and install the tarball into a new app folder. Throws with npm's output on failure. */
export async function installPackedSdk(): Promise<InstalledSdk> {
  const tmp = mkdtempSync(join(tmpdir(), "sdk-pkg-"));
  const remove = (): void => rmSync(tmp, { recursive: true, force: true });
  const packed = await run("npm", ["pack", "--json", "--pack-destination", tmp], REPO_ROOT);
  if (packed.code !== 0) throw new Error(`npm pack failed: ${packed.stderr}`);
  const info = (JSON.parse(packed.stdout) as { filename: string; files: { path: string }[] }[])[0]!;
  const appDir = join(tmp, "app");
  mkdirSync(appDir);
  writeFileSync(join(appDir, "package.json"), JSON.stringify({ name: "sdk-test-app", version: "1.0.0", private: true, type: "module" }));
  const registry = await startLocalRegistry(join(REPO_ROOT, "node_modules"));
  try {
    const args = ["install", "--ignore-scripts", "--no-audit", "--no-fund", "--registry", registry.url, "--cache", join(tmp, "npm-cache"), join(tmp, info.filename)];
    const inst = await run("npm", args, appDir);
    if (inst.code !== 0) throw new Error(`npm install of the tarball failed: ${inst.stderr}`);
  } finally {
    await registry.close();
  }
  return { appDir, packageDir: join(appDir, "node_modules", "matrix-e2ee-worker-sdk"), files: info.files.map((f) => f.path), remove };
}
