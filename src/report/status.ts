import { latestSignals, type Signal } from '../capture/signals.js';
import type { TableConfig, TunnelConfig } from '../config/load.js';
import { clientIds, partitionId, tableId } from '../names.js';
import { loadState, type Phase } from '../capture/stateStore.js';
import { qualified, withClient, type Client } from '../pg.js';
import { changeTableSize } from './changeTables.js';
import { formatSlot, slotStatus, type SlotStatus } from './slotStatus.js';
import { logicalSchemaVersion } from '../capture/logicalSchema.js';
import { endOffsets } from '../transport/kafka.js';
import { CommittedReader } from '../transport/committedReader.js';
import { describeError, TunnelError } from '../errors.js';
import { readHealth, type ProcessHealth } from '../instruments/health.js';
import { registeredVersions } from './registeredVersions.js';
import { KafkaOffsetReader } from '../transport/kafkaOffsets.js';

export interface PartitionStatus {
  topic: string;
  partition: number;
  /** Next offset the target will apply (stored in the target with the rows). */
  appliedOffset: number;
  endOffset: number;
  lag: number;
  /** The group's offset committed in Kafka, null when none; `groupLag` = end − it, as Kafka's tools show. */
  groupOffset?: number | null;
  groupLag?: number | null;
}

export interface TableStatus {
  table: string;
  phase: Phase;
  snapshot: { rowsDone: number; rowsTotal: number | null };
  checkpoint: { snapshot: string | null; batchSnapshot: string | null; lastChangeId: number; updatedAt: string | null };
  changesPublished: number;
  /** Change rows the producer dead-lettered (bad actions). */
  deadLettered: number;
  /** Changes in the change table, not yet published (publishing deletes them). */
  changeTableRows: number;
  /** The change table's size on disk, indexes and TOAST included. */
  changeTableBytes: number;
  /** Seconds the oldest unpublished change has waited; null when none waits. */
  oldestUnpublishedSeconds: number | null;
  /** The capture's schema version (a source schema change adds one). */
  schemaVersion: number | null;
  /** The latest version of `<topic>-value` in the schema registry; null without a registry or before registration. */
  registeredVersion: number | null;
  /** A DDL the event trigger could not follow: capture matches columns by name until `pgtunnel install`. */
  captureProblem: string | null;
  /** Logical capture's replication slot (no change table then: its counts read 0); absent in trigger capture. */
  slot?: SlotStatus;
  /** The table's latest incremental snapshot (`pgtunnel snapshot --table`), null when none was asked for. */
  incrementalSnapshot: { signalId: string; state: string; where: string | null; rowsDone: number; rowsTotal: number | null; message: string | null } | null;
}

/** The stable shape of `pgtunnel status --json` (documented in docs/cli.md). */
export interface StatusReport {
  /** `not installed` when a configured table is missing or has no capture (see `problems`). */
  phase: Phase | 'not installed';
  /** Configured tables that cannot be reported on, each with its fix; they are left out of `tables`. */
  problems: string[];
  tables: TableStatus[];
  partitions: PartitionStatus[];
  lag: number;
  lastApplyLatencyMs: number | null;
  lastAppliedAt: string | null;
  /**
   * captured + snapshotRows = applied + deadLettered + inFlight: every change read from a change table
   * (and every snapshot row) is applied, a dead letter, or still on its way. Poison records on the topic
   * were never captured and are counted apart. Logical capture counts no changes at the source (a source
   * write per page would cost the WAL it saves): with a logical table, `inFlight` is null, not a guess.
   */
  counts: { captured: number; snapshotRows: number; applied: number; deadLettered: number; inFlight: number | null; poison: number };
  /** Tunnel processes running from this PGTUNNEL_HOME and what each part is doing or waiting for. */
  processes: ProcessHealth[];
  /** Services that could not be asked; the fields they would fill are empty. */
  errors: string[];
}

async function attempt<T>(errors: string[], fallback: T, body: () => Promise<T>): Promise<T> {
  try {
    return await body();
  } catch (err) {
    errors.push(describeError(err));
    return fallback;
  }
}

