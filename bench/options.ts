/**
 * The benchmark's command-line options, and where a run writes its results: a full run
 * `bench/results/` (the committed figures the README quotes), a `--quick` run
 * `bench/results/quick/` (git-ignored), `--out DIR` wherever asked.
 */
import { join } from "node:path";
import { REPO_ROOT } from "./common.js";

export interface Options {
  quick: boolean;
  runs: number;
  rooms: number;
  senders: number;
  messages: number;
  batch: number;
  payloads: number[];
  coldSizes: number[];
  memory: { rooms: number; senders: number; messages: number } | null;
  experiments: boolean;
  /** sdk at other sync sizes, and with big rooms. */
  sweep: { batches: number[]; extraMembers: number } | null;
  profile: boolean;
  keepTemp: boolean;
  idleSeconds: number;
  /** Where latest.json and latest.svg go (`--out`); null: {@link resultsDir}'s default. */
  outDir: string | null;
}

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
  return {
    quick,
    runs: num("--runs", 3),
    rooms: num("--rooms", quick ? 5 : 10),
    senders: num("--senders", 5),
    messages: num("--messages", quick ? 120 : 200),
    batch: num("--batch", 250),
    payloads: [200, 2048],
    coldSizes: has("--no-cold") ? [] : quick ? [1_000, 10_000] : [10_000, 100_000],
    memory: has("--no-memory") ? null : quick ? { rooms: 20, senders: 5, messages: 100 } : { rooms: 100, senders: 10, messages: 100 },
    experiments: !has("--no-experiments"),
    sweep: has("--no-sweep") ? null : quick ? { batches: [], extraMembers: 200 } : { batches: [50, 100, 500, 1000], extraMembers: 500 },
    profile: !has("--no-profile"),
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
