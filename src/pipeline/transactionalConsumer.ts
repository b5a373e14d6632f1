import { randomUUID } from 'node:crypto';
import { stringDeserializer, type Message } from '../transport/kafkaLib.js';
import { CommittedConsumer } from '../transport/abortedBatches.js';
import type pg from 'pg';
import type { TunnelConfig } from '../config/load.js';
import { sqlState, TunnelError } from '../errors.js';
import { connect } from '../pg.js';
import { applicationNames, clientIds, lockNames, oneOffGroupId, partitionId, transactionTopic } from '../names.js';
import type { TableApply } from '../apply/targetWriter.js';
import { TransactionBuffer, writeKey, type HeldRecord, type Unit } from '../apply/transactionBuffer.js';
import { envelopeTail } from '../apply/envelopeTail.js';
import { CommitWatermark } from '../apply/commitWatermark.js';
import { progressOf } from '../contracts/transaction.js';
import { telemetry } from '../instruments/telemetry.js';
import { TransactionApply } from '../apply/transactionApply.js';
import { foreignKeys, parentsFirst } from '../apply/foreignKeys.js';
import { storedOffsets } from '../apply/offsets.js';
import { closeConsumer, kafkaClientOptions, unreachableBroker, type EnvelopeProducer } from '../transport/kafka.js';
import { DeadLetterWriter } from '../validate/deadLetters.js';
import type { Logger } from '../instruments/log.js';
import type { Health } from '../instruments/health.js';
import { Backoff } from '../retry.js';
import { failpoint } from './failpoints.js';
import { retryOrStop } from './consumerRetry.js';
import { PolledSets } from './applyConsumer.js';
import { ApplierStages } from './applierStages.js';
import { copyIn } from '../apply/staging.js';
import { copyString } from '../contracts/spanValues.js';

type BytesMessage = Message<Buffer, Buffer, string, string>;

const bytesDeserializers = { key: (b?: Buffer) => b, value: (b?: Buffer) => b, headerKey: stringDeserializer, headerValue: stringDeserializer };

/** Applied unit ids remembered in memory, so a late copy of one of their records is not held forever. */
const recentUnits = 200_000;

/** How long one blocking wait for the applier lock lasts before a standby looks at its stop signal again. */
const waitSliceMs = 1000;

/** How often an applier holding transactions looks again for progress that came with no record. */
const recheckMs = 100;

/**
 * `apply: transactional`: one applier per tunnel reads every partition of the tunnel's topics and the
 * transaction topic, and applies each source transaction whole, in the order its rows' locks imposed
 * (src/apply/transactionBuffer.ts). It holds an advisory lock in the target; other instances stand by on
 * it and take over the moment its session ends, resuming from what the target stored.
 */
export class TransactionalConsumer {
  private readonly txTopic: string;
  /** Units a foreign key refused, and since when: the wait outlives a restart of the applier. */
  private readonly foreignKeyWaits = new Map<string, number>();

  constructor(
    private readonly config: TunnelConfig,
    private readonly tables: Map<string, TableApply>,
    private readonly deadLetters: EnvelopeProducer,
    private readonly log: Logger,
    private readonly health: Health,
  ) {
    this.txTopic = transactionTopic(config.topicPrefix);
    health.set('consumer', 'starting');
  }

  async run(signal: AbortSignal): Promise<void> {
    const backoff = new Backoff();
    while (!signal.aborted) {
      let target: pg.Client | undefined;
      let consumer: CommittedConsumer | undefined;
      try {
        target = await connect(this.config.targetUrl, 'target', applicationNames.apply);
        if (!(await this.lead(target, signal))) break;
        consumer = new CommittedConsumer({
          clientId: clientIds.apply,
          ...kafkaClientOptions(this.config),
          // a group of its own: this applier reads every partition; its offsets live in the target
          groupId: oneOffGroupId(clientIds.apply, randomUUID()),
          autocommit: false,
          deserializers: bytesDeserializers,
          retries: 3,
          retryDelay: 250,
          timeout: 10_000,
        });
        await this.applyFrom(target, consumer, signal);
        backoff.reset();
      } catch (err) {
        await retryOrStop(err, backoff, this.health, this.log, signal);
      } finally {
        if (consumer) await closeConsumer(consumer);
        await target?.end().catch(() => {});
      }
    }
  }

