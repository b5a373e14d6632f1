import client from 'prom-client';
import { stages, subscribe } from './telemetry.js';

/**
 * The Prometheus metrics of this process, counted from the telemetry channels. One per process (as
 * Prometheus scrapes it): `processMetrics()` subscribes on first use.
 */
export class Metrics {
  readonly registry = new client.Registry();
  private readonly checkpoints = new Map<string, number>();
  readonly lag = new client.Gauge({ name: 'pgtunnel_consumer_lag', help: 'Records in the topic not yet applied', labelNames: ['topic', 'partition'], registers: [this.registry] });
  private readonly unsubscribes: (() => void)[];

  constructor() {
    // the event-loop-lag histogram samples on a timer: prom-client's 10 ms default woke an idle tunnel
    // 100 times a second (~1% of a core); 1 s still catches the long stalls it is read for
    client.collectDefaultMetrics({ register: this.registry, prefix: 'pgtunnel_', eventLoopMonitoringPrecision: 1000 });
    const registers = [this.registry];
    const captured = new client.Counter({ name: 'pgtunnel_changes_captured_total', help: 'Changes read from the change tables', labelNames: ['table', 'op'], registers });
    const filtered = new client.Counter({ name: 'pgtunnel_changes_filtered_total', help: 'Changes a row filter excluded on purpose (op c: dropped, u: published as a delete); never dead letters', labelNames: ['table', 'op'], registers });
    const produced = new client.Counter({ name: 'pgtunnel_envelopes_produced_total', help: 'Envelopes acknowledged by Kafka (snapshot rows included)', labelNames: ['table'], registers });
    const applied = new client.Counter({ name: 'pgtunnel_changes_applied_total', help: 'Envelopes applied to the target', labelNames: ['table', 'op'], registers });
    const dead = new client.Counter({ name: 'pgtunnel_changes_dead_lettered_total', help: 'Changes sent to the dead-letter topic', labelNames: ['table', 'class'], registers });
    const batchSize = new client.Histogram({ name: 'pgtunnel_batch_size', help: 'Changes per producer page and per applied set', labelNames: ['side'], buckets: [1, 10, 100, 1000, 5000, 20000], registers });
    const latency = new client.Histogram({ name: 'pgtunnel_latency_seconds', help: 'Source commit (track_commit_timestamp; the statement time when it is off) to target commit', buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10], registers });
    const stage = new client.Histogram({
      name: 'pgtunnel_stage_seconds',
      help: 'Time a page, set or wait spent in each stage: producer poll, read, publish, checkpoint; consumer queue, decode, apply, commit',
      labelNames: ['stage'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10],
      registers,
    });
    // every stage is shown from the start (count 0), so a stage that never ran is visible as such
    for (const s of stages) stage.zero({ stage: s });
    const groupCommitFailures = new client.Counter({ name: 'pgtunnel_group_commit_failures_total', help: 'Kafka group offset commits that failed (retried; the target offsets stay authoritative)', registers });
    const checkpointAge: client.Gauge = new client.Gauge({
      name: 'pgtunnel_checkpoint_age_seconds',
      help: 'Seconds since the producer last advanced its checkpoint or found nothing new',
      labelNames: ['table'],
      registers,
      collect: () => {
        for (const [table, at] of this.checkpoints) checkpointAge.set({ table }, (Date.now() - at) / 1000);
      },
    });
    const snapshotRows = new client.Gauge({ name: 'pgtunnel_snapshot_rows', help: 'Snapshot progress', labelNames: ['table', 'kind'], registers });
    const backfillRows = new client.Gauge({ name: 'pgtunnel_incremental_snapshot_rows', help: 'Progress of the latest incremental snapshot (pgtunnel snapshot --table) of each table', labelNames: ['table', 'kind'], registers });
    const retries = new client.Counter({ name: 'pgtunnel_retries_total', help: 'Retries after retryable errors', labelNames: ['part', 'class'], registers });
    const rebalances = new client.Counter({ name: 'pgtunnel_consumer_rebalances_total', help: "Changes of this consumer's partition assignment", registers });
    const assignedPartitions = new client.Gauge({ name: 'pgtunnel_consumer_assigned_partitions', help: 'Partitions this consumer is assigned, per topic', labelNames: ['topic'], registers });

