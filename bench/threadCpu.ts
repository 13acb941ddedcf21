/**
 * CPU time per thread over a measured window, from the kernel's own accounting (Linux:
 * `/proc/<pid>/task/<tid>/schedstat`, nanoseconds on a core and nanoseconds runnable but waiting
 * for one; `stat` for the niceness). Event-loop utilisation counts a thread that waits for a core
 * as busy; this does not, so it tells what each thread really costs per event and how long the
 * threads queued for the 2 cores. Elsewhere (no `/proc`) every reading is empty.
 *
 * Threads are named by what the bench knows of them: the main thread (its ID is the process's),
 * the decrypt workers (the only threads the SDK niced: niceness above the main thread's), the
 * crypto worker (inferred: the busiest remaining thread; Node's V8 and libuv helpers are far
 * lighter), the rest (GC, compiler and libuv helpers), and the fixture homeserver's process.
 * The arithmetic is pure and unit-tested (test/bench/threadCpu.test.ts).
 */
import { readdirSync, readFileSync } from "node:fs";

/** One thread's cumulative figures. */
export interface ThreadReading {
  /** ns on a core. */
  runNs: number;
  /** ns runnable, waiting for a core. */
  waitNs: number;
  nice: number;
}

/** Every thread of a process: tid → reading (empty without `/proc`). */
export type ProcessReading = Map<number, ThreadReading>;

/** Parses `schedstat` ("run wait slices") and `stat` (niceness: field 19) of one thread; null when malformed. */
export function parseThread(schedstat: string, stat: string): ThreadReading | null {
  const [run, wait] = schedstat.trim().split(/\s+/).map(Number);
  // The comm field (2) is in parentheses and may hold spaces: count fields after its last ')'.
  const after = stat.slice(stat.lastIndexOf(")") + 1).trim().split(/\s+/);
  const nice = Number(after[16]); // field 19 overall: the 17th after comm (state is field 3)
  if (!Number.isFinite(run) || !Number.isFinite(wait) || !Number.isFinite(nice)) return null;
  return { runNs: run!, waitNs: wait!, nice };
}

/** Reads every thread of `pid` now. */
export function readProcess(pid: number): ProcessReading {
  const out: ProcessReading = new Map();
  let tids: string[];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return out;
  }
  for (const t of tids) {
    try {
      const r = parseThread(readFileSync(`/proc/${pid}/task/${t}/schedstat`, "utf8"), readFileSync(`/proc/${pid}/task/${t}/stat`, "utf8"));
      if (r) out.set(Number(t), r);
    } catch {
      // the thread ended between the listing and the read
    }
  }
  return out;
}

/** CPU and queueing of one group of threads over the window, µs per event. */
export interface ThreadGroupCost {
  threads: number;
  cpuUsPerEvent: number;
  waitUsPerEvent: number;
  /** Share of the window's wall time on a core (1 = one core for the whole window). */
  cores: number;
}

/** {@link threadCosts}' result. */
export interface ThreadCosts {
  main: ThreadGroupCost;
  decryptWorkers: ThreadGroupCost;
  /** The busiest thread that is neither the main thread nor niced: the crypto worker. */
  cryptoWorker: ThreadGroupCost;
  /** Every other thread of the client's process (V8 GC and compiler threads, libuv's pool). */
  helpers: ThreadGroupCost;
  /** The fixture homeserver's process, all its threads. */
  fixture: ThreadGroupCost;
  /** All of them: what the window asked of the machine's cores. */
  total: ThreadGroupCost;
}

const group = (diffs: { runNs: number; waitNs: number }[], events: number, windowNs: number): ThreadGroupCost => {
  const run = diffs.reduce((a, d) => a + d.runNs, 0);
  const wait = diffs.reduce((a, d) => a + d.waitNs, 0);
  return { threads: diffs.length, cpuUsPerEvent: run / 1000 / events, waitUsPerEvent: wait / 1000 / events, cores: windowNs > 0 ? run / windowNs : NaN };
};

/**
 * Per-event CPU of each group between two readings of the client's process (`pid`) and of the
 * fixture's. Threads present in `end` only count from zero (started in the window); threads gone
 * by `end` are not counted (none of the groups ends inside a window). Null without readings.
 */
export function threadCosts(pid: number, start: ProcessReading, end: ProcessReading, fixtureStart: ProcessReading, fixtureEnd: ProcessReading, events: number, windowNs: number): ThreadCosts | null {
  if (!end.size || !(events > 0)) return null;
  const diff = (a: ProcessReading, b: ProcessReading): Map<number, ThreadReading> => {
    const out = new Map<number, ThreadReading>();
    for (const [tid, e] of b) {
      const s = a.get(tid);
      out.set(tid, { runNs: Math.max(0, e.runNs - (s?.runNs ?? 0)), waitNs: Math.max(0, e.waitNs - (s?.waitNs ?? 0)), nice: e.nice });
    }
    return out;
  };
  const d = diff(start, end);
  const main = d.get(pid);
  const mainNice = main?.nice ?? 0;
  const niced = [...d].filter(([tid, r]) => tid !== pid && r.nice > mainNice).map(([, r]) => r);
  const others = [...d].filter(([tid, r]) => tid !== pid && r.nice <= mainNice).map(([, r]) => r).sort((a, b) => b.runNs - a.runNs);
  const fixture = [...diff(fixtureStart, fixtureEnd).values()];
  const all = [...d.values(), ...fixture];
  return {
    main: group(main ? [main] : [], events, windowNs),
    decryptWorkers: group(niced, events, windowNs),
    cryptoWorker: group(others.slice(0, 1), events, windowNs),
    helpers: group(others.slice(1), events, windowNs),
    fixture: group(fixture, events, windowNs),
    total: group(all, events, windowNs),
  };
}
