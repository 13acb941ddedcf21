/** The stdout table of a benchmark report (bench/report.ts builds the {@link Report}). */
import type { Json, Summary } from "./common.js";
import { cell, fmt, label, table } from "./format.js";
import type { LoopSummary, Report } from "./report.js";
import { renderSend } from "./sendReport.js";
import { workloadLabel } from "./headline.js";
import { renderPool } from "./poolReport.js";

/** The headline: paired ratios per workload and mode. */
function renderPaired(rep: Report): string[] {
  if (!rep.paired.length) return [];
  const out = [
    "Headline: paired ratios (each client run bracketed by raw libolm passes over the same events in its own process;",
    "ratio = client ev/s ÷ mean(raw before, raw after), per run; median [min–max] over runs)",
  ];
  const rows = rep.paired.map((x) => [
    x.workload,
    x.mode,
    fmt(x.events),
    fmt(x.sessions),
    cell(x.paired.eps),
    cell(x.paired.raw),
    cell(x.paired.rawDrift, 2),
    cell(x.paired.ratio, 2),
    x.paired.ratio.runs.map((v) => fmt(v, 2)).join(" "),
    x.target === null ? "" : `≥ ${x.target.toFixed(2)} ${x.paired.ratio.median >= x.target ? "PASS" : "FAIL"}`,
    cell(x.loopP99, 2),
    Number.isFinite(x.workerBusy.median) ? fmt(x.workerBusy.median * 100, 0) + " %" : "—",
  ]);
  out.push(table(["workload", "mode", "events", "sessions", "client ev/s", "raw ev/s (same process)", "raw after/before", "paired ratio", "each run", "target", "loop p99 ms", "worker busy"], rows));
  out.push("");
  return out;
}

/** Key backup on/off. */
function renderBackup(rep: Report): string[] {
  const b = rep.backup;
  if (!b) return [];
  return [
    `Key backup during decryption (issue 15): ${b.workload}, ${fmt(b.events)} events, ${fmt(b.sessions)} sessions, every key in the first sync; backup on = enableKeyBackup() before the first sync`,
    `  on ÷ off steady-state ev/s, paired per run: ${cell(b.ratio, 2)}; on ÷ off of the raw-paired ratios: ${cell(b.ratioOfPaired, 2)}`,
    `  backup complete ${cell(b.doneAfterLastEventMs)} ms after the last event (flushKeyBackup, then the fixture's count); uploaded ${cell(b.uploadedSessions)} of ${fmt(b.expectedSessions)} sessions in ${cell(b.puts)} PUTs; enableKeyBackup ${cell(b.enableMs)} ms`,
    "",
  ];
}

