/**
 * Smoke test of the benchmark: a tiny run completes and its JSON has every section. Never asserts times.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const run = fileURLToPath(new URL("../../bench/run.js", import.meta.url));

describe("bench smoke", { timeout: 240_000 }, () => {
  it("a tiny --quick run writes a JSON with every figure and an SVG", () => {
    const out = mkdtempSync(join(tmpdir(), "sdk-bench-"));
    execFileSync(
      process.execPath,
      [run, "--quick", "--runs", "1", "--rooms", "2", "--senders", "2", "--messages", "20", "--no-experiments", "--no-sweep", "--no-profile", "--no-memory", "--out", out],
      { stdio: ["ignore", "pipe", "pipe"], timeout: 230_000 },
    );
    const report = JSON.parse(readFileSync(join(out, "latest.json"), "utf8")) as Record<string, unknown>;
    for (const key of ["machine", "options"]) assert.ok(key in report || JSON.stringify(report).includes(`"${key}"`), `missing ${key}`);
    const text = JSON.stringify(report);
    for (const field of ["raw", "sdk", "main", "p99", "max", "cold", "node", "libolm"]) assert.ok(text.includes(field), `the report has no ${field}`);
    assert.ok(existsSync(join(out, "latest.svg")));
    assert.match(readFileSync(join(out, "latest.svg"), "utf8"), /^<svg|<\?xml/);
  });
});
