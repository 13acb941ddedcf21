/**
 * The bench's paired ratios (issue 17 item 4): a client run over the mean of the raw libolm rates
 * measured right before and after it in the same process; run-by-run ratios of interleaved
 * series (key backup on ÷ off); the headline's rows and PASS/FAIL lines built from them.
 * Pure functions: no timing here.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { pairedRatio, ratioPerRun, summarizePaired } from "../../bench/paired.js";
import { BACKUP_MIN_RATIO, headline, headlineTargets } from "../../bench/headline.js";
import type { BackupFigures, ClientResult } from "../../bench/measure.js";
import { parseArgs, parseShape } from "../../bench/options.js";

describe("paired ratio", () => {
  it("divides by the mean of the raw rates before and after, not by either one", () => {
    assert.equal(pairedRatio(900, 1000, 800), 1);
    assert.equal(pairedRatio(450, 1000, 500), 0.6);
    assert.equal(pairedRatio(0, 1000, 1000), 0);
  });

  it("uses the one raw figure there is, and is NaN without any or with a bad client rate", () => {
    assert.equal(pairedRatio(500, NaN, 1000), 0.5);
    assert.equal(pairedRatio(500, 1000, 0), 0.5);
    assert.ok(Number.isNaN(pairedRatio(500, NaN, NaN)));
    assert.ok(Number.isNaN(pairedRatio(500, 0, -1)));
    assert.ok(Number.isNaN(pairedRatio(NaN, 1000, 1000)));
    assert.ok(Number.isNaN(pairedRatio(-1, 1000, 1000)));
  });

  it("summarises per run: the median of the paired ratios, not the ratio of medians", () => {
    // Raw drifts from 1000 to 2000 ev/s between runs; the client keeps 0.8× of it in every run.
    const runs = [
      { eps: 800, rawBefore: 1000, rawAfter: 1000 },
      { eps: 1600, rawBefore: 2200, rawAfter: 1800 },
      { eps: 1200, rawBefore: 1500, rawAfter: 1500 },
    ];
    const s = summarizePaired(runs);
    assert.deepEqual(s.ratio.runs, [0.8, 0.8, 0.8]);
    assert.equal(s.ratio.median, 0.8);
    assert.deepEqual([s.ratio.min, s.ratio.max], [0.8, 0.8]);
    assert.deepEqual(s.raw.runs, [1000, 2000, 1500]);
    assert.equal(s.eps.median, 1200);
    // Drift within a run: after ÷ before.
    assert.deepEqual(s.rawDrift.runs, [1, 0.818, 1]);
    // The ratio of medians would differ when the fastest client run is not in the fastest raw minute.
    const skew = summarizePaired([
      { eps: 900, rawBefore: 1000, rawAfter: 1000 },
      { eps: 1000, rawBefore: 2000, rawAfter: 2000 },
      { eps: 1100, rawBefore: 1200, rawAfter: 1200 },
    ]);
    assert.deepEqual(skew.ratio.runs, [0.9, 0.5, 0.917]);
    assert.equal(skew.ratio.median, 0.9);
    assert.deepEqual([skew.ratio.min, skew.ratio.max], [0.5, 0.917]);
  });

  it("leaves a run without raw figures out of the median but keeps its place", () => {
    const s = summarizePaired([
      { eps: 500, rawBefore: 1000, rawAfter: 1000 },
      { eps: 500, rawBefore: NaN, rawAfter: NaN },
      { eps: 700, rawBefore: 1000, rawAfter: 1000 },
    ]);
    assert.equal(s.ratio.runs.length, 3);
    assert.ok(Number.isNaN(s.ratio.runs[1]));
    assert.equal(s.ratio.median, 0.6);
  });
});

describe("run-by-run ratio of interleaved series", () => {
  it("pairs run i with run i; a failed run on either side is NaN, not a shift", () => {
    assert.deepEqual(ratioPerRun([90, 100, 120], [100, 125, 100]), [0.9, 0.8, 1.2]);
    const r = ratioPerRun([90, null, 120], [100, 125, null]);
    assert.equal(r[0], 0.9);
    assert.ok(Number.isNaN(r[1]!) && Number.isNaN(r[2]!));
    assert.ok(Number.isNaN(ratioPerRun([90], [0])[0]!));
    assert.equal(ratioPerRun([1, 2], [1]).length, 2);
  });
});

/** A client run with only the fields the headline reads. */
function run(eps: number, before: number, after: number, extra: Partial<ClientResult> = {}): ClientResult {
  return {
    mode: "sdk", decrypted: 1000, undecryptable: 0, failureCodes: {}, seconds: 1, eps, fullSeconds: 1, fullEps: eps, firstEventMs: 1, syncs: 4,
    loop: { p50: 1, p99: 4, max: 9, probeLateP99: 1, probeLateMax: 2, elu: 0.1 } as ClientResult["loop"],
    workerElu: 0.9, prepareToDeviceMs: 1, pairedRaw: { before, after }, ...extra,
  };
}