  /** Waits until this session holds the group's applier lock; false when stopped first. */
  private async lead(target: pg.Client, signal: AbortSignal): Promise<boolean> {
    const args = [lockNames.transactionalApply, this.config.groupId];
    const { rows } = await target.query<{ ok: boolean }>('SELECT pg_try_advisory_lock(hashtext($1), hashtext($2)) AS ok', args);
    if (rows[0]!.ok) return true;
    this.health.set('consumer', 'standby', 'another instance applies this tunnel (apply: transactional)');
    this.log.info({ group: this.config.groupId }, 'standing by: another instance applies this tunnel');
    await target.query(`SET lock_timeout = ${waitSliceMs}`);
    while (!signal.aborted) {
      try {
        await target.query('SELECT pg_advisory_lock(hashtext($1), hashtext($2))', args);
        await target.query('RESET lock_timeout');
        return true;
      } catch (err) {
        if (sqlState(err) !== '55P03') throw err;
      }
    }
    return false;
  }

  private async applyFrom(target: pg.Client, consumer: CommittedConsumer, signal: AbortSignal): Promise<void> {
    const topics = [...this.tables.keys(), this.txTopic];
    // spilled records are read again from Kafka: what an earlier run left is stale
    await target.query('DELETE FROM pgtunnel.held_records');
    const stored = await storedOffsets(target, topics);
    const { rows } = await target.query<{ unit_id: string }>('SELECT DISTINCT unit_id FROM pgtunnel.applied_ahead WHERE topic = ANY ($1::text[])', [topics]);
    const ahead = new Set(rows.map((r) => r.unit_id));
    const counts = await this.partitionCounts(consumer, topics);
    const order = parentsFirst([...this.tables].map(([topic, t]) => ({ topic, table: t.table })), await foreignKeys(target));
    const offsets = topics.flatMap((topic) => Array.from({ length: counts.get(topic)! }, (_, partition) => ({ topic, partition, offset: stored.get(partitionId(topic, partition)) ?? 0n })));
    let stream;
    try {
      stream = await consumer.consume({ topics, mode: 'manual', offsets, maxWaitTime: 500, maxBytes: 2 * 1024 * 1024 });
    } catch (err) {
      throw unreachableBroker(this.config.kafkaBrokers, err);
    }
    try {
      const tableIds = new Set([...this.tables.values()].map((t) => t.table));
      // a spilled transaction's key summary: 1/16 of the budget (1 MiB for the default 64 MiB), ~10 bits a key at 1M keys
      const summaryBytes = Math.max(64 * 1024, Math.min(this.config.transactionBufferBytes / 16, 8 * 1024 * 1024));
      const buffer = new TransactionBuffer((topic) => counts.get(topic) ?? 1, stored, (table) => tableIds.has(table), summaryBytes);
      const applier = new TransactionApply(target, this.tables, (topic) => counts.get(topic) ?? 1, new DeadLetterWriter(this.deadLetters), order, () => failpoint('apply.write'), this.foreignKeyWaits);
      const sets = new PolledSets<BytesMessage>(stream, this.config.batchSize * 4, (m) => (m.value?.length ?? 0) + (m.key?.length ?? 0));
      const watermark = new CommitWatermark(new Map([...this.tables].map(([topic, t]) => [t.table, topic])));
      const gate = (u: Unit) => u.single || watermark.passes(u.id);
      let stalled: string | undefined;
      this.log.info({ group: this.config.groupId, units: ahead.size }, 'transactional applier started');
      this.health.set('consumer', 'ok');
      let lastReport = Date.now();
      let storedText = '';
      const stages = new ApplierStages();
      for (;;) {
        // held transactions wait for progress marks that may come without records (a topic's end is a commit marker)
        let at = performance.now();
        const set = await sets.take(buffer.held > 0 ? AbortSignal.any([signal, AbortSignal.timeout(recheckMs)]) : signal);
        if (signal.aborted) break;
        at = stages.add('wait', at);
        const messages = set?.messages ?? [];
        if (messages.length > 0) stages.count('sets');
        const spilledWriters = buffer.spilling && messages.length > 0 ? await this.spilledWriters(target, buffer, messages) : undefined;
        for (const m of messages) this.hold(m, buffer, ahead, watermark, spilledWriters);
        if (sets.buffered === 0 && stream.readableLength === 0) readToFetched(stream.offsetsToFetch, watermark);
        await this.takeEnds(consumer, watermark);
        watermark.settle();
        at = stages.add('hold', at);
        let units = buffer.take(this.config.batchSize, gate);
        // records that apply nothing (tombstones, BEGIN, copies of applied units) still move the stored offsets,
        // so the target's offsets reach the topics' ends (`run --once`, status lag)
        if (units.length === 0 && buffer.held === 0 && offsetsText(buffer.nextOffsets()) !== storedText) {
          await applier.apply([], buffer.nextOffsets());
          storedText = offsetsText(buffer.nextOffsets());
        }
        for (; units.length > 0; units = buffer.take(this.config.batchSize, gate)) {
          await applier.apply(units, buffer.nextOffsets());
          stages.count('commits');
          stages.count('units', units.length);
          stages.count('records', units.reduce((n, u) => n + u.records.length + u.spilled, 0));
          storedText = offsetsText(buffer.nextOffsets());
          failpoint('apply.after-commit');
          for (const u of units) ahead.add(u.id);
          // a copy of an applied transaction's record (an aborted Kafka transaction's, read past its marker) is skipped
          for (const id of ahead) {
            if (ahead.size <= recentUnits) break;
            ahead.delete(id);
          }
        }
        at = stages.add('apply', at);
        // only what cannot go now spills: every releasable unit was applied above
        await this.spill(target, buffer, stages);
        stages.add('spill', at);
        stalled = this.orderHealth(watermark.stalled(), stalled);
        if (Date.now() - lastReport > 10_000 && (buffer.held > 0 || stages.busy)) {
          lastReport = Date.now();
          this.log.info({ held: buffer.held, bytes: buffer.bytes, oldest: buffer.oldest(), ...stages.report() }, 'transactions held for their parts');
        }
      }
    } finally {
      await stream.close().catch(() => {});
    }
  }