/** How a status report reaches the services: fresh connections per report (CLI), or kept ones (the poller). */
export interface StatusLinks {
  /** The consumer group's committed offsets, by partitionId. */
  groupOffsets(topics: string[]): Promise<Map<string, bigint>>;
  withSource<T>(body: (c: Client) => Promise<T>): Promise<T>;
  withTarget<T>(body: (c: Client) => Promise<T>): Promise<T>;
  endOffsets(topics: string[]): Promise<Map<string, bigint[]>>;
  /** How many committed records `[from, until)` of a partition holds (transaction markers take offsets too). */
  committedRecords(topic: string, partition: number, from: bigint, until: bigint): Promise<number>;
}

/** Below this many offsets, lag is counted in records: caught up reads 0 even after transaction markers (exactlyOnce). */
const exactLagBelow = 64;

export async function countCommitted(reader: CommittedReader, topic: string, partition: number, from: bigint, until: bigint): Promise<number> {
  return (await reader.read(topic, partition, from, until)).length;
}

function freshLinks(config: TunnelConfig): StatusLinks {
  return {
    groupOffsets: async (topics) => {
      const reader = new KafkaOffsetReader(config);
      try {
        return await reader.committed(topics, config.groupId);
      } finally {
        await reader.close();
      }
    },
    withSource: (body) => withClient(config.sourceUrl, 'source', body),
    withTarget: (body) => withClient(config.targetUrl, 'target', body),
    endOffsets: (topics) => endOffsets(config, topics),
    committedRecords: async (topic, partition, from, until) => {
      const reader = new CommittedReader(config, clientIds.status);
      try {
        return await countCommitted(reader, topic, partition, from, until);
      } finally {
        await reader.close();
      }
    },
  };
}

/**
 * Why a configured table has nothing to report, or undefined: without this a missing table read as a
 * snapshot that had not started.
 */
async function tableProblem(client: Client, t: TableConfig): Promise<TunnelError | undefined> {
  const { rows } = await client.query<{ present: boolean; state: boolean }>(
    "SELECT to_regclass($1) IS NOT NULL AS present, to_regclass('pgtunnel.state') IS NOT NULL AS state", [qualified(t.schema, t.name)]);
  const id = tableId(t);
  // pgtunnel.state only exists once something was installed: asked apart, or the query would not parse
  const installed = rows[0]!.state && (await client.query('SELECT 1 FROM pgtunnel.state WHERE table_id = $1', [id])).rows.length > 0;
  if (!rows[0]!.present) {
    return new TunnelError('PGT_TABLE_MISSING', `table ${id} is configured but does not exist in the source database`, {
      errorClass: 'config', hint: `create it in the source, or remove ${id} from tables (pgtunnel.yaml or PGTUNNEL_TABLES)`,
    });
  }
  if (!installed) {
    return new TunnelError('PGT_NOT_INSTALLED', `table ${id} is configured but capture is not installed for it in the source`, {
      errorClass: 'config', hint: 'run `pgtunnel install` (pgtunnel run does it for you)',
    });
  }
  return undefined;
}

