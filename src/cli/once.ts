import type pg from 'pg';
import type { TableConfig, TunnelConfig } from '../config/load.js';
import { TunnelError, describeError } from '../errors.js';
import { logicalSlotOf } from '../capture/sharedSlot.js';
import { applicationNames, clientIds, partitionId, slotName, tableId } from '../names.js';
import { connect, qualified } from '../pg.js';
import { storedOffsets } from '../apply/offsets.js';
import { endOffsets } from '../transport/kafka.js';
import { CommittedReader } from '../transport/committedReader.js';
import type { Logger } from '../instruments/log.js';
import { Backoff, sleep } from '../retry.js';

/** Which sides a `run --once` waits for. */
export interface OnceParts {
  produce: boolean;
  apply: boolean;
}

/**
 * What "committed before it started" means, read once the services answer:
 * - `snapshot`: the source's `pg_current_snapshot()`. Publishing is done when every table's snapshot was
 *   published and no change row of a transaction visible in it is left unpublished.
 * - `ends`: for a consumer alone, the table topics' end offsets (what was published before it started);
 *   with the producer, they are read once publishing is done.
 */
export interface OnceHorizon {
  snapshot?: string;
  /** The source's WAL insert position: a table captured by logical decoding is published once its slot confirmed it. */
  lsn?: string;
  ends?: Map<string, bigint[]>;
  /** Dead letters counted so far (source and target), to report this run's own. */
  deadLetters: number;
}

/** What a finished `run --once` did. */
export interface OnceResult {
  /** Records the target had to reach, per partition: `topic[partition]` → end offset. */
  applyUpTo: Record<string, number>;
  deadLetters: number;
}

export async function readHorizon(config: TunnelConfig, parts: OnceParts): Promise<OnceHorizon> {
  const horizon: OnceHorizon = { deadLetters: await countDeadLetters(config, parts) };
  if (parts.produce) {
    const client = await connect(config.sourceUrl, 'source', applicationNames.once);
    try {
      const { rows } = await client.query<{ s: string; lsn: string }>('SELECT pg_current_snapshot()::text AS s, pg_current_wal_insert_lsn()::text AS lsn');
      [horizon.snapshot, horizon.lsn] = [rows[0]!.s, rows[0]!.lsn];
    } finally {
      await client.end().catch(() => {});
    }
  } else {
    horizon.ends = await endOffsets(config, config.tables.map((t) => t.topic));
  }
  return horizon;
}

/** Dead letters so far: the producer's (bad actions) when publishing, the consumer's when applying. */
async function countDeadLetters(config: TunnelConfig, parts: OnceParts): Promise<number> {
  const sum = async (url: string, role: 'source' | 'target', sql: string, names: string[]) => {
    const client = await connect(url, role, applicationNames.once);
    try {
      return Number((await client.query<{ n: string }>(sql, [names])).rows[0]!.n);
    } finally {
      await client.end().catch(() => {});
    }
  };
  let n = 0;
  if (parts.produce) n += await sum(config.sourceUrl, 'source', 'SELECT coalesce(sum(dead_lettered), 0)::text AS n FROM pgtunnel.state WHERE table_id = ANY($1::text[])', config.tables.map(tableId));
  if (parts.apply) n += await sum(config.targetUrl, 'target', 'SELECT coalesce(sum(dead_lettered), 0)::text AS n FROM pgtunnel.consumer_offsets WHERE topic = ANY($1::text[])', config.tables.map((t) => t.topic));
  return n;
}

/**
 * What is still unpublished of a table: its snapshot, or (trigger capture) change rows of transactions
 * visible in the horizon and not in the stored checkpoint (rows of a batch under way count until the batch
 * completes), or (logical capture) WAL up to the horizon's position the slot has not confirmed: the slot
 * confirms only what Kafka acknowledged, and an idle stream confirms the server's WAL end.
 */
async function unpublished(client: pg.Client, table: TableConfig, horizon: OnceHorizon, instance: string): Promise<string | undefined> {
  // the table's own slot, or the source's shared one (it confirms only what every table's Kafka acknowledged)
  const slot = (await logicalSlotOf(client, table, instance))?.slot ?? slotName(table, client.database ?? '');
  const { rows } = await client.query<{ phase: string; done: string; total: string | null; logical: boolean; confirmed: string | null; caught_up: boolean | null }>(
    `SELECT s.phase, s.snapshot_rows_done::text AS done, s.snapshot_rows_total::text AS total, sl.slot_name IS NOT NULL AS logical,
            sl.confirmed_flush_lsn::text AS confirmed, sl.confirmed_flush_lsn >= $3::pg_lsn AS caught_up
     FROM pgtunnel.state s LEFT JOIN pg_replication_slots sl ON sl.slot_name = $2 WHERE s.table_id = $1`,
    [tableId(table), slot, horizon.lsn],
  );
  const r = rows[0];
  if (!r) return `capture of ${tableId(table)} to be installed`;
  if (r.phase === 'snapshot') return `the snapshot of ${tableId(table)} to be published (${r.done} of ${r.total ?? '?'} rows)`;
  if (r.logical) return r.caught_up ? undefined : `the changes of ${tableId(table)} up to WAL ${horizon.lsn} to be published (its slot confirmed ${r.confirmed ?? 'nothing'})`;
  const pending = await client.query<{ n: string }>(
    `SELECT count(*)::text AS n FROM ${qualified(table.schema, table.changeTable)} c, pgtunnel.state s
     WHERE s.table_id = $1 AND c.txid < pg_snapshot_xmax($2::pg_snapshot) AND pg_visible_in_snapshot(c.txid, $2::pg_snapshot)
       AND (s.prev_snapshot IS NULL OR (c.txid >= pg_snapshot_xmin(s.prev_snapshot) AND NOT pg_visible_in_snapshot(c.txid, s.prev_snapshot)))`,
    [tableId(table), horizon.snapshot],
  );
  if (pending.rows[0]!.n !== '0') return `${pending.rows[0]!.n} changes of ${tableId(table)} to be published`;
  return undefined;
}

