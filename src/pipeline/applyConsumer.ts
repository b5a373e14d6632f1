import { Consumer } from '../transport/kafkaLib.js';
import { FetchReader, type FetchedSet } from '../transport/fetchReader.js';
import type { Readable } from 'node:stream';
import type pg from 'pg';
import type { TunnelConfig } from '../config/load.js';
import { connect } from '../pg.js';
import { TargetWriter, type TableApply } from '../apply/targetWriter.js';
import type { ScannedSet } from '../apply/copyPath.js';
import { applySession } from '../apply/session.js';
import { closeConsumer, kafkaClientOptions, type EnvelopeProducer } from '../transport/kafka.js';
import { DeadLetterWriter, type RawRecord } from '../validate/deadLetters.js';
import { RecordDecoder, type ReadRegistry } from '../contracts/recordDecoder.js';
import { isFramed } from '../contracts/wireFormat.js';
import type { Logger } from '../instruments/log.js';
import type { Health } from '../instruments/health.js';
import { failpoint } from './failpoints.js';
import { retryOrStop } from './consumerRetry.js';
import { GroupOffsets, type Committable } from './groupOffsets.js';
import { SetBuffers, type FetchedBytes } from '../transport/setBytes.js';
import { telemetry } from '../instruments/telemetry.js';
import { Backoff, wakeOrAbort } from '../retry.js';
import { claimInstanceId, watchAssignment } from './groupMembership.js';
import { applicationNames, clientIds, partitionId } from '../names.js';

/** A polled set and when its first message arrived, for the stage timings. */
export interface PolledSet<M> {
  messages: M[];
  arrivedAt: number;
}

/**
 * A set read for its write: its records (Avro ones deferred when the byte path took them) over one buffer of
 * the set's bytes, the byte path's lines, and the last offset per partition to commit (the group's offsets).
 */
interface PreparedSet {
  set: PolledSet<Committable>;
  count: number;
  records: RawRecord[];
  scanned: ScannedSet | undefined;
  /** The buffer its records are views of, given back once the set is written. */
  bytes: Buffer;
}

function lastPerPartition(records: FetchedBytes[], reader: FetchReader): Committable[] {
  const last = new Map<string, FetchedBytes>();
  for (const r of records) last.set(partitionId(r.topic, r.partition), r);
  return [...last.values()].map(({ topic, partition, offset }) => ({ topic, partition, commit: () => reader.commitPast(topic, partition, offset) }));
}

/**
 * A JSON record whose value text is made only when a reader asks (and then kept): the byte path scans
 * `valueBytes` and never asks, so a snapshot set holds its bytes once, not once more as strings.
 */
export function jsonRecord({ topic, partition, offset, key, value }: FetchedBytes): RawRecord {
  let text: string | undefined;
  // an own enumerable getter: a spread copy (`{ ...r, key }`) carries the text
  return { topic, partition, offset, key: key?.toString('utf8'), keyBytes: key, valueBytes: value, get value() { return (text ??= value?.toString('utf8')); } };
}

/** How long the group keeps a killed consumer's partitions for its restart (a process start under load took 5-15 s). */
export const staticSessionTimeoutMs = 20_000;

/**
 * A set, and the records read ahead of it (the reader stops fetching at this), are bounded in bytes too: with
 * one set writing, one decoding, the read-ahead and one fetch, a catch-up of wide rows holds ~14 MB of records.
 * A full set of narrow rows (batchSize×4 envelopes of ~400 B) still fits, so sets are as large as before.
 */
export const maxSetBytes = 4 * 1024 * 1024;

/** Collects what the stream delivered since the last take, so each target transaction gets a whole set. */
export class PolledSets<M> {
  private buffer: M[] = [];
  private bufferedBytes = 0;
  private arrivedAt = 0;
  private wake: (() => void) | undefined;
  private failure: Error | undefined;

  constructor(private readonly stream: Readable, private readonly max: number, private readonly sizeOf: (m: M) => number = () => 0, private readonly maxBytes = maxSetBytes) {
    stream.on('data', (m: M) => {
      if (this.buffer.length === 0) this.arrivedAt = Date.now();
      this.buffer.push(m);
      this.bufferedBytes += this.sizeOf(m);
      if (this.buffer.length >= this.max || this.bufferedBytes >= this.maxBytes) stream.pause();
      this.wake?.();
    });
    stream.on('error', (err: Error) => {
      this.failure = err;
      this.wake?.();
    });
  }

  /** Whether `count` records (or the byte cap) are waiting: a set worth decoding while another is written. */
  holds(count: number): boolean {
    return this.buffer.length >= count || this.bufferedBytes >= this.maxBytes;
  }

  /** Messages delivered and not taken yet. */
  get buffered(): number {
    return this.buffer.length;
  }

