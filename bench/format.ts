/** Number and table formatting shared by the stdout table and the SVG. Bench code only. */
import { round, type Summary } from "./common.js";

/** A payload size for people: "200 B", "2 KB". */
export const label = (p: string): string => (Number(p) >= 1024 ? `${round(Number(p) / 1024, 1)} KB` : `${p} B`);

/** `x` with thousands separators and `d` decimals; "—" when not a number. */
export const fmt = (x: number, d = 0): string => (Number.isFinite(x) ? x.toLocaleString("en-US", { minimumFractionDigits: d, maximumFractionDigits: d }) : "—");
/** "median [min–max]". */
export const cell = (s: Summary, d = 0): string => (Number.isFinite(s.median) ? `${fmt(s.median, d)} [${fmt(s.min, d)}–${fmt(s.max, d)}]` : "—");

/** A plain-text table: first column left-aligned, the others right-aligned. */
export function table(head: string[], rows: string[][]): string {
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cols: string[]): string => cols.map((c, i) => (i === 0 ? c.padEnd(w[i]!) : c.padStart(w[i]!))).join("  ");
  return [line(head), w.map((n) => "-".repeat(n)).join("  "), ...rows.map(line)].join("\n");
}
