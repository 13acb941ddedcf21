/**
 * Main-thread responsiveness while a mode runs: `monitorEventLoopDelay({ resolution: 1 })`
 * (p50/p99/max, ms) plus a timer-driven probe — a 5 ms `setInterval` doing a little work, standing
 * in for an application's own sync loop / UI ticks — whose lateness is recorded too, and the
 * main thread's event-loop utilisation.
 *
 * Note: Node's histogram records the time between two 1 ms timer ticks, so an idle loop reads
 * about 1.1 ms at p50 — the floor, not a delay (the "idle" row of the report shows it).
 */
import { monitorEventLoopDelay, performance, type EventLoopUtilization, type IntervalHistogram } from "node:perf_hooks";

export interface LoopStats {
  p50: number;
  p99: number;
  max: number;
  mean: number;
  /** Lateness of the 5 ms probe ticks (ms past their due time). */
  probeLateP99: number;
  probeLateMax: number;
  probeTicks: number;
  /** Main thread's event-loop utilisation (0..1) over the window. */
  elu: number;
}

export class LoopMonitor {
  private h: IntervalHistogram | null = null;
  private probe: NodeJS.Timeout | null = null;
  private late: number[] = [];
  private elu0: EventLoopUtilization | null = null;
  private sink = 0;

  start(): void {
    this.h = monitorEventLoopDelay({ resolution: 1 });
    this.h.enable();
    this.late = [];
    this.elu0 = performance.eventLoopUtilization();
    let due = performance.now() + 5;
    this.probe = setInterval(() => {
      const now = performance.now();
      this.late.push(Math.max(0, now - due));
      due = now + 5;
      // A little work, like a sync loop's bookkeeping.
      this.sink += JSON.stringify({ t: now, n: this.late.length }).length;
    }, 5);
  }

  stop(): LoopStats {
    const h = this.h!;
    h.disable();
    if (this.probe) clearInterval(this.probe);
    const elu = performance.eventLoopUtilization(this.elu0!);
    const late = [...this.late].sort((a, b) => a - b);
    const pct = (p: number): number => (late.length ? late[Math.min(late.length - 1, Math.floor((p / 100) * late.length))]! : 0);
    const ms = (ns: number): number => ns / 1e6;
    return {
      p50: ms(h.percentile(50)),
      p99: ms(h.percentile(99)),
      max: ms(h.max),
      mean: ms(h.mean),
      probeLateP99: pct(99),
      probeLateMax: late.length ? late[late.length - 1]! : 0,
      probeTicks: late.length,
      elu: elu.utilization,
    };
  }
}
