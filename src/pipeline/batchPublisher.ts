import type { TableConfig } from '../config/load.js';
import type { SnapshotRow } from '../capture/snapshotReader.js';
import { fieldText, type CopyRows } from '../capture/copyRows.js';
import { frameRows, snapshotFrame } from '../contracts/envelopeBytes.js';
import { TableEncoder, UnencodableError } from '../contracts/codec.js';
import { AvroOut, writeSnapshotRows } from '../contracts/avroRows.js';
import type { Logger } from '../instruments/log.js';
import { telemetry } from '../instruments/telemetry.js';
import { changeToMessages, opOf, snapshotRowToMessage, type ChangeRow, type OutMessage, type TableRef, type WireMessage } from '../contracts/envelope.js';
import { maxMessageBytes } from '../transport/kafka.js';
import { deadLetterMessage, type DeadLetter } from '../validate/deadLetters.js';
import type { Publication } from './publisher.js';
import { changeTableId, transactionTopic } from '../names.js';
import { transactionEventMessage } from '../contracts/transaction.js';
import { changeFrames, frameChanges, pageFields } from '../contracts/changeFrames.js';
import { ChangeReader } from '../capture/changeReader.js';

/** What one unit of work published: changes by op (unknown actions as "bad"), and snapshot rows. */
export interface Tally {
  changes: number;
  bad: number;
  /** Changes the row filter excluded, by op: inserts dropped, updates published as deletes. */
  filtered: Record<string, number>;
  ops: Record<string, number>;
  rows: number;
}

export const emptyTally = (): Tally => ({ changes: 0, bad: 0, filtered: {}, ops: {}, rows: 0 });

/**
 * One part of a source's page: change rows of the stream, rows of a snapshot chunk, or a chunk's rows as
 * binary COPY bytes (field 0 the key's text, field 1 the row's), `final` on the last piece,
 * `incremental` on the pieces of a signalled snapshot.
 */
export type Records =
  | { changes: ChangeRow[] }
  | { rows: SnapshotRow[]; schemaVersion: number; final?: SnapshotRow; incremental?: boolean }
  | { rowBytes: CopyRows; schemaVersion: number; final: boolean; incremental?: boolean }
  /** A change page as binary COPY fields (contracts/changeFrames.ts `pageFields`); JSON format only. */
  | { changeBytes: CopyRows; count: number; schemaVersion: number };

const empty = Buffer.alloc(0);

type Origin = { key: string; txid: string | null; changeId: number | string | null };

/**
 * The one way a producer's batch reaches Kafka, for stream pages and snapshot rows alike: messages built
 * around the rows' exact JSON text, encoded in the table's format, size-checked, with the producer's dead
 * letters, counted for telemetry. One send is in flight at a time: the next page or piece is read from
 * PostgreSQL while Kafka acknowledges the current one, and `flush` waits for it before any checkpoint
 * (or `detach` hands its acknowledgement to a stream page's checkpoint, publishStep.ts).
 */
export class BatchPublisher {
  private inFlight: Promise<void> | undefined;

  constructor(
    private readonly id: string,
    private readonly table: TableConfig,
    private readonly ref: TableRef,
    private readonly encoder: TableEncoder,
    private readonly log: Logger,
  ) {}

  /**
   * Sends a batch after the previous one was acknowledged (order per key is kept), without waiting for its
   * own acknowledgement; returns its messages' bytes.
   */
  async publishBatch(publication: Publication, batch: Records, tally: Tally): Promise<number> {
    const messages = this.messages(batch, tally);
    let bytes = 0;
    for (const m of messages) bytes += m.value?.length ?? 0;
    await this.flush();
    if (messages.length === 0) return bytes;
    const sending = publication.send(messages);
    sending.catch(() => {}); // seen by the next flush
    this.inFlight = sending;
    return bytes;
  }

  /** The batch's messages (envelopes and the producer's dead letters), counted in `tally`. */
  messages(batch: Records, tally: Tally): WireMessage[] {
    return 'changes' in batch ? this.changeMessages(batch.changes, tally)
      : 'changeBytes' in batch ? this.changeByteMessages(batch.changeBytes, batch.count, batch.schemaVersion, tally)
      : 'rowBytes' in batch ? this.byteMessages(batch.rowBytes, batch.schemaVersion, batch.final, batch.incremental === true, tally)
      : this.rowMessages(batch.rows, batch.schemaVersion, batch.final, batch.incremental === true, tally);
  }

