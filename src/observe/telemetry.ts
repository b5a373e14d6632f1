import client from 'prom-client';
import type { DeadLetterClass } from '../validate/deadLetters.js';

export interface RecentDeadLetter {
  time: string;
  table: string;
  errorClass: DeadLetterClass;
  rule?: string;
  key?: string;
  message: string;
}

export interface RatePoint {
  /** unix seconds */
  t: number;
  captured: number;
  applied: number;
  p50: number | null;
  p99: number | null;
}

function quantile(sorted: number[], q: number): number | null {
  return sorted.length === 0 ? null : sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

/**
 * What the running tunnel counts, in one place per process: Prometheus metrics for scrapers, and a
 * short live history (rates, latency percentiles, the latest dead letters) for the dashboard.
 */
export class Telemetry {
  readonly registry = new client.Registry();
  private readonly capturedTotal = new client.Counter({ name: 'pgtunnel_changes_captured_total', help: 'Changes read from the change tables', labelNames: ['table', 'op'], registers: [this.registry] });
  private readonly producedTotal = new client.Counter({ name: 'pgtunnel_envelopes_produced_total', help: 'Envelopes acknowledged by Kafka (snapshot rows included)', labelNames: ['table'], registers: [this.registry] });
  private readonly appliedTotal = new client.Counter({ name: 'pgtunnel_changes_applied_total', help: 'Envelopes applied to the target', labelNames: ['table', 'op'], registers: [this.registry] });
  private readonly deadTotal = new client.Counter({ name: 'pgtunnel_changes_dead_lettered_total', help: 'Changes sent to the dead-letter topic', labelNames: ['table', 'class'], registers: [this.registry] });
  private readonly batchSize = new client.Histogram({ name: 'pgtunnel_batch_size', help: 'Changes per producer page and per applied set', labelNames: ['side'], buckets: [1, 10, 100, 1000, 5000, 20000], registers: [this.registry] });
  private readonly latency = new client.Histogram({ name: 'pgtunnel_latency_seconds', help: 'Source commit (track_commit_timestamp; the statement time when it is off) to target commit', buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10], registers: [this.registry] });
  private readonly groupCommitFailures = new client.Counter({ name: 'pgtunnel_group_commit_failures_total', help: 'Kafka group offset commits that failed (retried; the target offsets stay authoritative)', registers: [this.registry] });
  private readonly checkpoints = new Map<string, number>();
  private readonly checkpointAge = new client.Gauge({
    name: 'pgtunnel_checkpoint_age_seconds',
    help: 'Seconds since the producer last advanced its checkpoint or found nothing new',
    labelNames: ['table'],
    registers: [this.registry],
    collect: () => {
      for (const [table, at] of this.checkpoints) this.checkpointAge.set({ table }, (Date.now() - at) / 1000);
    },
  });
  readonly lag = new client.Gauge({ name: 'pgtunnel_consumer_lag', help: 'Records in the topic not yet applied', labelNames: ['topic', 'partition'], registers: [this.registry] });
  private readonly snapshotRows = new client.Gauge({ name: 'pgtunnel_snapshot_rows', help: 'Snapshot progress', labelNames: ['table', 'kind'], registers: [this.registry] });
  private readonly retries = new client.Counter({ name: 'pgtunnel_retries_total', help: 'Retries after retryable errors', labelNames: ['part', 'class'], registers: [this.registry] });
  private readonly rebalances = new client.Counter({ name: 'pgtunnel_consumer_rebalances_total', help: "Changes of this consumer's partition assignment", registers: [this.registry] });
  private readonly assignedPartitions = new client.Gauge({ name: 'pgtunnel_consumer_assigned_partitions', help: 'Partitions this consumer is assigned, per topic', labelNames: ['topic'], registers: [this.registry] });
  /** This process's consumer in its group, for the dashboard. */
  membership: { instanceId: string; assigned: Record<string, number[]>; rebalances: number; since: string } | null = null;

  private window = { captured: 0, applied: 0, latencies: [] as number[] };
  readonly history: RatePoint[] = [];
  readonly deadLetters: RecentDeadLetter[] = [];
  private ticker: NodeJS.Timeout | undefined;

  constructor() {
    // the event-loop-lag histogram samples on a timer: prom-client's 10 ms default woke an idle tunnel
    // 100 times a second (~1% of a core); 1 s still catches the long stalls it is read for
    client.collectDefaultMetrics({ register: this.registry, prefix: 'pgtunnel_', eventLoopMonitoringPrecision: 1000 });
  }

  captured(table: string, ops: Record<string, number>): void {
    for (const [op, n] of Object.entries(ops)) {
      this.capturedTotal.inc({ table, op }, n);
      this.window.captured += n;
    }
  }

  produced(table: string, n: number, pageSize?: number): void {
    this.producedTotal.inc({ table }, n);
    if (pageSize !== undefined) this.batchSize.observe({ side: 'producer' }, pageSize);
  }

  checkpoint(table: string): void {
    this.checkpoints.set(table, Date.now());
  }

  snapshot(table: string, done: number, total: number | null): void {
    this.snapshotRows.set({ table, kind: 'done' }, done);
    if (total !== null) this.snapshotRows.set({ table, kind: 'total' }, total);
  }

  applied(table: string, op: string, n: number): void {
    this.appliedTotal.inc({ table, op }, n);
    this.window.applied += n;
  }

  /** Source capture to target commit, per streamed change (snapshot rows have no capture time). */
  observeLatencies(latenciesMs: number[]): void {
    for (const ms of latenciesMs) {
      this.latency.observe(ms / 1000);
      this.window.latencies.push(ms);
    }
  }

  appliedSet(size: number): void {
    this.batchSize.observe({ side: 'consumer' }, size);
  }

  groupCommitFailed(): void {
    this.groupCommitFailures.inc();
  }

  deadLettered(letter: RecentDeadLetter): void {
    this.deadTotal.inc({ table: letter.table, class: letter.errorClass });
    this.deadLetters.unshift(letter);
    this.deadLetters.length = Math.min(this.deadLetters.length, 20);
  }

  retried(part: string, errorClass: string): void {
    this.retries.inc({ part, class: errorClass });
  }

  /** A new partition assignment of this process's consumer: a rebalance. */
  assigned(instanceId: string, assigned: Map<string, number[]>): void {
    this.rebalances.inc();
    this.assignedPartitions.reset();
    for (const [topic, partitions] of assigned) this.assignedPartitions.set({ topic }, partitions.length);
    this.membership = {
      instanceId,
      assigned: Object.fromEntries(assigned),
      rebalances: (this.membership?.rebalances ?? 0) + 1,
      since: new Date().toISOString(),
    };
  }

  /** Closes a one-second window of the live history (five minutes kept). */
  tick(): void {
    const sorted = this.window.latencies.sort((a, b) => a - b);
    this.history.push({ t: Math.round(Date.now() / 1000), captured: this.window.captured, applied: this.window.applied, p50: quantile(sorted, 0.5), p99: quantile(sorted, 0.99) });
    if (this.history.length > 300) this.history.shift();
    this.window = { captured: 0, applied: 0, latencies: [] };
  }

  start(): void {
    this.ticker ??= setInterval(() => this.tick(), 1000);
    this.ticker.unref();
  }

  stop(): void {
    if (this.ticker) clearInterval(this.ticker);
    this.ticker = undefined;
  }
}

/** The process's telemetry: metrics are per process, as Prometheus scrapes them. */
export const telemetry = new Telemetry();
