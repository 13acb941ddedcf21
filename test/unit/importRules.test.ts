/**
 * The import rules of the source tree (DESIGN §1, §8), checked on the TypeScript sources:
 * - `workers/` imports from `src/` only the worker contract (`src/protocol/`) and the pure,
 *   dependency-free helpers (`src/pure/`);
 * - `src/` imports from `workers/` types only (the worker runs in its own thread);
 * - `src/pure/` and `src/protocol/` import nothing of the SDK but each other (and Node built-ins);
 * - no import cycle anywhere in `src/` and `workers/`, type-only imports included.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, readFileSync, statSync, existsSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";

/** The repository root (this file runs from dist/test/unit/). */
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");

interface Edge {
  from: string;
  to: string;
  typeOnly: boolean;
}

function sources(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string): void => {
    for (const name of readdirSync(d)) {
      const p = join(d, name);
      if (statSync(p).isDirectory()) walk(p);
      else if (name.endsWith(".ts") && !name.endsWith(".d.ts")) out.push(p);
    }
  };
  walk(join(ROOT, dir));
  return out;
}

/** Every relative import/export-from/dynamic import of a file, resolved to a repo-relative .ts path. */
function importsOf(file: string): Edge[] {
  const text = readFileSync(file, "utf8");
  const edges: Edge[] = [];
  const re = /(?:^|\n)\s*(import|export)\s+(type\s+)?[^'";]*?from\s+["']([^"']+)["']|import\(\s*["']([^"']+)["']\s*\)|(?:^|\n)\s*import\s+["']([^"']+)["']/g;
  for (const m of text.matchAll(re)) {
    const spec = m[3] ?? m[4] ?? m[5];
    if (!spec || !spec.startsWith(".")) continue;
    const target = resolve(dirname(file), spec.replace(/\.js$/, ".ts"));
    // `import { type A, type B }` is type-only too.
    const braces = /\{([^}]*)\}/.exec(m[0])?.[1];
    const allTypes = braces !== undefined && braces.split(",").every((s) => s.trim() === "" || s.trim().startsWith("type "));
    edges.push({ from: relative(ROOT, file), to: relative(ROOT, target), typeOnly: Boolean(m[2]) || (allTypes && !/import\s+\w+\s*,/.test(m[0])) });
  }
  return edges;
}

const files = [...sources("src"), ...sources("workers")];
const edges = files.flatMap(importsOf);

describe("import rules", () => {
  it("resolves every relative import to an existing source file", () => {
    const missing = edges.filter((e) => !existsSync(join(ROOT, e.to)));
    assert.deepEqual(missing, []);
  });

  it("workers/ imports from src/ only src/protocol/ and src/pure/", () => {
    const bad = edges.filter((e) => e.from.startsWith("workers/") && e.to.startsWith("src/") && !e.to.startsWith("src/protocol/") && !e.to.startsWith("src/pure/"));
    assert.deepEqual(bad, []);
  });

  it("src/ imports from workers/ types only", () => {
    const bad = edges.filter((e) => e.from.startsWith("src/") && e.to.startsWith("workers/") && !e.typeOnly);
    assert.deepEqual(bad, []);
  });

  it("src/pure/ and src/protocol/ depend on nothing else of the SDK", () => {
    const base = (p: string): boolean => p.startsWith("src/pure/") || p.startsWith("src/protocol/");
    const bad = edges.filter((e) => base(e.from) && !base(e.to));
    assert.deepEqual(bad, []);
  });

  it("has no import cycle in src/ and workers/ (type-only imports included)", () => {
    const graph = new Map<string, string[]>();
    for (const e of edges) graph.set(e.from, [...(graph.get(e.from) ?? []), e.to]);
    const state = new Map<string, "visiting" | "done">();
    const cycles: string[][] = [];
    const stack: string[] = [];
    const visit = (n: string): void => {
      state.set(n, "visiting");
      stack.push(n);
      for (const m of graph.get(n) ?? []) {
        if (state.get(m) === "visiting") cycles.push([...stack.slice(stack.indexOf(m)), m]);
        else if (!state.has(m)) visit(m);
      }
      stack.pop();
      state.set(n, "done");
    };
    for (const f of graph.keys()) if (!state.has(f)) visit(f);
    assert.deepEqual(cycles, []);
  });

  it("src/pure/ and src/protocol/ use no npm package", () => {
    const bad = files
      .filter((f) => /\/src\/(pure|protocol)\//.test(f))
      .flatMap((f) => [...readFileSync(f, "utf8").matchAll(/from\s+["']([^"'.][^"']*)["']/g)].map((m) => `${relative(ROOT, f)}: ${m[1]}`))
      .filter((s) => !/: node:/.test(s));
    assert.deepEqual(bad, []);
  });

  it("sees the imports it checks (the scan itself works)", () => {
    assert.ok(edges.some((e) => e.from === "workers/engine/CryptoEngine.ts" && e.to === "workers/engine/megolm/RoomDecryptor.ts" && !e.typeOnly));
    assert.ok(edges.some((e) => e.from === "workers/engine/CryptoEngine.ts" && e.to === "workers/engine/Transaction.ts" && e.typeOnly));
  });
});