  /** Waits until Kafka acknowledged everything sent so far; its failure is the caller's. */
  async flush(): Promise<void> {
    const sending = this.inFlight;
    this.inFlight = undefined;
    await sending;
  }

  /** The acknowledgement of what was sent so far, no longer this publisher's to wait for; its failure is the caller's. */
  detach(): Promise<void> {
    const sending = this.inFlight ?? Promise.resolve();
    this.inFlight = undefined;
    return sending;
  }

  /** Drops what is in flight (the publication is being aborted). */
  async settle(): Promise<void> {
    await this.flush().catch(() => {});
  }

  /** Telemetry once the batch is durable: captured changes by op, and produced records. */
  counted(tally: Tally, pageSize?: number): void {
    if (tally.changes > 0) telemetry.captured(this.id, tally.ops);
    if (Object.keys(tally.filtered).length > 0) telemetry.filtered(this.id, tally.filtered);
    if (tally.changes + tally.rows > 0) telemetry.produced(this.id, tally.changes + tally.rows, pageSize);
  }

  private changeMessages(changes: ChangeRow[], tally: Tally): WireMessage[] {
    const now = Date.now();
    const out: WireMessage[] = [];
    for (const change of changes) {
      let op = opOf(change.action);
      if (change.filteredOut && (op === 'c' || op === 'u')) {
        // on purpose, never a dead letter: an insert the filter excludes is dropped; an update is a delete
        // of its key, so the target never keeps a row that moved out of the filter
        tally.filtered[op] = (tally.filtered[op] ?? 0) + 1;
        if (op === 'c') continue;
        op = 'd';
      }
      tally.changes++;
      tally.ops[op ?? 'bad'] = (tally.ops[op ?? 'bad'] ?? 0) + 1;
      if (op) {
        if (change.transactionBegin) out.push(transactionEventMessage(transactionTopic(this.ref.topicPrefix), change.txid, Math.round(change.capturedMs)));
        out.push(...this.encoded(changeToMessages(this.ref, change, op, now), change));
        if (change.transactionEnd) out.push(transactionEventMessage(transactionTopic(this.ref.topicPrefix), change.txid, Math.round(change.capturedMs), change.transactionEnd));
        continue;
      }
      tally.bad++;
      // A row written by hand with an unknown action is kept as a dead letter, never dropped.
      this.log.warn({ table: this.id, changeId: change.changeId, action: change.action }, 'bad action sent to the dead-letter topic');
      out.push(this.letter(change, `{"action":${JSON.stringify(change.action)},"row":${change.row},"source":${this.sourceJson(change)}}`, {
        errorClass: 'bad-action',
        message: `action ${JSON.stringify(change.action)} is not INSERT, UPDATE, DELETE or TRUNCATE`,
      }));
    }
    return out;
  }

  /**
   * A change page that stays bytes: each envelope framed around the row's bytes (changeFrames.ts), each key
   * the key's bytes, a delete's tombstone after it. A row the frame does not take (a truncate, an unknown
   * action, one too large for Kafka) goes the object path, in its place, to its envelope or dead letter.
   */
  private changeByteMessages(rows: CopyRows, count: number, schemaVersion: number, tally: Tally): WireMessage[] {
    if (this.encoder.format !== 'json') throw new Error(`change bytes reached a ${this.encoder.format} table`);
    const frames = changeFrames(this.ref, Date.now());
    if (!frames) return this.changeMessages(Array.from({ length: count }, (_, i) => ChangeReader.changeAt(rows, i, schemaVersion)), tally);
    const page = { data: rows.data, spans: rows.spans, fields: rows.fields, count };
    const { values, starts, ends, ops } = frameChanges(page, frames, schemaVersion, maxMessageBytes - 64 * 1024);
    const { topic } = this.table;
    const out: WireMessage[] = [];
    for (let i = 0; i < count; i++) {
      const op = ops[i];
      if (!op) {
        for (const m of this.changeMessages([ChangeReader.changeAt(rows, i, schemaVersion)], tally)) out.push(m);
        continue;
      }
      const keySlot = (i * rows.fields + pageFields.key) * 2;
      const keyBytes = rows.data.subarray(rows.spans[keySlot]!, rows.spans[keySlot + 1]!);
      out.push({ topic, key: undefined, keyBytes, value: values.subarray(starts[i]!, ends[i]!) });
      if (op === 'd') out.push({ topic, key: undefined, keyBytes, value: undefined });
      tally.changes++;
      tally.ops[op] = (tally.ops[op] ?? 0) + 1;
    }
    return out;
  }

