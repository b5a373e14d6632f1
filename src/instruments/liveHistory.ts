import { capText } from '../redact.js';
import { stages, subscribe, type RecentDeadLetter, type Stage } from './telemetry.js';

export interface RatePoint {
  /** unix seconds */
  t: number;
  captured: number;
  applied: number;
  p50: number | null;
  p99: number | null;
}

/** One stage over its latest timings: how many were seen in all, and the p50 and p99 of the latest. */
export interface StageSummary {
  stage: Stage;
  count: number;
  p50: number | null;
  p99: number | null;
}

/** Timings kept per stage for the dashboard's percentiles. */
const stageWindow = 500;

function quantile(sorted: number[], q: number): number | null {
  return sorted.length === 0 ? null : sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

/**
 * The dashboard's short live history, from the telemetry channels while started: rates and latency
 * percentiles per second (five minutes kept), the latest dead letters, this process's consumer in its group.
 */
export class LiveHistory {
  readonly history: RatePoint[] = [];
  readonly deadLetters: RecentDeadLetter[] = [];
  membership: { instanceId: string; assigned: Record<string, number[]>; generation: number; rebalances: number; since: string } | null = null;
  private window = { captured: 0, applied: 0, latencies: [] as number[] };
  private readonly stageTimes = new Map<Stage, { count: number; latest: number[] }>(stages.map((s) => [s, { count: 0, latest: [] }]));
  private ticker: NodeJS.Timeout | undefined;
  private unsubscribes: (() => void)[] = [];

  /** Closes a one-second window. */
  tick(): void {
    const sorted = this.window.latencies.sort((a, b) => a - b);
    this.history.push({ t: Math.round(Date.now() / 1000), captured: this.window.captured, applied: this.window.applied, p50: quantile(sorted, 0.5), p99: quantile(sorted, 0.99) });
    if (this.history.length > 300) this.history.shift();
    this.window = { captured: 0, applied: 0, latencies: [] };
  }

  /** Each stage's count and percentiles (ms) over its latest timings, in the stages' order. */
  stageSummary(): StageSummary[] {
    return [...this.stageTimes].map(([stage, { count, latest }]) => {
      const sorted = [...latest].sort((a, b) => a - b);
      return { stage, count, p50: quantile(sorted, 0.5), p99: quantile(sorted, 0.99) };
    });
  }

  start(): void {
    if (this.ticker) return;
    this.unsubscribes = [
      subscribe('pgtunnel:captured', ({ ops }) => {
        for (const n of Object.values(ops)) this.window.captured += n;
      }),
      subscribe('pgtunnel:applied', ({ n }) => (this.window.applied += n)),
      subscribe('pgtunnel:latencies', ({ latenciesMs }) => {
        for (const ms of latenciesMs) this.window.latencies.push(ms);
      }),
      subscribe('pgtunnel:stages', ({ ms }) => {
        for (const [stage, v] of Object.entries(ms) as [Stage, number | undefined][]) {
          const times = this.stageTimes.get(stage);
          if (times === undefined || v === undefined) continue;
          times.count++;
          times.latest.push(v);
          if (times.latest.length > stageWindow) times.latest.shift();
        }
      }),
      subscribe('pgtunnel:dead-lettered', (letter) => {
        // a forged key or an echoed value can be megabytes: the status shows their start
        this.deadLetters.unshift({ ...letter, key: letter.key === undefined ? undefined : capText(letter.key), message: capText(letter.message) });
        this.deadLetters.length = Math.min(this.deadLetters.length, 20);
      }),
      subscribe('pgtunnel:assigned', ({ instanceId, assigned, generation }) => {
        this.membership = { instanceId, assigned: Object.fromEntries(assigned), generation, rebalances: (this.membership?.rebalances ?? 0) + 1, since: new Date().toISOString() };
      }),
    ];
    this.ticker = setInterval(() => this.tick(), 1000);
    this.ticker.unref();
  }

  stop(): void {
    if (this.ticker) clearInterval(this.ticker);
    this.ticker = undefined;
    for (const unsubscribe of this.unsubscribes) unsubscribe();
    this.unsubscribes = [];
  }
}