  async take(signal: AbortSignal): Promise<PolledSet<M> | undefined> {
    while (this.buffer.length === 0 && !signal.aborted && !this.failure) {
      await wakeOrAbort(signal, (wake) => (this.wake = wake));
      this.wake = undefined;
    }
    if (this.failure) throw this.failure;
    if (signal.aborted) return undefined;
    let count = 0;
    let bytes = 0;
    while (count < this.buffer.length && count < this.max) {
      const size = this.sizeOf(this.buffer[count]!);
      if (count > 0 && bytes + size > this.maxBytes) break;
      bytes += size;
      count++;
    }
    this.bufferedBytes -= bytes;
    const set = { messages: this.buffer.splice(0, count), arrivedAt: this.arrivedAt };
    if (this.buffer.length > 0) this.arrivedAt = Date.now();
    if (this.stream.isPaused()) this.stream.resume();
    return set;
  }
}

/** Consumes the table topics in a group and applies each polled set to the target exactly once. */
export class ApplyConsumer {
  constructor(
    private readonly config: TunnelConfig,
    private readonly tables: Map<string, TableApply>,
    private readonly deadLetters: EnvelopeProducer,
    private readonly log: Logger,
    private readonly health: Health,
    private readonly clientId: string = clientIds.apply,
    registry?: ReadRegistry,
  ) {
    health.set('consumer', 'starting');
    this.decoder = new RecordDecoder(registry, (topic) => this.tables.get(topic)?.format);
  }

  private readonly decoder: RecordDecoder;

  async run(signal: AbortSignal): Promise<void> {
    const backoff = new Backoff();
    const dlq = new DeadLetterWriter(this.deadLetters);
    while (!signal.aborted) {
      let target: pg.Client | undefined;
      let consumer: Consumer | undefined;
      let reader: FetchReader | undefined;
      const offsets = new GroupOffsets(this.log);
      try {
        target = await connect(this.config.targetUrl, 'target', applicationNames.apply);
        await applySession(target, this.log);
        const instanceId = await claimInstanceId(target, this.config.groupId, this.config.groupInstanceId);
        const counts = new Map<string, number>();
        const partitionCount = async (topic: string): Promise<number> => {
          if (!counts.has(topic)) counts.set(topic, (await consumer!.metadata({ topics: [topic] })).topics.get(topic)?.partitionsCount ?? 1);
          return counts.get(topic)!;
        };
        consumer = new Consumer({
          clientId: this.clientId,
          ...kafkaClientOptions(this.config),
          groupId: this.config.groupId,
          groupInstanceId: instanceId,
          // partitions a consumer keeps are not revoked while the group rebalances
          protocols: [{ name: 'cooperative-sticky', version: 3 }],
          autocommit: false,
          // Static membership: a consumer restarted within this time gets its partitions back without a
          // rebalance; one that is not restarted gives them up after it (a stopped one leaves at once).
          sessionTimeout: staticSessionTimeoutMs,
          heartbeatInterval: 1000,
          retries: 3,
          retryDelay: 250,
          timeout: 10_000,
        });
        watchAssignment(consumer, instanceId, this.log);
        reader = new FetchReader(consumer, [...this.tables.keys()], this.config.kafkaBrokers, this.config.batchSize * 4, maxSetBytes);
        await reader.start();
        const deferred = { avroPair: (r: RawRecord) => this.decoder.avroPair(r.topic, r.wire?.key, r.wire?.value), decode: (r: RawRecord) => this.wireRecord(r, r.wire?.key, r.wire?.value) };
        const writer = new TargetWriter(target, this.tables, partitionCount, dlq, () => failpoint('apply.write'), true, deferred);
        this.log.info({ group: this.config.groupId, instanceId }, 'consumer started');
        this.health.set('consumer', 'ok');
        await this.applySets(reader, writer, offsets, signal, backoff);
      } catch (err) {
        // a table-wide error or a bug: the set stays unapplied (no dead letters), the consumer stops
        await retryOrStop(err, backoff, this.health, this.log, signal);
      } finally {
        await offsets.settle(1000);
        await reader?.close();
        if (consumer) await closeConsumer(consumer);
        await target?.end().catch(() => {});
      }
    }
  }