  private rowMessages(rows: SnapshotRow[], schemaVersion: number, final: SnapshotRow | undefined, incremental: boolean, tally: Tally): WireMessage[] {
    const now = Date.now();
    const out: WireMessage[] = [];
    for (const row of rows) {
      const messages = this.encoded([snapshotRowToMessage(this.ref, row, schemaVersion, now, row === final, incremental)], { key: row.key, txid: null, changeId: null });
      for (const m of messages) out.push(m);
    }
    tally.rows += rows.length;
    return out;
  }

  /**
   * Snapshot rows that stay bytes: each value is the frame's prefix + the row's bytes + a suffix, each key the
   * key's bytes, no string or parse per row (JSON Schema: behind its 5-byte header; Avro: `avroMessages`).
   * A row too large for Kafka takes the object path (its dead letter).
   */
  private byteMessages(rows: CopyRows, schemaVersion: number, final: boolean, incremental: boolean, tally: Tally): WireMessage[] {
    const now = Date.now();
    tally.rows += rows.count;
    if (this.encoder.format === 'avro') return this.avroMessages(rows, schemaVersion, now, final, incremental);
    const headers = this.encoder.format === 'json-schema' ? this.encoder.headers() : undefined;
    const json = snapshotFrame(this.ref, schemaVersion, now, incremental);
    const frame = headers ? { ...json, prefix: Buffer.concat([headers.value, json.prefix]) } : json;
    const { values, ends } = frameRows({ data: rows.data, spans: rows.spans, stride: 4, offset: 2, count: rows.count }, frame, final);
    const keys = headers ? frameRows({ data: rows.data, spans: rows.spans, stride: 4, offset: 0, count: rows.count }, { prefix: headers.key, suffix: empty, lastSuffix: empty }, false) : undefined;
    const limit = maxMessageBytes - 64 * 1024;
    const { topic } = this.table;
    const out: WireMessage[] = [];
    for (let i = 0, start = 0; i < rows.count; start = ends[i++]!) {
      const end = ends[i]!;
      if (end - start <= limit) {
        const keyText = rows.data.subarray(rows.spans[i * 4]!, rows.spans[i * 4 + 1]!);
        const value = values.subarray(start, end);
        out.push(keys ? { topic, key: undefined, keyBytes: keys.values.subarray(i === 0 ? 0 : keys.ends[i - 1]!, keys.ends[i]!), partitionKey: keyText, value } : { topic, key: undefined, keyBytes: keyText, value });
        continue;
      }
      out.push(...this.rowMessage(rows, i, schemaVersion, now, final, incremental));
    }
    return out;
  }

  /** Row i of a piece by the object path: to its encoding or its dead letter. */
  private rowMessage(rows: CopyRows, i: number, schemaVersion: number, now: number, final: boolean, incremental: boolean): WireMessage[] {
    const row = { key: fieldText(rows, i, 0)!, row: fieldText(rows, i, 1)! };
    return this.encoded([snapshotRowToMessage(this.ref, row, schemaVersion, now, final && i === rows.count - 1, incremental)], { key: row.key, txid: null, changeId: null });
  }