/** Partitions whose stored target offset is below the goal, as `topic[p] applied/end`. */
async function unapplied(client: pg.Client, ends: Map<string, bigint[]>, committed: CommittedReader | undefined): Promise<string[]> {
  const stored = await storedOffsets(client, [...ends.keys()]);
  const behind: string[] = [];
  for (const [topic, partitions] of ends) {
    for (const [partition, end] of partitions.entries()) {
      const applied = stored.get(partitionId(topic, partition)) ?? 0n;
      if (applied >= end) continue;
      // exactly-once: transaction markers take offsets the target never stores; only records (and open transactions) count
      if (committed && (await committed.settled(topic, partition, applied, end))) continue;
      behind.push(`${topic}[${partition}] ${applied}/${end}`);
    }
  }
  return behind;
}

/**
 * Waits until everything committed before the horizon is published (and, when applying, applied by the
 * target: its stored offsets reach the topics' end offsets read after publishing finished). Whoever does
 * the work (this process, or another producer or consumer of the group) counts. `waiting` always says
 * what is still awaited. Resolves undefined when the signal aborts first.
 */
export async function waitUntilDone(config: TunnelConfig, parts: OnceParts, horizon: OnceHorizon, signal: AbortSignal, log: Logger, waiting: { what: string }): Promise<OnceResult | undefined> {
  const backoff = new Backoff(200, 5000);
  let ends = horizon.ends;
  let source: pg.Client | undefined;
  let target: pg.Client | undefined;
  let committed: CommittedReader | undefined;
  let loggedAt = Date.now();
  try {
    while (!signal.aborted) {
      try {
        if (parts.produce && !ends) {
          source ??= await connect(config.sourceUrl, 'source', applicationNames.once);
          const left: string[] = [];
          for (const t of config.tables) {
            const what = await unpublished(source, t, horizon, config.topicPrefix);
            if (what) left.push(what);
          }
          waiting.what = left.join('; ');
          if (left.length === 0) {
            if (!parts.apply) return { applyUpTo: {}, deadLetters: (await countDeadLetters(config, parts)) - horizon.deadLetters };
            ends = await endOffsets(config, config.tables.map((t) => t.topic));
            log.info('run --once: everything committed before the start is published; waiting for the target to apply it');
          }
        }
        if (ends) {
          target ??= await connect(config.targetUrl, 'target', applicationNames.once);
          committed ??= config.exactlyOnce ? new CommittedReader(config, clientIds.once) : undefined;
          const behind = await unapplied(target, ends, committed);
          waiting.what = behind.length > 0 ? `the target to apply ${behind.join(', ')} (applied/end offset)` : '';
          if (behind.length === 0) {
            const applyUpTo: Record<string, number> = {};
            for (const [topic, partitions] of ends) partitions.forEach((end, p) => (applyUpTo[`${topic}[${p}]`] = Number(end)));
            return { applyUpTo, deadLetters: (await countDeadLetters(config, parts)) - horizon.deadLetters };
          }
        }
        backoff.reset();
        if (Date.now() - loggedAt >= 5000) {
          loggedAt = Date.now();
          log.info({ waitingFor: waiting.what }, `run --once waiting for ${waiting.what}`);
        }
        await sleep(100, signal);
      } catch (err) {
        // The tunnel's own parts retry and report what they wait for; this watcher just tries again.
        waiting.what = `${waiting.what || 'the services'} (${describeError(err).split('\n')[0]})`;
        await source?.end().catch(() => {});
        await target?.end().catch(() => {});
        source = target = undefined;
        await sleep(backoff.next(), signal);
      }
    }
    return undefined;
  } finally {
    await source?.end().catch(() => {});
    await target?.end().catch(() => {});
    await committed?.close();
  }
}

/** A `run --once` that ran out of time: what it waited for, and what each part of the tunnel waits for. */
export function onceTimeout(seconds: number, what: string, partsWaiting: string[], outage: boolean): TunnelError {
  const reasons = partsWaiting.length > 0 ? `; ${partsWaiting.join('; ')}` : '';
  return new TunnelError('PGT_ONCE_TIMEOUT', `run --once timed out after ${seconds} s waiting for ${what || 'the tunnel to start'}${reasons}`, {
    // a part waiting for a service that does not answer is an outage (exit 3); anything else is slowness (exit 4)
    errorClass: outage ? 'unreachable' : 'fatal',
    hint: 'fix what it waits for (pgtunnel status shows each part), or give it longer with --timeout',
  });
}

/** `90`, `90s`, `10m`, `1h` → milliseconds. */
export function parseTimeout(text: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h)?$/.exec(text.trim());
  if (!m) throw new TunnelError('PGT_USAGE', `--timeout ${JSON.stringify(text)} is not a duration`, { errorClass: 'config', hint: 'give seconds (90) or a unit: 90s, 10m, 1h' });
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[m[2] ?? 's']!;
  const ms = Number(m[1]) * unit;
  if (ms <= 0) throw new TunnelError('PGT_USAGE', '--timeout must be positive', { errorClass: 'config', hint: 'give seconds (90) or a unit: 90s, 10m, 1h' });
  return ms;
}
