import type pg from 'pg';
import type { TunnelConfig } from '../config/load.js';
import type { ChangeReader } from '../capture/changeReader.js';
import { chunkTransaction, type SnapshotReader } from '../capture/snapshotReader.js';
import { fieldText } from '../capture/copyRows.js';
import type { Position } from '../capture/position.js';
import type { CaptureState } from '../capture/stateStore.js';
import type { Logger } from '../instruments/log.js';
import { telemetry } from '../instruments/telemetry.js';
import type { Records } from './batchPublisher.js';
import type { ChangePages } from './changePages.js';
import type { PublishStep } from './publishStep.js';
import { ChunkRead, type ChunkStart } from './chunkRead.js';

/** The bytes of messages one piece of a chunk aims at; at most three pieces are held (read, built, in flight). */
const pieceBytes = 4 * 1024 * 1024;
const firstPieceRows = 2000;

/** One piece of a chunk as read: its rows' count, the last key, and the records it publishes as. */
interface Piece {
  count: number;
  lastKey: string | null;
  /** `final`: the initial snapshot's last piece; `incremental`: a piece of a signalled snapshot. */
  records(final: boolean, incremental: boolean): Records;
}

/**
 * Which path a table's snapshot rows take: COPY bytes framed into envelopes (JSON; JSON Schema behind its
 * header; Avro written from the rows' bytes), or row objects where the read needs typed parameters (a row
 * filter). Masked columns are hashed in SQL, so they take either.
 */
export function snapshotPath(format: string, reader: SnapshotReader): { bytes: boolean; why: string } {
  if (!reader.bytesPath) return { bytes: false, why: 'the row filter is read with typed parameters' };
  const how: Record<string, string> = { json: 'JSON envelopes framed around the rows\' bytes', 'json-schema': 'JSON envelopes framed around the rows\' bytes behind the wire format header', avro: 'Avro records written from the rows\' bytes' };
  return { bytes: true, why: how[format] ?? `${format} from the rows' bytes` };
}

/** What a chunk's reading found, for the state after it. */
export interface Chunk {
  cur: string;
  /** Counted in the chunk's snapshot when not known yet. */
  total: number | null;
  lastKey: string | null;
  done: boolean;
  /**
   * A signalled snapshot's chunk: its rows say `snapshot: "incremental"` (as Debezium's do) and none is
   * `"last"`; the initial snapshot marks its last row `"last"`.
   */
  incremental: boolean;
}

/**
 * The snapshot, DBLog's idea in batch terms: in one REPEATABLE READ transaction with snapshot s, publish
 * the stream batch up to s, then a key chunk read in s. Each chunk row thus follows every change it
 * contains. The chunk is read in pieces of about `pieceBytes` (all in s, so still one chunk of s), each
 * published while the next is read; the publish step checkpoints once Kafka acknowledged all of them.
 */
export class SnapshotSource {
  private lastProgressLog = 0;
  private started: { at: number; rows: number } | undefined;
  private pieceRows = firstPieceRows;
  private pathLogged = false;
  /** The next chunk, read on the reads connection while the current one is acknowledged and checkpointed. */
  private ahead: (ChunkRead & { chunk: Chunk }) | undefined;

  constructor(
    private readonly id: string,
    private readonly config: TunnelConfig,
    private readonly pages: ChangePages,
    private readonly changes: ChangeReader,
    private readonly reader: SnapshotReader,
    private readonly publishStep: PublishStep,
    private readonly log: Logger,
    private readonly onPhase: (phase: CaptureState['phase']) => void,
    private readonly path: { bytes: boolean; why: string } = { bytes: false, why: 'row objects asked for' },
  ) {
    this.begin = chunkTransaction([reader.table, changes.changeTable]);
  }

  /** How each chunk's transaction begins (an incremental snapshot's too: the same tables). */
  readonly begin: string;

