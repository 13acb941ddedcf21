/**
 * The send benchmark's report (send.ts writes it, run.ts includes it): issue 17's targets, the
 * per-mode figures and their stdout lines. No side effects on import.
 */

/** Rooms sent into at once in the concurrent mode. */
export const SEND_ROOMS = 10;

/** Issue 17's send targets: SDK rate ÷ the plain `PUT` loop's rate, per mode. */
export const SEND_TARGETS = { encryptedSequential: 0.6, encryptedConcurrent: 0.7, plainSequential: 0.9 } as const;
/** The send modes. */
export type SendModeName = keyof typeof SEND_TARGETS;
type Mode = SendModeName;
/** What each mode is, for the tables. */
export const SEND_LABELS: Record<Mode, string> = {
  encryptedSequential: "encrypted room, 1 room, sequential",
  encryptedConcurrent: `encrypted rooms, ${SEND_ROOMS} rooms at once`,
  plainSequential: "plain room (encryption on), sequential",
};

/** One mode's figures: ratios per round (SDK ÷ mean of the PUT loop before and after), medians. */
export interface SendMode {
  label: string;
  ratio: number;
  ratioMin: number;
  ratioMax: number;
  ratios: number[];
  sdkPerSecond: number;
  rawPerSecond: number;
  target: number;
  pass: boolean;
}

/** What send.ts writes (`--out`), and what run.ts puts in its report. */
export interface SendReport {
  date: string;
  machine: { cpus: number; model: string; node: string };
  messages: number;
  rounds: number;
  modes: Record<Mode, SendMode>;
}

/** The stdout lines of a send report: a table, then PASS/FAIL per target. */
export function renderSend(report: SendReport): string[] {
  const out = [`Send throughput: ${report.messages} messages per mode, ${report.rounds} round(s); ratio = SDK msg/s ÷ mean of a plain undici PUT loop right before and after (same process), median [min–max] over rounds`];
  out.push("mode                                     sdk msg/s  PUT loop msg/s  ratio [min–max]");
  for (const v of Object.values(report.modes)) {
    out.push(`${v.label.padEnd(40)} ${v.sdkPerSecond.toFixed(0).padStart(9)}  ${v.rawPerSecond.toFixed(0).padStart(14)}  ${v.ratio.toFixed(2)} [${v.ratioMin.toFixed(2)}–${v.ratioMax.toFixed(2)}]`);
  }
  out.push("Send targets (issue 17; informational, the exit code never depends on them)");
  for (const v of Object.values(report.modes)) out.push(`  ${v.pass ? "PASS" : "FAIL"}  ${v.label}: ${v.ratio.toFixed(2)}× the PUT loop (target ≥ ${v.target}; median of ${v.ratios.length} round(s), min ${v.ratioMin.toFixed(2)})`);
  return out;
}