export async function collectStatus(config: TunnelConfig, links: StatusLinks = freshLinks(config)): Promise<StatusReport> {
  const errors: string[] = [];
  const problems: string[] = [];
  const tables = await attempt(errors, [] as TableStatus[], () => links.withSource(async (client) => {
    const out: TableStatus[] = [];
    const signals = await latestSignals(client);
    for (const t of config.tables) {
      const problem = await tableProblem(client, t);
      if (problem) {
        problems.push(describeError(problem));
        continue;
      }
      const state = await loadState(client, tableId(t));
      // to_jsonb: an install older than the ddl_problem column reads as no problem
      const { rows } = await client.query<{ v: number | null; p: string | null }>(
        "SELECT schema_version AS v, to_jsonb(c) ->> 'ddl_problem' AS p FROM pgtunnel.captures c WHERE table_id = $1", [tableId(t)]);
      const slot = await slotStatus(client, t, config.topicPrefix);
      // logical capture has no change table: its backlog is the slot's lag
      const size = slot ? { rows: 0, bytes: 0, oldestSeconds: null } : await changeTableSize(client, t);
      out.push({
        table: tableId(t),
        phase: state.phase,
        snapshot: { rowsDone: state.snapshotRowsDone, rowsTotal: state.snapshotRowsTotal },
        checkpoint: { snapshot: state.position.prev, batchSnapshot: state.position.cur, lastChangeId: state.position.lastChangeId, updatedAt: state.updatedAt ?? null },
        changesPublished: state.changesPublished,
        deadLettered: state.deadLettered,
        changeTableRows: size.rows,
        changeTableBytes: size.bytes,
        oldestUnpublishedSeconds: size.oldestSeconds,
        schemaVersion: rows[0]?.v ?? (slot ? await logicalSchemaVersion(client, tableId(t)) : null),
        registeredVersion: null,
        captureProblem: rows[0]?.p ?? null,
        ...(slot ? { slot } : {}),
        incrementalSnapshot: incrementalStatus(signals.get(tableId(t))),
      });
    }
    return out;
  }));
  const topics = config.tables.map((t) => t.topic);
  const registered = await attempt(errors, new Map<string, number | null>(), () => registeredVersions(config, topics));
  for (const [i, t] of tables.entries()) t.registeredVersion = registered.get(config.tables[i]!.topic) ?? null;
  type AppliedRow = { topic: string; partition: number; next_offset: string; last_latency_ms: number | null; applied_at: Date; applied: string; dead_lettered: string; poison: string };
  const applied = await attempt(errors, [] as AppliedRow[], () => links.withTarget(async (client) => {
    const { rows } = await client.query<AppliedRow>(
      `SELECT topic, partition, next_offset::text, last_latency_ms, applied_at, applied::text, dead_lettered::text, poison::text FROM pgtunnel.consumer_offsets WHERE topic = ANY($1::text[])`,
      [topics],
    );
    return rows;
  }));
  const ends = await attempt(errors, new Map<string, bigint[]>(), () => links.endOffsets(topics));
  const group = await attempt(errors, new Map<string, bigint>(), () => links.groupOffsets(topics));
  const partitions: PartitionStatus[] = [];
  for (const topic of topics) {
    for (const [partition, end] of (ends.get(topic) ?? []).entries()) {
      const row = applied.find((r) => r.topic === topic && r.partition === partition);
      const appliedOffset = row ? Number(row.next_offset) : 0;
      let lag = Math.max(0, Number(end) - appliedOffset);
      if (lag > 0 && lag < exactLagBelow) lag = await attempt(errors, lag, () => links.committedRecords(topic, partition, BigInt(appliedOffset), end));
      partitions.push({ topic, partition, appliedOffset, endOffset: Number(end), lag });
    }
  }
  for (const p of partitions) {
    const committed = group.get(partitionId(p.topic, p.partition));
    p.groupOffset = committed === undefined ? null : Number(committed);
    p.groupLag = committed === undefined ? null : p.endOffset - p.groupOffset!;
  }
  const newest = applied.reduce<(typeof applied)[number] | undefined>((a, r) => (!a || r.applied_at > a.applied_at ? r : a), undefined);
  const sum = (values: number[]) => values.reduce((a, b) => a + b, 0);
  const captured = sum(tables.map((t) => t.changesPublished + t.deadLettered));
  const snapshotRows = sum(tables.map((t) => t.snapshot.rowsDone));
  const applied_ = sum(applied.map((r) => Number(r.applied)));
  const deadLettered = sum(applied.map((r) => Number(r.dead_lettered))) + sum(tables.map((t) => t.deadLettered));
  return {
    counts: { captured, snapshotRows, applied: applied_, deadLettered, inFlight: tables.some((t) => t.slot) ? null : captured + snapshotRows - applied_ - deadLettered, poison: sum(applied.map((r) => Number(r.poison))) },
    phase: problems.length > 0 ? 'not installed' : tables.length > 0 && tables.every((t) => t.phase === 'streaming') ? 'streaming' : 'snapshot',
    problems,
    tables,
    partitions,
    lag: partitions.reduce((sum, p) => sum + p.lag, 0),
    lastApplyLatencyMs: newest?.last_latency_ms ?? null,
    lastAppliedAt: newest ? newest.applied_at.toISOString() : null,
    processes: readHealth(config.home),
    errors,
  };
}