  /**
   * Decode of set N+1 overlapped with the write of set N: at most one set decoding and one writing (each
   * bounded by the reader in bytes), the writes one after another in poll order, so per-partition order and
   * the offsets stored with each write are as with one set at a time. A failed write stops the taking.
   * Only a full set (a backlog) is decoded ahead: else the next set gathers what arrives during the write,
   * as one set at a time did, rather than splitting a live stream into many small transactions.
   */
  private async applySets(reader: FetchReader, writer: TargetWriter, offsets: GroupOffsets, signal: AbortSignal, backoff: Backoff): Promise<void> {
    const failed = new AbortController();
    const taking = AbortSignal.any([signal, failed.signal]);
    let writing: Promise<void> = Promise.resolve();
    let writeError: unknown;
    const buffers = new SetBuffers(maxSetBytes);
    try {
      for (;;) {
        if (!reader.holds(this.config.batchSize)) await writing;
        if (writeError !== undefined) break;
        const set = await reader.take(taking, (bytes) => buffers.take(bytes));
        if (!set) break;
        const prepared = await this.prepare(set, reader, writer);
        await writing;
        if (writeError !== undefined) break;
        writing = this.applySet(prepared, writer, offsets).then(() => {
          // written and committed: nothing reads its records any more (dead letters are in Kafka, parked keys in the target)
          buffers.give(prepared.bytes);
          this.health.set('consumer', 'ok');
          backoff.reset();
        }, (err: unknown) => {
          writeError = err;
          failed.abort();
        });
      }
    } finally {
      await writing;
    }
    if (writeError !== undefined) throw writeError;
  }

  /** The decode stage: records read (Avro deferred), and the byte path's scan; the general path's decode when it is not taken. */
  private async prepare(set: FetchedSet, reader: FetchReader, writer: TargetWriter): Promise<PreparedSet> {
    const decodeAt = performance.now();
    const read = set.records.map((m) => this.record(m));
    let records = read.some((r) => r instanceof Promise) ? await Promise.all(read) : (read as RawRecord[]);
    const scanned = writer.scan(records);
    if (!scanned) records = await writer.undeferred(records);
    writer.noteDecoded(performance.now() - decodeAt);
    return { set: { messages: lastPerPartition(set.records, reader), arrivedAt: set.arrivedAt }, count: set.records.length, records, scanned, bytes: set.bytes };
  }

  private async applySet({ set: { messages: set, arrivedAt }, count, records, scanned }: PreparedSet, writer: TargetWriter, offsets: GroupOffsets): Promise<void> {
    const takenAt = Date.now();
    telemetry.stages({ queue: takenAt - arrivedAt });
    const result = await writer.apply(records, scanned);
    writer.release(scanned);
    failpoint('apply.after-commit');
    if (result.deadLettered > 0) this.log.warn({ count: result.deadLettered }, 'changes sent to the dead-letter topic (pgtunnel dlq list)');
    if (result.skipped > 0) this.log.info({ skipped: result.skipped }, 'skipped records the target already had');
    offsets.note(set, this.health);
    // Stage timings of each set, for the latency hunt (bench/stall.ts reads them).
    this.log.debug({ count, arrivedAt, takenAt, committedAt: Date.now() }, 'set applied');
  }

  /**
   * A polled message as the apply path reads it: JSON texts, whatever format it was written in. JSON text
   * is read in place (no promise per record: a set is thousands); the wire format goes through the decoder.
   */
  private record(m: FetchedBytes): RawRecord | Promise<RawRecord> {
    if (isFramed(m.key) || isFramed(m.value)) {
      const { key, value } = m;
      // an Avro record whose schemas are at hand waits for the byte path's scan: decoded only if it declines
      if (this.decoder.avroPair(m.topic, key, value)) return { topic: m.topic, partition: m.partition, offset: m.offset, key: undefined, value: '', deferred: true, wire: { key, value, format: 'avro', schemaId: value!.readUInt32BE(1) } };
      // a JSON Schema record whose schemas are known is its JSON payload, read in place as JSON's is
      const payloads = this.decoder.jsonSchemaPair(m.topic, key, value);
      if (payloads) {
        // not a spread: it would read the value's text, which is made only when asked for
        const record = jsonRecord({ topic: m.topic, partition: m.partition, offset: m.offset, key: payloads.key, value: payloads.value });
        record.wire = { key, value, format: 'json-schema', schemaId: payloads.schemaId };
        return record;
      }
      return this.wireRecord(m, key, value);
    }
    return jsonRecord(m);
  }

  private async wireRecord(m: { topic: string; partition: number; offset: bigint }, key: Buffer | undefined, value: Buffer | undefined): Promise<RawRecord> {
    const base = { topic: m.topic, partition: m.partition, offset: m.offset };
    const d = await this.decoder.decode(m.topic, key, value);
    if ('poison' in d) {
      return { ...base, key: key?.toString('latin1'), value: '', unreadable: d.poison, wire: { key, value, format: 'unreadable' } };
    }
    const form = d.form.value ?? d.form.key;
    const record: RawRecord = { ...base, key: d.key, value: d.value, decoded: d.decoded, valueBytes: d.valueBytes };
    if (form && form.format !== 'json') record.wire = { key, value, format: form.format, schemaId: form.schemaId };
    return record;
  }
}