/** The whole report as plain text, the way `npm run bench` prints it. */
export function renderTable(rep: Report): string {
  const out: string[] = [];
  const m = rep.machine;
  const runs = Number(rep.options.runs);
  out.push(`matrix-e2ee-worker-sdk ${String(m.sdk)} bench${rep.options.quick ? " (--quick: small workloads, indicative only)" : ""} — ${rep.date} — ${String(m.os)}, ${String(m.cpus)} CPUs (${String(m.cpuModel)}), Node ${String(m.node)}, libolm ${String(m.libolm)}`);
  const la = (v: unknown): string => (Array.isArray(v) ? v.map((x: number) => x.toFixed(2)).join(" ") : "?");
  out.push(`${String(m.note)} Load average at start: ${la(m.loadavgStart)}, at end: ${la(m.loadavgEnd)}.`);
  out.push(`Figures: median [min–max] of ${runs} run(s), each in a fresh process; throughput is steady state (after the first sync, which carries the room keys).`);
  out.push("");
  out.push(...renderPaired(rep));
  out.push("Decrypt throughput, 10 rooms (secondary: raw measured in its own fresh process; ratios of medians)");
  const rows: string[][] = [];
  for (const [p, t] of Object.entries(rep.throughput)) {
    const w = rep.workloads.throughput[p]!;
    const rat = rep.ratios[p]!;
    rows.push([
      `${label(p)} (${fmt(Number(w.totalEvents))} ev, ${String(w.rooms)}×${String(w.senders)})`,
      cell(t.raw),
      cell(t.rawParse),
      cell(t.sdk),
      cell(t.main),
      fmt(rat.sdkOverRaw, 2),
      fmt(rat.sdkOverRawParse, 2),
      fmt(rat.mainOverRaw, 2),
    ]);
  }
  out.push(table(["payload", "raw: libolm decrypt", "raw + JSON.parse", "sdk (worker)", "main-thread engine", "sdk/raw", "sdk/raw+parse", "main/raw"], rows));
  out.push("");
  out.push("Main-thread event-loop delay while decrypting (ms; monitorEventLoopDelay resolution 1 ms; 5 ms probe timer running)");
  const lrows: string[][] = [];
  const lrow = (name: string, l: LoopSummary | null, busy?: Summary): void => {
    if (!l) return;
    lrows.push([name, cell(l.p50, 2), cell(l.p99, 2), cell(l.max, 1), cell(l.probeLateMax, 1), fmt(l.mainElu.median * 100, 0) + " %", busy && Number.isFinite(busy.median) ? fmt(busy.median * 100, 0) + " %" : "—"]);
  };
  lrow("idle (floor)", rep.eventLoop.idle);
  for (const [p, e] of Object.entries(rep.eventLoop.byPayload)) {
    lrow(`sdk ${label(p)}`, e.sdk, rep.workerBusy[p]);
    lrow(`main-thread ${label(p)}`, e.main);
    lrows.push([`raw ${label(p)}`, "n/a", "n/a", "n/a", "n/a", "100 %", "—"]);
  }
  out.push(table(["mode", "p50", "p99", "max", "probe late max", "main busy", "worker busy"], lrows));
  out.push("  raw: a synchronous libolm loop blocks the event loop for its whole duration (no samples).");
  out.push("");
  if (Object.keys(rep.coldStart).length) {
    out.push("Cold start: new MatrixClient → first decrypted event, store pre-populated (ms)");
    const crows: string[][] = [];
    for (const [n, c] of Object.entries(rep.coldStart)) {
      const g = rep.workloads.coldStores[n]!;
      crows.push([`${fmt(Number(n))} sessions (${fmt(g.fileBytes / 1e6, 1)} MB)`, cell(c.sdk.firstEventMs), cell(c.sdk.loginMs), cell(c.main.firstEventMs), cell(c.main.loginMs), `${fmt(g.sessionGenSeconds, 1)} s + ${fmt(g.storeWriteSeconds, 1)} s`]);
    }
    out.push(table(["store", "sdk: first event", "sdk: login done", "main: first event", "main: login done", "generation (libolm + saveChanges)"], crows));
    out.push("");
  }
  if (rep.memory) {
    const mm = rep.workloads.memory!;
    out.push(`Resident memory after decrypting ${fmt(Number(mm.totalEvents))} events across ${fmt(Number(mm.sessions) - Number(mm.lostSessions))} sessions (MB, whole process incl. the worker)`);
    const mrows: string[][] = [];
    for (const [mode, x] of Object.entries(rep.memory)) {
      mrows.push([mode === "sdk" ? "sdk (worker)" : "main-thread engine", cell(x.rssBeforeMB), cell(x.rssAfterMB), cell(x.rssAfterGcMB), cell(x.maxRssMB), cell(x.heapUsedMB, 1), cell(x.eps)]);
    }
    out.push(table(["mode", "RSS before client", "RSS after", "RSS after main gc()", "peak RSS", "main heap used", "ev/s"], mrows));
    out.push("");
  }
  if (rep.whatIf.length) {
    out.push("What-if (bench-only store wrapper in the real worker, see bench/tunedStore.ts; NOT the shipped SDK)");
    const wrows: string[][] = [];
    for (const [p, t] of Object.entries(rep.throughput)) {
      wrows.push([`sdk ${label(p)} as shipped`, cell(t.sdk), fmt(t.sdk.median / t.raw.median, 2)]);
      for (const x of rep.whatIf) {
        const s = t.whatIf[x.key]!;
        wrows.push([`  ${x.label}`, cell(s), fmt(s.median / t.raw.median, 2)]);
      }
    }
    out.push(table(["variant", "ev/s", "/raw"], wrows));
    out.push("");
  }
  if (rep.scaling.length) {
    out.push("Batching granularity and room size (sdk, 200 B payload, same events)");
    out.push(
      table(
        ["variant", "ev/s", "/raw", "worker busy", "loop p99", "loop max"],
        rep.scaling.map((x) => [x.label, cell(x.eps), fmt(x.overRaw, 2), fmt(x.workerBusy.median * 100, 0) + " %", cell(x.loopP99, 2), cell(x.loopMax, 1)]),
      ),
    );
    out.push("");
  }
  if (rep.bigRooms) {
    const b = rep.bigRooms as Record<string, { msPerSync: number; calls: number }> & Json;
    const small = b.smallRooms as unknown as Record<string, { msPerSync: number }> | null;
    out.push(
      `Big rooms (${fmt(Number(b.trackedUsers))} tracked users; one instrumented main-thread run, ${fmt(Number(b.eps))} ev/s vs ${fmt(Number(b.epsSmallRooms))}): ` +
        `receiveSyncChanges ${fmt(b.receiveSyncChanges!.msPerSync, 1)} ms/sync (small rooms: ${fmt(small?.receiveSyncChanges?.msPerSync ?? NaN, 1)}), ` +
        (b["receiveSyncChanges:getTrackedUsers"]!.calls
          ? `of which store.getTrackedUsers ${fmt(b["receiveSyncChanges:getTrackedUsers"]!.msPerSync, 1)} ms (${fmt(b["receiveSyncChanges:getTrackedUsers"]!.calls)} calls) `
          : "store.getTrackedUsers never called (tracked users are kept in memory) ") +
        `and getRoomMembers ${fmt(b["receiveSyncChanges:getRoomMembers"]!.msPerSync, 1)} ms; outgoingRequests ${fmt(b.outgoingRequests!.msPerSync, 1)} ms/sync.`,
    );
    out.push("");
  }
  if (Object.keys(rep.breakdown).length) {
    out.push("Where the time goes (one instrumented run; µs per decrypted event)");
    for (const [p, b] of Object.entries(rep.breakdown)) {
      const per = b.perEventUs as Record<string, number>;
      const brow = Object.entries(per).map(([k, v]) => [k, fmt(v, 1)]);
      brow.push(["total (main-thread engine run)", fmt(Number(b.totalUs), 1)]);
      const scale = rep.workloads.scale[p];
      out.push(`  ${scale ? workloadLabel(scale) : label(p)}:`);
      out.push(
        table(["component", "µs/ev"], brow)
          .split("\n")
          .map((l) => "    " + l)
          .join("\n"),
      );
      const s = b.sdk as Record<string, number | null> | undefined;
      if (s) {
        out.push(
          `    sdk run: ${fmt(Number(s.totalUs), 1)} µs/ev total; decrypt call ${fmt(Number(s["decryptSyncTimelines call, as the main thread sees it (queued behind receiveSyncChanges)"]), 1)} (main-thread engine: ${fmt(Number(s["same span, main-thread engine"]), 1)}); worker busy ${fmt(Number(s["worker busy (ELU)"]) * 100, 0)} % → ceiling ${fmt(Number(s["ceiling if the worker never waited (eps / ELU)"]))} ev/s`,
        );
      }
    }
    out.push("");
  }
  if (rep.pool) {
    out.push(...renderPool(rep.pool.rows, rep.pool.costs, rep.pool.scaling));
    if (rep.pool.skewScaling.length) out.push(`  with one room holding half the events (it cannot be split): ${rep.pool.skewScaling.map((s) => `${s.cores} cores ${fmt(s.eps)} ev/s (${fmt(s.overRaw, 2)}×, ${s.saturates})`).join("; ")}`, "");
  }
  out.push(...renderBackup(rep));
  if (rep.send) out.push(...renderSend(rep.send).filter((l) => !l.startsWith("Send targets") && !/^  (PASS|FAIL)/.test(l)), "");
  out.push("Targets (informational; the exit code never depends on them)");
  for (const t of rep.targets) out.push(`  ${t.pass ? "PASS" : "FAIL"}  ${t.name}: ${fmt(t.measured, t.unit === "×" ? 2 : t.unit === "ms" && t.measured < 100 ? 2 : 0)}${t.unit === "×" ? "×" : " " + t.unit} (target ${t.target}; ${t.note})`);
  return out.join("\n");
}