    const changeTableRows = new client.Gauge({ name: 'pgtunnel_change_table_rows', help: 'Changes waiting in the change table to be published', labelNames: ['table'], registers });
    const changeTableBytes = new client.Gauge({ name: 'pgtunnel_change_table_bytes', help: 'Size of the change table with its indexes and TOAST', labelNames: ['table'], registers });
    const oldestUnpublished = new client.Gauge({ name: 'pgtunnel_oldest_unpublished_change_seconds', help: 'Age of the oldest change not yet published (0 when none waits)', labelNames: ['table'], registers });
    const slotRetained = new client.Gauge({ name: 'pgtunnel_slot_retained_wal_bytes', help: "WAL the source keeps for a logical capture's replication slot (from its restart LSN)", labelNames: ['table', 'slot'], registers });
    const slotLag = new client.Gauge({ name: 'pgtunnel_slot_lag_bytes', help: "WAL a logical capture's slot has not confirmed yet (from its confirmed flush LSN)", labelNames: ['table', 'slot'], registers });
    const slotLost = new client.Gauge({ name: 'pgtunnel_slot_lost', help: '1 when the slot was invalidated (the source removed WAL it needed): re-install and re-snapshot', labelNames: ['table', 'slot'], registers });
    const standby = new client.Gauge({ name: 'pgtunnel_producer_standby', help: "1 while this process's producer of the table stands by (another session holds its lock)", labelNames: ['table'], registers });

    this.unsubscribes = [
      subscribe('pgtunnel:change-table', ({ table, rows, bytes, oldestSeconds }) => {
        changeTableRows.set({ table }, rows);
        changeTableBytes.set({ table }, bytes);
        oldestUnpublished.set({ table }, oldestSeconds ?? 0);
      }),
      subscribe('pgtunnel:slot', ({ table, slot, retainedWalBytes, lagBytes, lost }) => {
        slotRetained.set({ table, slot }, retainedWalBytes);
        slotLag.set({ table, slot }, lagBytes);
        slotLost.set({ table, slot }, lost ? 1 : 0);
      }),
      subscribe('pgtunnel:leadership', ({ table, state }) => standby.set({ table }, state === 'standby' ? 1 : 0)),
      subscribe('pgtunnel:captured', ({ table, ops }) => {
        for (const [op, n] of Object.entries(ops)) captured.inc({ table, op }, n);
      }),
      subscribe('pgtunnel:filtered', ({ table, ops }) => {
        for (const [op, n] of Object.entries(ops)) filtered.inc({ table, op }, n);
      }),
      subscribe('pgtunnel:produced', ({ table, n, pageSize }) => {
        produced.inc({ table }, n);
        if (pageSize !== undefined) batchSize.observe({ side: 'producer' }, pageSize);
      }),
      subscribe('pgtunnel:checkpoint', ({ table }) => this.checkpoints.set(table, Date.now())),
      subscribe('pgtunnel:backfill', ({ table, done, total }) => {
        backfillRows.set({ table, kind: 'done' }, done);
        if (total !== null) backfillRows.set({ table, kind: 'total' }, total);
      }),
      subscribe('pgtunnel:snapshot', ({ table, done, total }) => {
        snapshotRows.set({ table, kind: 'done' }, done);
        if (total !== null) snapshotRows.set({ table, kind: 'total' }, total);
      }),
      subscribe('pgtunnel:applied', ({ table, op, n }) => applied.inc({ table, op }, n)),
      subscribe('pgtunnel:latencies', ({ latenciesMs }) => {
        for (const ms of latenciesMs) latency.observe(ms / 1000);
      }),
      subscribe('pgtunnel:stages', ({ ms }) => {
        for (const [s, v] of Object.entries(ms)) if (v !== undefined) stage.observe({ stage: s }, v / 1000);
      }),
      subscribe('pgtunnel:applied-set', ({ size }) => batchSize.observe({ side: 'consumer' }, size)),
      subscribe('pgtunnel:group-commit-failed', () => groupCommitFailures.inc()),
      subscribe('pgtunnel:dead-lettered', ({ table, errorClass }) => dead.inc({ table, class: errorClass })),
      subscribe('pgtunnel:retried', ({ part, errorClass }) => retries.inc({ part, class: errorClass })),
      subscribe('pgtunnel:assigned', ({ assigned }) => {
        rebalances.inc();
        assignedPartitions.reset();
        for (const [topic, partitions] of assigned) assignedPartitions.set({ topic }, partitions.length);
      }),
    ];
  }

  /** Stops counting (tests; the process's own metrics count until it exits). */
  close(): void {
    for (const unsubscribe of this.unsubscribes) unsubscribe();
  }
}

let shared: Metrics | undefined;

/** This process's metrics, subscribed from the first call on. */
export function processMetrics(): Metrics {
  return (shared ??= new Metrics());
}
