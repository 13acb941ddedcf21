/**
 * Smoke test of the benchmark: a tiny run completes, and its structured results (latest.json,
 * the {@link Report} of bench/report.ts) carry every figure for the options it was given. Never
 * asserts times, only that each figure was measured (a positive, finite number per run).
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Summary } from "../../bench/common.js";
import type { LoopSummary, Report } from "../../bench/report.js";

const run = fileURLToPath(new URL("../../bench/run.js", import.meta.url));

/** A summary of `runs` measurements, each a finite number, positive unless `zeroOk` (a delay can be 0 in a tiny run). */
function assertMeasured(s: Summary | undefined, runs: number, what: string, zeroOk = false): void {
  assert.ok(s, `${what} is missing`);
  assert.equal(s.runs.length, runs, `${what}: one value per run`);
  for (const v of [...s.runs, s.median, s.min, s.max]) assert.ok(Number.isFinite(v) && (zeroOk ? v >= 0 : v > 0), `${what}: ${v} is not a measurement`);
  assert.ok(s.min <= s.median && s.median <= s.max, `${what}: min ≤ median ≤ max`);
}

function assertLoop(l: LoopSummary | null | undefined, runs: number, what: string): void {
  assert.ok(l, `${what} is missing`);
  assertMeasured(l.p99, runs, `${what} p99`, true);
  assertMeasured(l.max, runs, `${what} max`, true);
}

describe("bench smoke", { timeout: 240_000 }, () => {
  it("a tiny --quick run writes results with throughput, ratios, event-loop delay and cold start for every payload and store size, and an SVG", () => {
    const out = mkdtempSync(join(tmpdir(), "sdk-bench-"));
    execFileSync(
      process.execPath,
      [run, "--quick", "--runs", "1", "--rooms", "2", "--senders", "2", "--messages", "20", "--batch", "20", "--scale", "20x2x2", "--backup-shape", "2x5x4", "--no-send", "--no-experiments", "--no-sweep", "--no-profile", "--no-memory", "--out", out],
      { stdio: ["ignore", "pipe", "pipe"], timeout: 230_000 },
    );
    const report = JSON.parse(readFileSync(join(out, "latest.json"), "utf8")) as Report;
    // Decrypt pool modes (issue 18): 2 workers started and deciphered events (from the second sync on: 20 events per sync here).
    for (const key of ["pool:1:200", "pool:2:200", "pool:auto:200", "pool:2:rooms20x2x2", "pool:1:skew", "pool:2:skew"]) {
      const row = report.pool?.rows.find((r) => r.key === key);
      assert.ok(row, `pool row ${key} is missing`);
      assertMeasured(row.paired.ratio, 1, `${key} paired ratio`);
      assertMeasured(row.rssMB, 1, `${key} RSS`);
      if (key.startsWith("pool:2:")) {
        assert.equal(row.size, 2, `${key}: 2 decrypt workers`);
        assert.equal(row.decryptBusy.length, 2, `${key}: a busy share per decrypt worker`);
        assert.ok(row.windowed, `${key}: busy over the window`);
        assert.ok(row.decipheredShare.median > 0, `${key}: the pool deciphered events`);
      }
    }
    const runs = 1;

    // The run used the options it was given, on this machine.
    const o = report.options;
    assert.deepEqual([o.quick, o.runs, o.rooms, o.senders, o.messages, o.memory, o.experiments, o.sweep, o.profile, o.outDir], [true, runs, 2, 2, 20, null, false, null, false, out]);
    assert.deepEqual([o.scale, o.backup, o.send], [[{ rooms: 20, senders: 2, messages: 2 }], { rooms: 2, senders: 5, messages: 4 }, null]);
    assert.equal(report.machine.node, process.version);
    assert.match(String(report.machine.libolm), /^\d+\.\d+\.\d+$/);
    assert.ok(Number(report.machine.cpus) >= 1);

    // Throughput of raw libolm, the SDK (worker) and the main-thread variant, per payload size.
    const payloads = (report.options.payloads as number[]).map(String);
    assert.ok(payloads.length >= 1);
    assert.deepEqual(Object.keys(report.throughput).sort(), [...payloads].sort());
    for (const p of payloads) {
      const t = report.throughput[p]!;
      assertMeasured(t.raw, runs, `raw throughput ${p} B`);
      assertMeasured(t.sdk, runs, `sdk throughput ${p} B`);
      assertMeasured(t.main, runs, `main-thread throughput ${p} B`);
      const r = report.ratios[p]!;
      for (const [k, v] of Object.entries({ sdkOverRaw: r.sdkOverRaw, mainOverRaw: r.mainOverRaw, sdkOverMain: r.sdkOverMain })) assert.ok(Number.isFinite(v) && v > 0, `ratio ${k} ${p} B`);
      assertLoop(report.eventLoop.byPayload[p]?.sdk, runs, `event-loop delay with the worker, ${p} B`);
      assertLoop(report.eventLoop.byPayload[p]?.main, runs, `event-loop delay on the main thread, ${p} B`);
    }

    // The headline: every workload and mode with a paired ratio (raw before and after, same process).
    assert.deepEqual(report.paired.map((r) => r.key), [...payloads.flatMap((p) => [`sdk:${p}`, `main:${p}`]), "sdk:rooms20x2x2", "sdk:backup", "sdk+backup:backup"]);
    for (const r of report.paired) {
      assertMeasured(r.paired.ratio, runs, `paired ratio ${r.key}`);
      assertMeasured(r.paired.raw, runs, `raw beside ${r.key}`);
    }
    // The key backup pair: a ratio, and every shared session on the fixture after the run.
    assert.ok(report.backup);
    assertMeasured(report.backup.ratio, runs, "backup on ÷ off");
    assert.equal(report.backup.uploadedSessions.min, report.backup.expectedSessions);
    assert.equal(report.backup.expectedSessions, 10);
    assert.equal(report.send, null, "--no-send");

    // Cold start from a store of each size.
    const coldSizes = (report.options.coldSizes as number[]).map(String);
    assert.ok(coldSizes.length >= 1);
    assert.deepEqual(Object.keys(report.coldStart).sort(), [...coldSizes].sort());
    for (const n of coldSizes) {
      assertMeasured(report.coldStart[n]!.sdk.firstEventMs, runs, `cold start (sdk) first event, ${n} sessions`);
      assertMeasured(report.coldStart[n]!.main.firstEventMs, runs, `cold start (main) first event, ${n} sessions`);
    }
    assert.equal(report.memory, null, "--no-memory");

    // Targets are reported, never asserted.
    assert.ok(report.targets.length >= 1);
    for (const t of report.targets) assert.ok(typeof t.pass === "boolean" && Number.isFinite(t.measured), `target ${t.name}`);

    const svg = readFileSync(join(out, "latest.svg"), "utf8").trim();
    assert.equal(svg.slice(0, 4), "<svg");
    assert.equal(svg.slice(-6), "</svg>");
  });
});
