/**
 * The bench's per-thread CPU accounting (bench/threadCpu.ts): parsing the kernel's `schedstat`
 * and `stat` lines, and grouping the threads of a window. Pure functions, plus one reading of
 * this very process on Linux.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { parseThread, readProcess, threadCosts, type ProcessReading } from "../../bench/threadCpu.js";

describe("parseThread", () => {
  it("reads run and wait nanoseconds and the niceness, whatever the thread's name holds", () => {
    // Field 19 (nice) is 10; the name holds a space and a ')' to throw a naive split off.
    const stat = "4242 (node (x) y) S 1 4242 30700 0 -1 4194304 101 0 0 0 7 3 0 0 30 10 1 0 1265675 3133440 413";
    assert.deepEqual(parseThread("95379863 11069674 298\n", stat), { runNs: 95379863, waitNs: 11069674, nice: 10 });
  });

  it("refuses malformed lines", () => {
    assert.equal(parseThread("abc", "1 (node) S 1"), null);
    assert.equal(parseThread("1 2 3", "1 (node) S"), null);
  });
});

describe("threadCosts", () => {
  const r = (runNs: number, waitNs: number, nice = 0) => ({ runNs, waitNs, nice });
  it("names the main thread, the niced decrypt workers, the busiest other thread and the rest", () => {
    const start: ProcessReading = new Map([
      [100, r(1_000_000, 0)],
      [101, r(0, 0)],
      [102, r(500_000, 0, 10)],
      [103, r(0, 0, 10)],
      [104, r(0, 0)],
    ]);
    const end: ProcessReading = new Map([
      [100, r(21_000_000, 4_000_000)], // main: 20 ms
      [101, r(11_000_000, 2_000_000)], // busiest other: the crypto worker, 11 ms
      [102, r(50_500_000, 30_000_000, 10)], // decrypt workers: 50 + 50 ms
      [103, r(50_000_000, 20_000_000, 10)],
      [104, r(3_000_000, 0)], // a helper, 3 ms
      [105, r(2_000_000, 0)], // a helper started in the window, 2 ms
    ]);
    const fx0: ProcessReading = new Map([[7, r(1_000_000, 0)]]);
    const fx1: ProcessReading = new Map([[7, r(5_000_000, 1_000_000)]]);
    const c = threadCosts(100, start, end, fx0, fx1, 1000, 100_000_000)!;
    assert.deepEqual(c.main, { threads: 1, cpuUsPerEvent: 20, waitUsPerEvent: 4, cores: 0.2 });
    assert.deepEqual(c.cryptoWorker, { threads: 1, cpuUsPerEvent: 11, waitUsPerEvent: 2, cores: 0.11 });
    assert.deepEqual(c.decryptWorkers, { threads: 2, cpuUsPerEvent: 100, waitUsPerEvent: 50, cores: 1 });
    assert.deepEqual(c.helpers, { threads: 2, cpuUsPerEvent: 5, waitUsPerEvent: 0, cores: 0.05 });
    assert.deepEqual(c.fixture, { threads: 1, cpuUsPerEvent: 4, waitUsPerEvent: 1, cores: 0.04 });
    assert.equal(c.total.cpuUsPerEvent, 140);
    assert.equal(c.total.threads, 7);
  });

  it("has nothing to say without readings or events", () => {
    assert.equal(threadCosts(1, new Map(), new Map(), new Map(), new Map(), 10, 1), null);
    assert.equal(threadCosts(1, new Map(), new Map([[1, r(1, 1)]]), new Map(), new Map(), 0, 1), null);
  });
});

describe("readProcess", () => {
  it("reads this process's threads on Linux (its main thread among them, CPU time counted)", { skip: process.platform !== "linux" && "no /proc here" }, () => {
    const t0 = readProcess(process.pid).get(process.pid);
    let x = 0;
    for (let i = 0; i < 2e6; i++) x += Math.sqrt(i);
    const t1 = readProcess(process.pid).get(process.pid);
    assert.ok(t0 && t1 && x > 0);
    assert.ok(t1.runNs > t0.runNs, `run time grew (${t0.runNs} → ${t1.runNs})`);
  });
});