  /**
   * Avro records written from the rows' bytes (contracts/avroRows.ts) into one buffer per piece, each value
   * the encoder's envelope around the row record; a row the writer does not take, or too large for Kafka,
   * goes the object path in its place.
   */
  private avroMessages(rows: CopyRows, schemaVersion: number, now: number, final: boolean, incremental: boolean): WireMessage[] {
    const parts = (last: boolean) => snapshotRowToMessage(this.ref, { row: '{}', key: '{}' }, schemaVersion, now, last, incremental).parts!;
    const frame = this.encoder.avroSnapshotFrame(parts(false));
    const lastFrame = final && frame ? this.encoder.avroSnapshotFrame(parts(true)) : frame;
    const { data, spans, count } = rows;
    const avro = this.avroOut;
    avro.length = 0;
    const at = frame && lastFrame ? writeSnapshotRows(data, spans, count, frame, lastFrame, maxMessageBytes - 64 * 1024, avro) : new Int32Array(count * 3).fill(-1);
    const bytes = Buffer.allocUnsafe(avro.length);
    avro.buf.copy(bytes, 0, 0, avro.length);
    const { topic } = this.table;
    const out: WireMessage[] = [];
    for (let i = 0; i < count; i++) {
      if (at[i * 3]! < 0) {
        out.push(...this.rowMessage(rows, i, schemaVersion, now, final, incremental));
        continue;
      }
      const keyBytes = bytes.subarray(at[i * 3]!, at[i * 3 + 1]!);
      out.push({ topic, key: undefined, keyBytes, partitionKey: data.subarray(spans[i * 4]!, spans[i * 4 + 1]!), value: bytes.subarray(at[i * 3 + 1]!, at[i * 3 + 2]!) });
    }
    return out;
  }

  /** Where a piece's Avro records are written before their one exact-size copy: kept across pieces. */
  private readonly avroOut = new AvroOut();

  private sourceJson(change: { txid: string | null; changeId: number | string | null }): string {
    return JSON.stringify({ db: this.ref.db, schema: this.ref.schema, table: this.ref.name, txid: change.txid, changeId: change.changeId === null ? null : String(change.changeId) });
  }

  /** A dead letter written by the producer: the change never reached the table topic. */
  private letter(change: Origin, value: string, letter: DeadLetter): WireMessage {
    telemetry.deadLettered({ time: new Date().toISOString(), table: this.id, errorClass: letter.errorClass, key: change.key, message: letter.message });
    return deadLetterMessage({
      record: { topic: this.table.topic, partition: -1, offset: -1n, key: change.key, value },
      letter,
      original: { topic: changeTableId(this.table), partition: -1, offset: String(change.changeId ?? -1) },
    });
  }

  /**
   * The messages in the table's format (after the size check on their JSON text); a value the format
   * cannot carry (a numeric NaN in a decimal column) is a dead letter naming the column, never a wrong value.
   */
  private encoded(messages: OutMessage[], change: Origin): WireMessage[] {
    const fitted = this.fitted(messages, change);
    if (this.encoder.format === 'json') return fitted;
    try {
      return fitted.map((m) => (m.topic === this.table.topic ? this.encoder.encode(m as OutMessage) : m));
    } catch (err) {
      if (!(err instanceof UnencodableError)) throw err;
      this.log.warn({ table: this.id, key: change.key }, `change not encodable as ${this.encoder.format}, sent to the dead-letter topic: ${err.message}`);
      return [this.letter(change, messages[0]!.value!, { errorClass: 'unencodable', message: `not encodable as ${this.encoder.format}: ${err.message}` })];
    }
  }

  /**
   * A row larger than a Kafka record may be becomes a dead letter with its key and size (the row stays in
   * the source; `pgtunnel verify --repair` re-sends it once the topic takes it), instead of a publish
   * that fails forever.
   */
  private fitted(messages: OutMessage[], change: Origin): WireMessage[] {
    const limit = maxMessageBytes - 64 * 1024;
    const big = messages.find((m) => m.value !== undefined && m.value.length * 3 > limit && Buffer.byteLength(m.value) > limit);
    if (!big) return messages;
    const bytes = Buffer.byteLength(big.value!);
    this.log.warn({ table: this.id, key: change.key, bytes }, 'row too large for Kafka sent to the dead-letter topic');
    return [this.letter(change, `{"key":${change.key},"bytes":${bytes},"source":${this.sourceJson(change)}}`, {
      errorClass: 'too-large',
      message: `the change of key ${change.key} is ${bytes} bytes, more than a Kafka record may hold (${limit})`,
    })];
  }
}