describe("headline rows and targets", () => {
  const m = (rooms: number, senders: number, messages: number): Record<string, unknown> => ({ rooms, senders, messagesPerRoomAndSender: messages, payloadBytes: 200, totalEvents: rooms * senders * messages, sessions: rooms * senders, lostSessions: 0 });
  const backupFig = (done: number, uploaded: number): BackupFigures => ({ enableMs: 10, doneAfterLastEventMs: done, uploadedSessions: uploaded, expectedSessions: 1000, puts: 10 });
  const input = {
    manifests: { "200": m(10, 5, 200) },
    scaleManifests: { rooms1000x5x2: m(1000, 5, 2) },
    backupManifest: m(10, 100, 10),
    client: {
      "sdk:200": [run(910, 1000, 1000), run(880, 1000, 1000), run(950, 1000, 1000)],
      "main:200": [run(800, 1000, 1000)],
      "sdk:rooms1000x5x2": [run(700, 1000, 1000), run(790, 1000, 1000), run(850, 1000, 1000)],
    },
    backup: {
      off: [run(1000, 1000, 1000), run(2000, 2000, 2000), null],
      on: [run(900, 1000, 1000, { backup: backupFig(40, 1000) }), run(2000, 2000, 2000, { backup: backupFig(60, 1000) }), run(1, 1, 1, { backup: backupFig(NaN, 990) })],
    },
  };

  it("holds 10-room sdk runs to 0.90, many-room ones to 0.80, main-thread to nothing, by the median paired ratio", () => {
    const { rows } = headline(input);
    assert.deepEqual(rows.map((r) => [r.key, r.target]), [["sdk:200", 0.9], ["main:200", null], ["sdk:rooms1000x5x2", 0.8], ["sdk:backup", null], ["sdk+backup:backup", null]]);
    assert.equal(rows[0]!.workload, "10 rooms × 5 × 200, 200 B");
    assert.equal(rows[2]!.workload, "1,000 rooms × 5 × 2, 200 B");
    const t = headlineTargets(rows, null, null);
    const byName = Object.fromEntries(t.map((x) => [x.name, x]));
    assert.equal(byName["paired sdk/raw, 10 rooms × 5 × 200, 200 B"]!.measured, 0.91);
    assert.equal(byName["paired sdk/raw, 10 rooms × 5 × 200, 200 B"]!.pass, true);
    assert.equal(byName["paired sdk/raw, 1,000 rooms × 5 × 2, 200 B"]!.measured, 0.79);
    assert.equal(byName["paired sdk/raw, 1,000 rooms × 5 × 2, 200 B"]!.pass, false);
    assert.equal(byName["event-loop p99 during sdk decryption, 10 rooms × 5 × 200, 200 B"]!.pass, true);
    assert.ok(!t.some((x) => x.name.includes("main")));
  });

  it("pairs backup on and off by run number and checks that every session was uploaded", () => {
    const { rows, backup } = headline(input);
    assert.ok(backup);
    // Run 3 has no "off": left out; runs 1 and 2 give 0.9 and 1.
    assert.equal(backup.ratio.runs.length, 3);
    assert.equal(backup.ratio.median, 0.95);
    assert.deepEqual([backup.ratio.min, backup.ratio.max], [0.9, 1]);
    assert.equal(backup.uploadedSessions.min, 990);
    const t = headlineTargets(rows, backup, null);
    const ratio = t.find((x) => x.name.startsWith("key backup on ÷ off"))!;
    assert.equal(ratio.pass, 0.95 >= BACKUP_MIN_RATIO);
    assert.equal(t.find((x) => x.name.startsWith("key backup complete"))!.pass, false, "one run uploaded 990 of 1000");
  });

  it("adds one line per send mode, passing when its median ratio reaches the target", () => {
    const mode = (ratio: number, target: number) => ({ label: `m${target}`, ratio, ratioMin: ratio, ratioMax: ratio, ratios: [ratio], sdkPerSecond: 1, rawPerSecond: 1, target, pass: ratio >= target });
    const send = { date: "", machine: { cpus: 2, model: "", node: "" }, messages: 1, rounds: 1, modes: { encryptedSequential: mode(0.61, 0.6), encryptedConcurrent: mode(0.5, 0.7), plainSequential: mode(0.95, 0.9) } };
    const t = headlineTargets([], null, send).map((x) => [x.measured, x.pass]);
    assert.deepEqual(t, [[0.61, true], [0.5, false], [0.95, true]]);
  });
});

describe("bench workload options", () => {
  it("runs the 1,000-room workloads and the backup pair by default, smaller with --quick, as given with --scale", () => {
    assert.deepEqual(parseArgs([]).scale, [{ rooms: 1000, senders: 5, messages: 2 }, { rooms: 1000, senders: 1, messages: 10 }]);
    assert.deepEqual(parseArgs([]).backup, { rooms: 10, senders: 100, messages: 10 });
    assert.deepEqual(parseArgs(["--scale", "20x5x2,20x1x10"]).scale, [{ rooms: 20, senders: 5, messages: 2 }, { rooms: 20, senders: 1, messages: 10 }]);
    assert.deepEqual(parseArgs(["--no-scale", "--no-backup", "--no-send"]).scale, []);
    assert.equal(parseArgs(["--no-backup"]).backup, null);
    assert.equal(parseArgs(["--no-send"]).send, null);
    assert.equal(parseArgs(["--runs", "1"]).secondaryRuns, 1);
    assert.throws(() => parseShape("1000x5"));
    assert.throws(() => parseShape("0x5x2"));
  });
});
