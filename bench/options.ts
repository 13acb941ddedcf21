/**
 * The benchmark's command-line options, and where a run writes its results: a full run
 * `bench/results/` (the committed figures the README quotes), a `--quick` run
 * `bench/results/quick/` (git-ignored), `--out DIR` wherever asked.
 */
import { join } from "node:path";
import { REPO_ROOT } from "./common.js";
import type { DecryptWorkers } from "./pool.js";

/** A workload shape: rooms × sending devices × messages per (room, sender). */
export interface Shape {
  rooms: number;
  senders: number;
  messages: number;
}

export interface Options {
  quick: boolean;
  runs: number;
  /** Runs of the secondary experiments (what-if, sweep, cold start, memory): fewer than `runs` to keep a full run near 10 minutes. */
  secondaryRuns: number;
  rooms: number;
  senders: number;
  messages: number;
  batch: number;
  payloads: number[];
  coldSizes: number[];
  memory: Shape | null;
  /** Many-room workloads (issue 17 item 1), 200 B, sdk paired with raw. */
  scale: Shape[];
  /** Key backup on/off pair (issue 15): many sessions, all keys in the first sync. */
  backup: Shape | null;
  /** The send benchmark (send.ts), run once in its own process: messages per mode and rounds. */
  send: { messages: number; rounds: number } | null;
  experiments: boolean;
  /** sdk at other sync sizes, and with big rooms. */
  sweep: { batches: number[]; extraMembers: number } | null;
  profile: boolean;
  /**
   * Pool modes (issue 18): `decryptWorkers` values on the 10-room 200 B workload, on the first
   * many-room workload (its decryptWorkers 1 figure is the plain sdk run's: the same path) and on
   * the skewed one; the skewed workload's other rooms and hot room share; the runs they get;
   * `longMessages`: messages per sender of the long pool workload (the 10-room shape, 3× the
   * events; 0: none), so the JIT's warm-up weighs less than in the 10,000-event headline.
   */
  pool: { workers: DecryptWorkers[]; manyRoomsWorkers: DecryptWorkers[]; skewWorkers: DecryptWorkers[]; skewRooms: number; hotShare: number; runs: number; longMessages: number } | null;
  keepTemp: boolean;
  idleSeconds: number;
  /** Where latest.json and latest.svg go (`--out`); null: {@link resultsDir}'s default. */
  outDir: string | null;
}

/** "1000x5x2" → 1,000 rooms × 5 senders × 2 messages; throws on anything else. */
export function parseShape(s: string): Shape {
  const m = /^(\d+)x(\d+)x(\d+)$/.exec(s.trim());
  if (!m || [m[1], m[2], m[3]].some((x) => Number(x) <= 0)) throw new Error(`a workload shape is ROOMSxSENDERSxMESSAGES, e.g. 1000x5x2 (got "${s}")`);
  return { rooms: Number(m[1]), senders: Number(m[2]), messages: Number(m[3]) };
}

/** Parse `npm run bench -- …` arguments (see bench/README.md); throws on a bad number. */
export function parseArgs(argv: string[]): Options {
  const has = (f: string): boolean => argv.includes(f);
  const num = (f: string, d: number): number => {
    const i = argv.indexOf(f);
    if (i < 0) return d;
    const v = Number(argv[i + 1]);
    if (!Number.isFinite(v) || v <= 0) throw new Error(`${f} needs a positive number`);
    return Math.floor(v);
  };
  const quick = has("--quick");
  const runs = num("--runs", 3);
  const shapes = (f: string): Shape[] | null => {
    const i = argv.indexOf(f);
    if (i < 0) return null;
    return (argv[i + 1] ?? "").split(",").map(parseShape);
  };
  return {
    quick,
    runs,
    secondaryRuns: Math.min(runs, num("--secondary-runs", 1)),
    rooms: num("--rooms", quick ? 5 : 10),
    senders: num("--senders", 5),
    messages: num("--messages", quick ? 120 : 200),
    batch: num("--batch", 250),
    payloads: [200, 2048],
    // --quick keeps to ~2 minutes on this machine: one cold-start store, no memory mode (--memory adds it).
    coldSizes: has("--no-cold") ? [] : quick ? [10_000] : [10_000, 100_000],
    memory: has("--no-memory") || (quick && !has("--memory")) ? null : quick ? { rooms: 20, senders: 5, messages: 100 } : { rooms: 100, senders: 10, messages: 100 },
    scale: has("--no-scale") ? [] : shapes("--scale") ?? (quick ? [{ rooms: 250, senders: 5, messages: 2 }, { rooms: 250, senders: 1, messages: 10 }] : [{ rooms: 1000, senders: 5, messages: 2 }, { rooms: 1000, senders: 1, messages: 10 }]),
    backup: has("--no-backup") ? null : shapes("--backup-shape")?.[0] ?? (quick ? { rooms: 5, senders: 40, messages: 10 } : { rooms: 10, senders: 100, messages: 10 }),
    send: has("--no-send") ? null : quick ? { messages: 100, rounds: 2 } : { messages: 300, rounds: 3 },
    experiments: !has("--no-experiments"),
    sweep: has("--no-sweep") ? null : quick ? { batches: [], extraMembers: 200 } : { batches: [50, 100, 500, 1000], extraMembers: 500 },
    profile: !has("--no-profile"),
    // --quick: the pool modes in one run only (2 minutes → under 3).
    pool: has("--no-pool") ? null : { workers: [1, 2, "auto"], manyRoomsWorkers: [2], skewWorkers: [1, 2], skewRooms: num("--skew-rooms", 10), hotShare: 0.5, runs: Math.min(runs, num("--pool-runs", quick ? 1 : runs)), longMessages: num("--long-messages", quick ? 0 : 3 * num("--messages", 200)) },
    keepTemp: has("--keep-temp"),
    idleSeconds: quick ? 1 : 2,
    outDir: (() => {
      const i = argv.indexOf("--out");
      return i >= 0 && argv[i + 1] ? argv[i + 1]! : null;
    })(),
  };
}

/** The folder latest.json and latest.svg go to for these options. */
export function resultsDir(opts: Pick<Options, "quick" | "outDir">): string {
  if (opts.outDir) return opts.outDir;
  return opts.quick ? join(REPO_ROOT, "bench", "results", "quick") : join(REPO_ROOT, "bench", "results");
}