  /** A piece of the chunk after `lastKey`, read as the table's path reads it (`reader`: the initial or an incremental snapshot's). */
  private async readPiece(client: pg.Client, reader: SnapshotReader, lastKey: string | null, size: number): Promise<Piece> {
    if (this.path.bytes && reader.bytesPath) {
      const rows = await reader.readChunkBytes(client, lastKey, size);
      const schemaVersion = this.changes.schemaVersion;
      return { count: rows.count, lastKey: rows.count > 0 ? fieldText(rows, rows.count - 1, 0) : null, records: (final, incremental) => ({ rowBytes: rows, schemaVersion, final, incremental }) };
    }
    const rows = await reader.readChunk(client, lastKey, size);
    const schemaVersion = this.changes.schemaVersion;
    return { count: rows.length, lastKey: rows.at(-1)?.key ?? null, records: (final, incremental) => ({ rows, schemaVersion, final: final ? rows.at(-1) : undefined, incremental }) };
  }

  /**
   * One chunk with the stream batch before it, published and checkpointed; returns the state after it.
   * With `reads` (a connection beside the session) and one-statement checkpoints, the chunk is read in a
   * transaction of its own there and the next chunk is read while this one is acknowledged and its
   * checkpoint commits on the session; otherwise the chunk is read and checkpointed in one transaction.
   */
  async step(client: pg.Client, state: CaptureState, stored: CaptureState, reads?: pg.Client): Promise<CaptureState> {
    const read = reads && this.publishStep.queuesCheckpoints ? await this.chunkRead(reads, state) : undefined;
    const chunk: Chunk = read?.chunk ?? { cur: '', total: state.snapshotRowsTotal, lastKey: state.snapshotLastKey, done: false, incremental: false };
    const after = (): CaptureState => ({
      phase: chunk.done ? 'streaming' : 'snapshot',
      position: { prev: chunk.cur, cur: null, lastChangeId: 0 },
      snapshotLastKey: chunk.lastKey,
      snapshotRowsDone: state.snapshotRowsDone,
      snapshotRowsTotal: chunk.total,
      changesPublished: state.changesPublished,
      deadLettered: state.deadLettered,
    });
    let next: CaptureState;
    if (read) {
      try {
        ({ after: next } = await this.publishStep.publish(client, { records: this.readAhead(read), after }, stored));
      } catch (err) {
        await read.discard();
        await this.dropAhead();
        throw err;
      }
    } else {
      const records = this.records(client, state.position, chunk, this.reader);
      ({ after: next } = await this.publishStep.publish(client, { records, after, begin: this.begin }, stored));
    }
    // the last chunk's checkpoint is durable before the phase says streaming (status, and whoever waits on it)
    if (next.phase === 'streaming') await this.publishStep.drained();
    telemetry.snapshot(this.id, next.snapshotRowsDone, next.snapshotRowsTotal);
    this.reportProgress(next);
    return next;
  }

