/**
 * The README's TypeScript snippets compile as written (issue 16 item 7): every ```ts block is
 * written to a module inside the package (so `matrix-e2ee-worker-sdk` resolves to the built
 * package's own types through its `exports`, as in an app), with ambient declarations for the
 * names a snippet uses but leaves to the reader (`client`, `roomId`, …), and type-checked by `tsc`
 * under the project's strict tsconfig (`exactOptionalPropertyTypes`, `noUncheckedIndexedAccess`).
 */
import { after, describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("../../../", import.meta.url));
const DIR = join(ROOT, "dist", "readme-snippets");
const SDK = '"matrix-e2ee-worker-sdk"';

/** What a snippet may use without declaring it: name → declaration (added only when used and not declared). */
const AMBIENT: [string, string][] = [
  ...["MatrixClient", "Room", "Device", "UnknownDevicesError", "consoleLogger", "VerificationRequest"].map((n): [string, string] => [n, `import { ${n} } from ${SDK};`]),
  ["client", "declare const client: MatrixClient;"],
  ["other", "declare const other: MatrixClient;"],
  ["room", "declare const room: Room;"],
  ["roomId", "declare const roomId: string;"],
  ["dmRoomId", "declare const dmRoomId: string;"],
  ["userId", "declare const userId: string;"],
  ["url", "declare const url: string;"],
  ["recoveryKey", "declare const recoveryKey: string;"],
  ["fingerprintAliceReadToYou", "declare const fingerprintAliceReadToYou: string;"],
  ["allowList", "declare const allowList: Set<string>;"],
  ["trusted", "declare function trusted(userId: string, device: Device): boolean;"],
  ["operatorSaysTheyMatch", "declare function operatorSaysTheyMatch(): Promise<boolean>;"],
  ["CryptoStore", `import type { CryptoStore } from ${SDK};`],
  // Electron's `app` (the Electron snippet; Electron is not installed here).
  ["app", 'declare const app: { whenReady(): Promise<void>; isPackaged: boolean; getAppPath(): string; getPath(name: "userData"): string; on(event: "before-quit", listener: () => void): void };'],
  ["MyStore", "declare const MyStore: new (options: unknown) => CryptoStore;"],
];

/** The ```ts blocks of a Markdown text, with the line each starts at. */
function tsBlocks(md: string): { line: number; code: string }[] {
  const out: { line: number; code: string }[] = [];
  const lines = md.split("\n");
  for (let i = 0; i < lines.length; i++) {
    if (lines[i]!.trim() !== "```ts") continue;
    const start = i + 1;
    let j = start;
    while (j < lines.length && lines[j]!.trim() !== "```") j++;
    out.push({ line: start + 1, code: lines.slice(start, j).join("\n") });
    i = j;
  }
  return out;
}

/** The snippet as a module: the ambient declarations it needs, then its code. */
function snippetModule(code: string): string {
  const declares = (name: string): boolean =>
    new RegExp(`\\b(?:const|let|var|function|class)\\s+${name}\\b`).test(code) ||
    new RegExp(`\\b(?:const|let|var)\\s*\\{[^}]*\\b${name}\\b[^}]*\\}\\s*=`).test(code) || new RegExp(`import\\s*(?:type\\s*)?\\{[^}]*\\b${name}\\b[^}]*\\}`).test(code);
  const word = (name: string, text: string): boolean => new RegExp(`\\b${name}\\b`).test(text);
  // Used by the snippet, or by a declaration already added (e.g. `client` needs `MatrixClient`).
  const needed = new Set<string>();
  for (let grew = true; grew; ) {
    grew = false;
    for (const [name] of AMBIENT) {
      if (needed.has(name) || declares(name)) continue;
      if (word(name, code) || AMBIENT.some(([n, decl]) => needed.has(n) && word(name, decl.replace(/^declare \w+ \w+/, "")))) {
        needed.add(name);
        grew = true;
      }
    }
  }
  const decls = AMBIENT.filter(([name]) => needed.has(name)).map(([, decl]) => decl);
  return `${decls.join("\n")}\n${code}\nexport {};\n`;
}

describe("README snippets", { timeout: 120_000 }, () => {
  after(() => rmSync(DIR, { recursive: true, force: true }));

  it("every ```ts block of README.md type-checks under the project's strict tsconfig", () => {
    const blocks = tsBlocks(readFileSync(join(ROOT, "README.md"), "utf8"));
    assert.ok(blocks.length >= 10, `only ${blocks.length} blocks found`);
    rmSync(DIR, { recursive: true, force: true });
    mkdirSync(DIR, { recursive: true });
    const files = blocks.map((b) => {
      const name = `readme-line-${b.line}.ts`;
      writeFileSync(join(DIR, name), snippetModule(b.code));
      return name;
    });
    writeFileSync(join(DIR, "tsconfig.json"), JSON.stringify({ extends: "../../tsconfig.json", compilerOptions: { noEmit: true }, include: [], files: [...files, "../../src/types/shims.d.ts"] }));
    const tsc = spawnSync(process.execPath, [join(ROOT, "node_modules", "typescript", "bin", "tsc"), "-p", join(DIR, "tsconfig.json"), "--pretty", "false"], { encoding: "utf8" });
    const errors = tsc.stdout.split("\n").filter((l) => /error TS\d+/.test(l));
    assert.deepEqual(errors, []);
    assert.equal(tsc.status, 0, tsc.stderr);
  });
});