  private hold(m: BytesMessage, buffer: TransactionBuffer, ahead: Set<string>, watermark: CommitWatermark, spilledWriters: Map<string, string[]> | undefined): void {
    const r = heldRecord(m);
    if (m.topic === this.txTopic) {
      const progress = r.value === undefined ? undefined : progressOf(r.value);
      if (progress) {
        watermark.progress(progress.table, progress.snapshot, Date.now(), progress.ends);
        return buffer.pass(r);
      }
      const end = r.value === undefined ? undefined : endEvent(r.value);
      if (end && !ahead.has(end.id)) buffer.end(r, end.id, end.counts);
      else buffer.pass(r);
      return;
    }
    watermark.readTo(m.topic, m.partition, m.offset + 1n);
    const tail = envelopeTail(r.value);
    if (r.value === undefined || ahead.has(tail?.txId ?? singleId(r))) return buffer.pass(r);
    buffer.add(r, this.tables.get(m.topic)!.table, tail, singleId(r), spilledWriters?.get(writeKey(r, tail)));
  }

  /**
   * The spilled transactions that wrote a key of this set's records: their key summaries name candidates, the
   * spilled records in the target tell for sure (one query a set, and only while a transaction is spilled).
   */
  private async spilledWriters(target: pg.Client, buffer: TransactionBuffer, messages: BytesMessage[]): Promise<Map<string, string[]>> {
    const asked = new Map<string, { topic: string; key: string }>();
    const units = new Set<string>();
    for (const m of messages) {
      if (m.topic === this.txTopic || m.value === undefined) continue;
      const r = heldRecord(m);
      const tail = envelopeTail(r.value);
      if (tail?.op === 't') continue;
      const key = writeKey(r, tail);
      const candidates = buffer.maySpilledWriters(key, tail?.txId ?? singleId(r));
      if (candidates.length === 0) continue;
      asked.set(key, { topic: r.topic, key: r.key ?? '' });
      for (const id of candidates) units.add(id);
    }
    const found = new Map<string, string[]>();
    if (asked.size === 0) return found;
    const { rows } = await target.query<{ unit_id: string; topic: string; record_key: string }>(
      `SELECT DISTINCT h.unit_id, h.topic, k.record_key
       FROM unnest($1::text[], $2::text[]) AS k(topic, record_key)
       JOIN pgtunnel.held_records h ON coalesce(h.record_key, '') = k.record_key AND h.topic = k.topic
       WHERE h.unit_id = ANY ($3::text[])`,
      [[...asked.values()].map((a) => a.topic), [...asked.values()].map((a) => a.key), [...units]],
    );
    for (const row of rows) {
      const key = writeKey({ topic: row.topic, partition: 0, key: row.record_key }, undefined);
      found.set(key, [...(found.get(key) ?? []), row.unit_id]);
    }
    return found;
  }

  /** The end offsets of the topics whose progress marks were just read: the marks count once these are read. */
  private async takeEnds(consumer: CommittedConsumer, watermark: CommitWatermark): Promise<void> {
    const topics = watermark.wantsEnds();
    if (topics.length === 0) return;
    let listed;
    try {
      listed = await consumer.listOffsets({ topics });
    } catch (err) {
      throw unreachableBroker(this.config.kafkaBrokers, err);
    }
    for (const topic of topics) {
      const ends = listed.get(topic);
      if (ends && ends.length > 0) watermark.ends(topic, ends);
    }
  }

