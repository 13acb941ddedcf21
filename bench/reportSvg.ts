/** The SVG chart of a benchmark report (hand-written, no dependencies). */
import { round, type Summary } from "./common.js";
import { fmt, label } from "./format.js";
import type { LoopSummary, Report } from "./report.js";

// -------------------------------------------------------------------------------------------------
// SVG chart (hand-written, no dependencies)

const esc = (s: string): string => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");

/** The report drawn as one SVG (throughput, paired ratios, event-loop delay, cold start, memory, targets). */
export function renderSvg(rep: Report): string {
  const W = 980;
  const parts: string[] = [];
  let y = 0;
  const text = (x: number, yy: number, s: string, opts: { size?: number; anchor?: string; weight?: string; fill?: string } = {}): void => {
    parts.push(`<text x="${round(x, 1)}" y="${round(yy, 1)}" font-size="${opts.size ?? 12}" text-anchor="${opts.anchor ?? "start"}"${opts.weight ? ` font-weight="${opts.weight}"` : ""} fill="${opts.fill ?? "#222"}">${esc(s)}</text>`);
  };
  const rect = (x: number, yy: number, w: number, h: number, fill: string): void => {
    parts.push(`<rect x="${round(x, 1)}" y="${round(yy, 1)}" width="${round(Math.max(0, w), 1)}" height="${round(Math.max(0, h), 1)}" fill="${fill}"/>`);
  };
  const line = (x1: number, y1: number, x2: number, y2: number, stroke: string, dash = "", width = 1): void => {
    parts.push(`<line x1="${round(x1, 1)}" y1="${round(y1, 1)}" x2="${round(x2, 1)}" y2="${round(y2, 1)}" stroke="${stroke}" stroke-width="${width}"${dash ? ` stroke-dasharray="${dash}"` : ""}/>`);
  };
  const m = rep.machine;
  text(20, 26, `Decrypt throughput and main-thread responsiveness — ${rep.date.slice(0, 10)}${rep.options.quick ? " (--quick run)" : ""}`, { size: 17, weight: "bold" });
  text(20, 46, `${String(m.os)}, ${String(m.cpus)} CPUs, Node ${String(m.node)}, libolm ${String(m.libolm)}, SDK ${String(m.sdk)} — medians of ${String(rep.options.runs)} runs, whiskers min–max. Shared, noisy machine.`, { size: 11, fill: "#555" });
  y = 70;

  const colors: Record<string, string> = { raw: "#7f7f7f", rawParse: "#b0b0b0", sdk: "#1f77b4", main: "#d62728", p99: "#ff7f0e", max: "#8c564b" };

  // Panel 0 (headline): paired ratios per workload and mode, and the send ratios
  const prow: { name: string; s: Summary; target: number | null; color: string }[] = rep.paired.map((x) => ({
    name: `${x.workload} — ${x.mode}`,
    s: x.paired.ratio,
    target: x.target,
    color: x.key.startsWith("main") ? colors.main! : x.key.includes("backup") ? "#17becf" : colors.sdk!,
  }));
  for (const v of Object.values(rep.send?.modes ?? {})) prow.push({ name: `send: ${v.label} ÷ PUT loop`, s: { median: v.ratio, min: v.ratioMin, max: v.ratioMax, runs: v.ratios }, target: v.target, color: "#9467bd" });
  if (prow.length) {
    const top = y + 30;
    const rowH = 20;
    const left = 420;
    const right = W - 120;
    text(20, y + 12, "Headline: paired ratios (client ÷ raw libolm right before and after, same process; sends ÷ plain PUT loop)", { size: 14, weight: "bold" });
    const scaleMax = 1.2;
    const xOf = (v: number): number => left + (Math.min(scaleMax, Math.max(0, v)) / scaleMax) * (right - left);
    for (const v of [0, 0.2, 0.4, 0.6, 0.8, 1.0, 1.2]) {
      line(xOf(v), top - 4, xOf(v), top + prow.length * rowH, v === 1 ? "#999" : "#e5e5e5");
      text(xOf(v), top + prow.length * rowH + 14, `${v.toFixed(1)}×`, { size: 10, anchor: "middle", fill: "#666" });
    }
    prow.forEach((r, i) => {
      const yy = top + i * rowH;
      text(left - 8, yy + 13, r.name.length > 66 ? r.name.slice(0, 65) + "…" : r.name, { size: 10.5, anchor: "end" });
      if (Number.isFinite(r.s.median)) {
        rect(left, yy + 3, xOf(r.s.median) - left, rowH - 6, r.color);
        line(xOf(r.s.min), yy + rowH / 2, xOf(r.s.max), yy + rowH / 2, "#000");
      }
      if (r.target !== null) line(xOf(r.target), yy + 1, xOf(r.target), yy + rowH - 1, "#2ca02c", "", 2.5);
      const verdict = r.target === null ? "" : r.s.median >= r.target ? " PASS" : " FAIL";
      text(xOf(Math.max(r.s.max, r.s.median)) + 4, yy + 13, `${fmt(r.s.median, 2)}×${verdict}`, { size: 10, fill: verdict === " FAIL" ? "#d62728" : "#222" });
    });
    text(right + 10, top + 8, "green tick:", { size: 10, fill: "#2ca02c" });
    text(right + 10, top + 20, "issue 17 target", { size: 10, fill: "#2ca02c" });
    y = top + prow.length * rowH + 34;
  }

  // Panel 1: throughput bars
  {
    const top = y + 24;
    const h = 220;
    const left = 80;
    const right = W - 30;
    text(20, y + 12, "Decrypted events per second, 10 rooms (higher is better; raw here in its own process)", { size: 14, weight: "bold" });
    const series: [keyof Report["throughput"][string], string][] = [
      ["raw", "raw: libolm decrypt alone"],
      ["rawParse", "raw + JSON.parse"],
      ["sdk", "sdk (worker, full path)"],
      ["main", "main-thread engine"],
    ];
    const payloads = Object.keys(rep.throughput);
    const maxV = Math.max(1, ...payloads.flatMap((p) => series.map(([k]) => (rep.throughput[p]![k] as Summary).max).filter(Number.isFinite)));
    const scaleMax = niceCeil(maxV);
    const yOf = (v: number): number => top + h - (v / scaleMax) * h;
    for (let i = 0; i <= 4; i++) {
      const v = (scaleMax * i) / 4;
      line(left, yOf(v), right, yOf(v), "#e5e5e5");
      text(left - 6, yOf(v) + 4, fmt(v), { size: 10, anchor: "end", fill: "#666" });
    }
    const groupW = (right - left) / payloads.length;
    const barW = Math.min(70, (groupW - 60) / series.length);
    payloads.forEach((p, gi) => {
      const gx = left + gi * groupW + (groupW - barW * series.length) / 2;
      series.forEach(([k], si) => {
        const s = rep.throughput[p]![k] as Summary;
        const x = gx + si * barW;
        if (!Number.isFinite(s.median)) return;
        rect(x + 4, yOf(s.median), barW - 8, top + h - yOf(s.median), colors[k]!);
        line(x + barW / 2, yOf(s.min), x + barW / 2, yOf(s.max), "#000");
        line(x + barW / 2 - 5, yOf(s.min), x + barW / 2 + 5, yOf(s.min), "#000");
        line(x + barW / 2 - 5, yOf(s.max), x + barW / 2 + 5, yOf(s.max), "#000");
        text(x + barW / 2, yOf(s.max) - 4, fmt(s.median), { size: 10, anchor: "middle" });
        if (k === "sdk" || k === "main") text(x + barW / 2, top + h - 6, `${fmt(s.median / rep.throughput[p]!.raw.median, 2)}×`, { size: 10, anchor: "middle", fill: "#fff", weight: "bold" });
      });
      const w = rep.workloads.throughput[p]!;
      text(left + gi * groupW + groupW / 2, top + h + 16, `${label(p)} payload — ${fmt(Number(w.totalEvents))} events`, { size: 12, anchor: "middle" });
    });
    line(left, top + h, right, top + h, "#333");
    let lx = left;
    for (const [k, name] of series) {
      rect(lx, top + h + 28, 12, 12, colors[k]!);
      text(lx + 16, top + h + 38, name, { size: 11 });
      lx += 40 + name.length * 6;
    }
    text(right, top + h + 38, "× = ratio of medians to raw in its own process (secondary)", { size: 11, anchor: "end", fill: "#555" });
    y = top + h + 60;
  }

  // Panel 2: event-loop delay (log scale)
  {
    const top = y + 24;
    const h = 200;
    const left = 80;
    const right = W - 30;
    text(20, y + 12, "Main-thread event-loop delay while decrypting, ms (log scale; lower is better)", { size: 14, weight: "bold" });
    const rows: [string, LoopSummary | null][] = [["idle (floor)", rep.eventLoop.idle]];
    for (const [p, e] of Object.entries(rep.eventLoop.byPayload)) {
      rows.push([`sdk ${label(p)}`, e.sdk]);
      rows.push([`main-thread ${label(p)}`, e.main]);
    }
    const lo = 0.5;
    const hiV = Math.max(100, ...rows.flatMap(([, l]) => (l ? [l.max.max] : [])).filter(Number.isFinite));
    const hi = hiV * 1.6;
    const yOf = (v: number): number => top + h - ((Math.log10(Math.max(lo, v)) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo))) * h;
    for (let d = 1; d <= hi; d *= 10) {
      line(left, yOf(d), right, yOf(d), "#e5e5e5");
      text(left - 6, yOf(d) + 4, String(d), { size: 10, anchor: "end", fill: "#666" });
    }
    line(left, yOf(5), right, yOf(5), colors.p99!, "6 4");
    text(left + 4, yOf(5) - 3, "p99 target 5 ms (sdk, issue 17)", { size: 10, fill: colors.p99! });
    line(left, yOf(50), right, yOf(50), colors.max!, "6 4");
    text(left + 4, yOf(50) - 3, "max target 50 ms", { size: 10, fill: colors.max! });
    const groupW = (right - left) / rows.length;
    const barW = Math.min(40, (groupW - 20) / 2);
    rows.forEach(([name, l], gi) => {
      const gx = left + gi * groupW + (groupW - 2 * barW) / 2;
      if (l) {
        (["p99", "max"] as const).forEach((k, si) => {
          const s = l[k];
          const x = gx + si * barW;
          rect(x + 3, yOf(s.median), barW - 6, top + h - yOf(s.median), colors[k]!);
          line(x + barW / 2, yOf(s.min), x + barW / 2, yOf(s.max), "#000");
          text(x + barW / 2, yOf(Math.max(s.max, s.median)) - 4, fmt(s.median, s.median < 10 ? 1 : 0), { size: 10, anchor: "middle" });
        });
      }
      text(left + gi * groupW + groupW / 2, top + h + 16, name, { size: 11, anchor: "middle" });
    });
    line(left, top + h, right, top + h, "#333");
    rect(left, top + h + 28, 12, 12, colors.p99!);
    text(left + 16, top + h + 38, "p99", { size: 11 });
    rect(left + 60, top + h + 28, 12, 12, colors.max!);
    text(left + 76, top + h + 38, "max", { size: 11 });
    text(right, top + h + 38, "raw mode: n/a (a synchronous loop blocks the event loop for the whole run)", { size: 11, anchor: "end", fill: "#555" });
    y = top + h + 60;
  }

  // Panel 3: cold start + memory
  const coldKeys = Object.keys(rep.coldStart);
  if (coldKeys.length) {
    const top = y + 24;
    const h = 160;
    const left = 80;
    const right = W / 2 + 40;
    text(20, y + 12, "Cold start → first decrypted event, ms", { size: 14, weight: "bold" });
    const vals = coldKeys.flatMap((n) => [rep.coldStart[n]!.sdk.firstEventMs.max, rep.coldStart[n]!.main.firstEventMs.max]).filter(Number.isFinite);
    const scaleMax = niceCeil(Math.max(1100, ...vals));
    const yOf = (v: number): number => top + h - (v / scaleMax) * h;
    for (let i = 0; i <= 4; i++) {
      const v = (scaleMax * i) / 4;
      line(left, yOf(v), right, yOf(v), "#e5e5e5");
      text(left - 6, yOf(v) + 4, fmt(v), { size: 10, anchor: "end", fill: "#666" });
    }
    line(left, yOf(1000), right, yOf(1000), "#2ca02c", "6 4");
    text(right, yOf(1000) - 3, "target < 1000 ms (largest store, sdk)", { size: 10, anchor: "end", fill: "#2ca02c" });
    const groupW = (right - left) / coldKeys.length;
    const barW = Math.min(60, (groupW - 20) / 2);
    coldKeys.forEach((n, gi) => {
      const gx = left + gi * groupW + (groupW - 2 * barW) / 2;
      (["sdk", "main"] as const).forEach((k, si) => {
        const s = rep.coldStart[n]![k].firstEventMs;
        if (!Number.isFinite(s.median)) return;
        const x = gx + si * barW;
        rect(x + 4, yOf(s.median), barW - 8, top + h - yOf(s.median), colors[k]!);
        line(x + barW / 2, yOf(s.min), x + barW / 2, yOf(s.max), "#000");
        text(x + barW / 2, yOf(s.max) - 4, fmt(s.median), { size: 10, anchor: "middle" });
      });
      text(left + gi * groupW + groupW / 2, top + h + 16, `${fmt(Number(n))} sessions`, { size: 11, anchor: "middle" });
    });
    line(left, top + h, right, top + h, "#333");
    rect(left, top + h + 28, 12, 12, colors.sdk!);
    text(left + 16, top + h + 38, "sdk (worker)", { size: 11 });
    rect(left + 110, top + h + 28, 12, 12, colors.main!);
    text(left + 126, top + h + 38, "main-thread engine", { size: 11 });

    // memory as text, right side
    const mx = W / 2 + 90;
    text(mx, y + 12, "Resident memory", { size: 14, weight: "bold" });
    let my = top + 10;
    if (rep.memory && rep.workloads.memory) {
      const mm = rep.workloads.memory;
      text(mx, my, `after ${fmt(Number(mm.totalEvents))} events across ${fmt(Number(mm.sessions) - Number(mm.lostSessions))} sessions (whole process):`, { size: 11 });
      my += 22;
      for (const [mode, x] of Object.entries(rep.memory)) {
        text(mx, my, `${mode === "sdk" ? "sdk (worker)" : "main-thread engine"}: RSS ${fmt(x.rssAfterMB.median)} MB (before client ${fmt(x.rssBeforeMB.median)} MB, peak ${fmt(x.maxRssMB.median)} MB)`, { size: 11 });
        my += 18;
      }
    }
    my += 10;
    text(mx, my, "Targets:", { size: 12, weight: "bold" });
    my += 18;
    for (const t of rep.targets) {
      text(mx, my, `${t.pass ? "PASS" : "FAIL"} ${t.name}: ${fmt(t.measured, t.unit === "×" ? 2 : 1)}${t.unit === "×" ? "×" : " " + t.unit}`, { size: 10.5, fill: t.pass ? "#2ca02c" : "#d62728" });
      my += 15;
    }
    y = Math.max(top + h + 60, my + 10);
  }

  // Panel 4: what moves the sdk figure (200 B): what-if store variants, sync size, big rooms
  const t200 = rep.throughput["200"];
  const hrows: { name: string; s: Summary; color: string }[] = [];
  if (t200) {
    hrows.push({ name: "sdk as shipped (250 events/sync)", s: t200.sdk, color: colors.sdk! });
    for (const x of rep.whatIf) {
      const s = t200.whatIf[x.key];
      if (s && Number.isFinite(s.median)) hrows.push({ name: `what-if: ${x.label}`, s, color: "#6baed6" });
    }
    for (const x of rep.scaling) if (!x.label.includes("(main figures)")) hrows.push({ name: x.label, s: x.eps, color: x.key.startsWith("bigrooms") ? "#e377c2" : "#9467bd" });
  }
  if (t200 && hrows.length > 1) {
    const top = y + 30;
    const rowH = 20;
    const left = 420;
    const right = W - 40;
    text(20, y + 12, "What moves the sdk figure (200 B payload, decrypted events/s)", { size: 14, weight: "bold" });
    const raw = t200.raw.median;
    const scaleMax = niceCeil(Math.max(raw * 1.05, ...hrows.map((r) => r.s.max).filter(Number.isFinite)));
    const xOf = (v: number): number => left + (v / scaleMax) * (right - left);
    for (let i = 0; i <= 4; i++) {
      const v = (scaleMax * i) / 4;
      line(xOf(v), top - 4, xOf(v), top + hrows.length * rowH, "#e5e5e5");
      text(xOf(v), top + hrows.length * rowH + 14, fmt(v), { size: 10, anchor: "middle", fill: "#666" });
    }
    hrows.forEach((r, i) => {
      const yy = top + i * rowH;
      text(left - 8, yy + 13, r.name.length > 66 ? r.name.slice(0, 65) + "…" : r.name, { size: 10.5, anchor: "end" });
      rect(left, yy + 3, xOf(r.s.median) - left, rowH - 6, r.color);
      line(xOf(r.s.min), yy + rowH / 2, xOf(r.s.max), yy + rowH / 2, "#000");
      text(xOf(Math.max(r.s.max, r.s.median)) + 4, yy + 13, `${fmt(r.s.median)} (${fmt(r.s.median / raw, 2)}×)`, { size: 10 });
    });
    line(xOf(raw), top - 6, xOf(raw), top + hrows.length * rowH, colors.raw!, "6 4", 1.5);
    text(xOf(raw), top - 9, "raw", { size: 10, anchor: "middle", fill: "#555" });
    line(xOf(0.9 * raw), top - 6, xOf(0.9 * raw), top + hrows.length * rowH, "#2ca02c", "6 4", 1.5);
    text(xOf(0.9 * raw), top - 9, "0.90× raw", { size: 10, anchor: "middle", fill: "#2ca02c" });
    y = top + hrows.length * rowH + 30;
  }

  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${round(y, 0)}" viewBox="0 0 ${W} ${round(y, 0)}" font-family="Helvetica, Arial, sans-serif">\n<rect width="100%" height="100%" fill="#fff"/>\n${parts.join("\n")}\n</svg>\n`;
}

function niceCeil(v: number): number {
  const e = 10 ** Math.floor(Math.log10(v));
  for (const f of [1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10]) if (f * e >= v) return f * e;
  return 10 * e;
}