function incrementalStatus(s: Signal | undefined): TableStatus['incrementalSnapshot'] {
  return s ? { signalId: s.signalId, state: s.state, where: s.predicate, rowsDone: s.rowsDone, rowsTotal: s.rowsTotal, message: s.message } : null;
}

export function formatStatus(report: StatusReport): string {
  const c = report.counts;
  const lines = [`phase: ${report.phase}    lag: ${report.lag}    last apply latency: ${report.lastApplyLatencyMs === null ? '-' : `${Math.round(report.lastApplyLatencyMs)} ms`}`];
  lines.push(`captured ${c.captured} + snapshot rows ${c.snapshotRows} = applied ${c.applied} + dead letters ${c.deadLettered} + in flight ${c.inFlight ?? '- (logical capture counts no changes at the source)'}${c.poison ? `   (poison records: ${c.poison})` : ''}`);
  const slotsShown = new Set<string>();
  for (const t of report.tables) {
    const snap = t.phase === 'snapshot' ? `  snapshot ${t.snapshot.rowsDone}/${t.snapshot.rowsTotal ?? '?'} rows` : `  snapshot done (${t.snapshot.rowsDone} rows)`;
    const registered = t.registeredVersion === null ? '' : ` (registry v${t.registeredVersion})`;
    lines.push(`${t.table}: ${t.phase}${snap}  published ${t.changesPublished} changes  schema v${t.schemaVersion ?? '-'}${registered}`);
    const oldest = t.oldestUnpublishedSeconds === null ? 'none waiting' : `oldest unpublished ${Math.round(t.oldestUnpublishedSeconds)} s ago`;
    // the source's shared slot once, under the first of its tables
    if (t.slot) lines.push(slotsShown.has(t.slot.name) ? `  slot ${t.slot.name} (the source's, shown above)` : formatSlot(t.slot, formatBytes));
    if (t.slot) slotsShown.add(t.slot.name);
    else lines.push(`  change table ${t.changeTableRows} rows, ${formatBytes(t.changeTableBytes)}, ${oldest}`);
    const inc = t.incrementalSnapshot;
    if (inc) lines.push(`  incremental snapshot ${inc.signalId}${inc.where === null ? '' : ` where ${inc.where}`}: ${inc.state} ${inc.rowsDone}/${inc.rowsTotal ?? '?'} rows${inc.message ? ` (${inc.message.split('\n')[0]})` : ''}`);
    if (t.captureProblem) lines.push(`  capture matches columns by name: a DDL could not be followed (${t.captureProblem}) — run \`pgtunnel install\` to follow the source's columns again`);
    lines.push(`  checkpoint ${t.checkpoint.snapshot ?? '-'}${t.checkpoint.batchSnapshot ? ` (in batch ${t.checkpoint.batchSnapshot} after change ${t.checkpoint.lastChangeId})` : ''}`);
  }
  for (const p of report.processes) {
    if (p.sides) lines.push(`pid ${p.pid} role ${p.role}: sides on ${p.sides}`);
    for (const [part, h] of Object.entries(p.parts)) {
      lines.push(`pid ${p.pid} ${part}: ${h.state}${h.reason ? ` — ${h.reason.split('\n')[0]}` : ''} (since ${h.since.slice(11, 19)})`);
    }
  }
  for (const p of report.problems) lines.push(`problem: ${p}`);
  for (const e of report.errors) lines.push(`unavailable: ${e.split('\n')[0]}`);
  lines.push('topic                              partition  applied      end      lag    group group lag');
  for (const p of report.partitions) {
    const group = [p.groupOffset, p.groupLag].map((n) => (n === null || n === undefined ? '-' : String(n)).padStart(8));
    lines.push(`${p.topic.padEnd(34)} ${String(p.partition).padStart(9)} ${String(p.appliedOffset).padStart(8)} ${String(p.endOffset).padStart(8)} ${String(p.lag).padStart(8)} ${group.join('  ')}`);
  }
  return lines.join('\n');
}

export function formatBytes(n: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  const i = Math.min(units.length - 1, Math.floor(Math.log(Math.max(n, 1)) / Math.log(1024)));
  return `${i === 0 ? n : (n / 1024 ** i).toFixed(1)} ${units[i]}`;
}