  /**
   * Read in the step's transaction: the stream batch up to its snapshot, then a chunk of `reader` in pieces
   * (the initial snapshot's reader, or an incremental snapshot's: incrementalSnapshot.ts).
   */
  async *records(client: pg.Client, position: Position, chunk: Chunk, reader: SnapshotReader): AsyncGenerator<Records, void, number> {
    const { rows } = await client.query<{ cur: string }>('SELECT pg_current_snapshot()::text AS cur');
    chunk.cur = rows[0]!.cur;
    chunk.total ??= await reader.countRows(client);
    if (position.prev !== null) {
      for await (const records of this.pages.upTo(client, position, chunk.cur)) yield records;
    }
    if (!this.pathLogged) {
      this.pathLogged = true;
      this.log.info({ table: this.id, path: this.path.bytes ? 'bytes' : 'objects' }, `snapshot rows read as ${this.path.bytes ? 'COPY bytes' : 'row objects'}: ${this.path.why}`);
    }
    let read = 0;
    // the next piece is asked for as soon as the previous one arrived: PostgreSQL reads it while
    // this process turns the previous one into messages and Kafka acknowledges the one before
    let want = Math.min(this.pieceRows, this.config.snapshotChunkSize);
    let reading: Promise<Piece> | undefined = this.readPiece(client, reader, chunk.lastKey, want);
    while (reading) {
      const piece = await reading;
      const asked = want;
      reading = undefined;
      chunk.done = piece.count < asked;
      if (piece.count > 0) chunk.lastKey = piece.lastKey;
      read += piece.count;
      const left = this.config.snapshotChunkSize - read;
      if (!chunk.done && left > 0) {
        want = Math.min(this.pieceRows, left);
        reading = this.readPiece(client, reader, chunk.lastKey, want);
        reading.catch(() => {}); // awaited above on the next turn
      }
      const bytes = yield piece.records(chunk.done && !chunk.incremental, chunk.incremental);
      if (piece.count > 0) this.pieceRows = Math.max(100, Math.min(50_000, Math.round((pieceBytes * piece.count) / Math.max(bytes, 1))));
    }
  }

  /** The chunk read ahead when it continues from `state`, else a new read (a stale one is given up). */
  private async chunkRead(reads: pg.Client, state: CaptureState): Promise<ChunkRead & { chunk: Chunk }> {
    const start = { prev: state.position.prev, lastKey: state.snapshotLastKey };
    const ahead = this.ahead;
    this.ahead = undefined;
    if (ahead?.follows(reads, start)) return ahead;
    await ahead?.discard();
    return this.startRead(reads, start, state.snapshotRowsTotal);
  }

  private startRead(reads: pg.Client, start: ChunkStart, total: number | null): ChunkRead & { chunk: Chunk } {
    const chunk: Chunk = { cur: '', total, lastKey: start.lastKey, done: false, incremental: false };
    const position = { prev: start.prev, cur: null, lastChangeId: 0 };
    return Object.assign(new ChunkRead(reads, start, this.begin, this.records(reads, position, chunk, this.reader)), { chunk });
  }

  /** The chunk's parts; once they are read (its transaction committed), the next chunk's read starts. */
  private async *readAhead(read: ChunkRead & { chunk: Chunk }): AsyncGenerator<Records, void, number> {
    yield* read.records();
    const { chunk } = read;
    if (!chunk.done) this.ahead = this.startRead(read.reads, { prev: chunk.cur, lastKey: chunk.lastKey }, chunk.total);
  }

  /** The read-ahead given up (the step failed: the leadership resumes from the stored checkpoint). */
  async dropAhead(): Promise<void> {
    const ahead = this.ahead;
    this.ahead = undefined;
    await ahead?.discard();
  }

  private reportProgress(state: CaptureState): void {
    const now = Date.now();
    const { id, log } = this;
    if (state.phase === 'streaming') {
      log.info({ table: id, rows: state.snapshotRowsDone }, 'snapshot published; phase streaming');
      this.onPhase('streaming');
    } else if (now - this.lastProgressLog >= 1000) {
      this.lastProgressLog = now;
      this.started ??= { at: now, rows: state.snapshotRowsDone };
      const seconds = (now - this.started.at) / 1000;
      const rate = seconds > 0 ? Math.round((state.snapshotRowsDone - this.started.rows) / seconds) : 0;
      const left = (state.snapshotRowsTotal ?? state.snapshotRowsDone) - state.snapshotRowsDone;
      const etaSeconds = rate > 0 ? Math.round(left / rate) : null;
      const pct = state.snapshotRowsTotal ? Math.min(100, Math.round((100 * state.snapshotRowsDone) / state.snapshotRowsTotal)) : null;
      log.info({ table: id, done: state.snapshotRowsDone, total: state.snapshotRowsTotal, rowsPerSecond: rate, etaSeconds }, `snapshot progress${pct === null ? '' : ` ${pct}%`}`);
    }
  }
}
