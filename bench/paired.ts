/**
 * Paired ratios (issue 17, item 4): each client run is bracketed by two raw libolm passes in the
 * same process (rawLoop.ts), and its figure is its rate over the mean of those two, so the host's
 * minute-to-minute drift — raw alone moves ±20 % between processes on this machine — cancels out
 * of the ratio. Pure functions, unit-tested in test/bench/paired.test.ts.
 */
import { round, summarize, type Summary } from "./common.js";

/** One client run with its raw passes (events/s). */
export interface PairedRun {
  eps: number;
  rawBefore: number;
  rawAfter: number;
}

/** The paired ratios of a series of runs. */
export interface PairedSummary {
  /** Per run: eps ÷ mean(raw before, raw after); median/min/max over runs. */
  ratio: Summary;
  /** The client's events/s. */
  eps: Summary;
  /** Per run: mean(raw before, raw after). */
  raw: Summary;
  /** Per run: raw after ÷ raw before (1 = no drift during the run). */
  rawDrift: Summary;
}

const ok = (x: number): boolean => Number.isFinite(x) && x > 0;

/**
 * `eps` over the mean of the raw rates measured right before and right after it. NaN when a raw
 * figure is missing or not positive; with one of the two missing, the other alone.
 */
export function pairedRatio(eps: number, rawBefore: number, rawAfter: number): number {
  if (!Number.isFinite(eps) || eps < 0) return NaN;
  const raws = [rawBefore, rawAfter].filter(ok);
  if (!raws.length) return NaN;
  return eps / (raws.reduce((a, b) => a + b, 0) / raws.length);
}

/** Paired ratio, client rate, raw mean and raw drift of each run; median, min, max over runs. */
export function summarizePaired(runs: PairedRun[]): PairedSummary {
  return {
    ratio: summarize(runs.map((r) => round(pairedRatio(r.eps, r.rawBefore, r.rawAfter), 3))),
    eps: summarize(runs.map((r) => r.eps)),
    raw: summarize(runs.map((r) => {
      const raws = [r.rawBefore, r.rawAfter].filter(ok);
      return raws.length ? raws.reduce((a, b) => a + b, 0) / raws.length : NaN;
    })),
    rawDrift: summarize(runs.map((r) => (ok(r.rawBefore) && ok(r.rawAfter) ? round(r.rawAfter / r.rawBefore, 3) : NaN))),
  };
}

/**
 * Run-by-run ratio of two interleaved series (run i of `a` over run i of `b`), e.g. backup over
 * no-backup; runs missing on either side are NaN (and left out of the summary's median).
 */
export function ratioPerRun(a: (number | null)[], b: (number | null)[]): number[] {
  const n = Math.max(a.length, b.length);
  return Array.from({ length: n }, (_, i) => {
    const x = a[i];
    const y = b[i];
    return x != null && y != null && Number.isFinite(x) && ok(y) ? round(x / y, 3) : NaN;
  });
}
