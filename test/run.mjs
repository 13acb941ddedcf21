// Runs the compiled test files (dist/test/<layer>/**/*.test.js) with node:test.
// Usage: node test/run.mjs [layer ...]   (default: every layer)
import { readdirSync, statSync, existsSync } from "node:fs";
import { join } from "node:path";
import { spawnSync } from "node:child_process";

const root = new URL("../dist/test/", import.meta.url).pathname;
const layers = process.argv.slice(2);
const order = ["unit", "store", "engine", "worker", "http", "integration", "faults", "bench"];
const wanted = layers.length ? layers : order;
const files = [];
function walk(dir) {
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) walk(p);
    else if (name.endsWith(".test.js")) files.push(p);
  }
}
for (const layer of wanted) {
  const dir = join(root, layer);
  if (existsSync(dir)) walk(dir);
}
if (!files.length) {
  console.error("no test files found; run `npm run build` first");
  process.exit(1);
}
// Integration tests share one Synapse; run files one at a time there, others concurrently.
const r = spawnSync(process.execPath, ["--test", "--test-concurrency=1", "--test-reporter=spec", ...files], { stdio: "inherit" });
process.exit(r.status ?? 1);