  /** Status says what held transactions wait for once they waited long; the log and the degraded event once per stall. */
  private orderHealth(stall: string | undefined, before: string | undefined): string | undefined {
    this.health.set('consumer', stall ? 'waiting' : 'ok', stall);
    if (stall && !before) {
      this.log.warn({ group: this.config.groupId }, stall);
      telemetry.degraded('consumer', stall);
    }
    return stall;
  }

  /**
   * Over the budget: units that cannot be applied yet go to the target, the incomplete ones first, until half
   * of it is free; in one COPY (the spill ran at ~1,100 rows/s as INSERT … unnest, one statement per unit).
   */
  private async spill(target: pg.Client, buffer: TransactionBuffer, stages: ApplierStages): Promise<void> {
    if (buffer.bytes <= this.config.transactionBufferBytes) return;
    const units: Unit[] = [];
    const lines: string[] = [];
    for (let unit = buffer.spillCandidate(); unit && buffer.bytes > this.config.transactionBufferBytes / 2; unit = buffer.spillCandidate()) {
      unit.records.forEach((r, i) => lines.push(heldRecordLine(unit!.id, unit!.spilled + i, r)));
      units.push(unit);
      // forgotten before the COPY: should it fail, the applier starts again from the stored offsets with a new buffer
      buffer.spilled(unit, unit.records.length);
    }
    if (units.length === 0) return;
    await copyIn(target, 'COPY pgtunnel.held_records (unit_id, seq, topic, partition, kafka_offset, record_key, record_value) FROM STDIN', lines);
    stages.count('spills', units.length);
    stages.count('spilledRecords', lines.length);
    this.log.info({ units: units.length, records: lines.length, heldBytes: buffer.bytes }, 'records of transactions that cannot be applied yet spilled to the target (over transactionBufferBytes)');
  }

  private async partitionCounts(consumer: CommittedConsumer, topics: string[]): Promise<Map<string, number>> {
    let metadata;
    try {
      metadata = await consumer.metadata({ topics });
    } catch (err) {
      throw unreachableBroker(this.config.kafkaBrokers, err);
    }
    const out = new Map<string, number>();
    for (const topic of topics) {
      const n = metadata.topics.get(topic)?.partitionsCount;
      if (!n) throw new TunnelError('PGT_NO_TOPIC', `topic ${topic} does not exist yet`, { errorClass: 'retryable', hint: 'the producer side creates it when it starts (pgtunnel run)' });
      out.set(topic, n);
    }
    return out;
  }
}

/** A held record as a COPY text line of `pgtunnel.held_records`. */
function heldRecordLine(unitId: string, seq: number, r: HeldRecord): string {
  const text = (v: string | undefined) => (v === undefined ? '\\N' : copyString(v));
  return `${copyString(unitId)}\t${seq}\t${copyString(r.topic)}\t${r.partition}\t${r.offset}\t${text(r.key)}\t${text(r.value)}\n`;
}

function heldRecord(m: BytesMessage): HeldRecord {
  return { topic: m.topic, partition: m.partition, offset: m.offset, key: m.key?.toString('utf8'), value: m.value?.toString('utf8') };
}

/**
 * Every record the stream fetched has been held (nothing waits in its buffer or in the sets): each partition
 * is read up to its fetch position, which moves past commit markers no record shows.
 */
function readToFetched(fetched: Map<string, bigint>, watermark: CommitWatermark): void {
  for (const [key, next] of fetched) {
    const at = key.lastIndexOf(':');
    watermark.readTo(key.slice(0, at), Number(key.slice(at + 1)), next);
  }
}

/** The stored offsets as text, to tell whether anything moved. */
function offsetsText(offsets: { topic: string; partition: number; next: bigint }[]): string {
  return offsets.map((o) => `${o.topic}/${o.partition}:${o.next}`).join(',');
}

/** A record that belongs to no transaction (a snapshot row) is a unit of its own, named by its place. */
function singleId(r: { topic: string; partition: number; offset: bigint }): string {
  return `${r.topic}/${r.partition}@${r.offset}`;
}

/** Pure: an END event's transaction id and counts per table; undefined for BEGIN or anything else. */
export function endEvent(value: string): { id: string; counts: Map<string, number> } | undefined {
  let e: unknown;
  try {
    e = JSON.parse(value);
  } catch {
    return undefined;
  }
  const v = e as { status?: unknown; id?: unknown; data_collections?: unknown };
  if (v.status !== 'END' || typeof v.id !== 'string' || !Array.isArray(v.data_collections)) return undefined;
  const counts = new Map<string, number>();
  for (const d of v.data_collections as { data_collection?: unknown; event_count?: unknown }[]) {
    if (typeof d.data_collection === 'string' && typeof d.event_count === 'number') counts.set(d.data_collection, d.event_count);
  }
  return { id: v.id, counts };
}
