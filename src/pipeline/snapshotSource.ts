import type pg from 'pg';
import type { SnapshotReader, SnapshotRow } from '../capture/snapshotReader.js';
import { saveState, type CaptureState } from '../capture/stateStore.js';
import { telemetry } from '../instruments/telemetry.js';
import { inTransaction } from '../pg.js';
import { emptyTally } from './batchPublisher.js';
import { failpoint } from './failpoints.js';
import type { SourceContext, StreamSource } from './streamSource.js';

/** The bytes of messages one piece of a chunk aims at; at most three pieces are held (read, built, in flight). */
const pieceBytes = 4 * 1024 * 1024;
const firstPieceRows = 2000;

/**
 * The snapshot, DBLog's idea in batch terms: in one REPEATABLE READ transaction with snapshot s, publish
 * the stream batch up to s, then a key chunk read in s. Each chunk row thus follows every change it
 * contains. The chunk is read in pieces of about `pieceBytes` (all in s, so still one chunk of s), each
 * published while the next is read; the checkpoint is written once Kafka acknowledged all of them.
 */
export class SnapshotSource {
  private lastProgressLog = 0;
  private started: { at: number; rows: number } | undefined;
  private pieceRows = firstPieceRows;

  constructor(
    private readonly ctx: SourceContext,
    private readonly stream: StreamSource,
    private readonly reader: SnapshotReader,
    private readonly onPhase: (phase: CaptureState['phase']) => void,
  ) {}

  /** One chunk with the stream batch before it, published and checkpointed; returns the state after it. */
  async step(client: pg.Client, state: CaptureState, stored: CaptureState): Promise<CaptureState> {
    const { id, batches, changes, config } = this.ctx;
    const tally = emptyTally();
    const next = await inTransaction(
      client,
      () => this.ctx.published(async (publication) => {
        const { rows } = await client.query<{ cur: string }>('SELECT pg_current_snapshot()::text AS cur');
        const cur = rows[0]!.cur;
        const total = state.snapshotRowsTotal ?? (await this.reader.countRows(client));
        if (state.position.prev !== null) await this.stream.drain(client, publication, state.position, cur, tally);
        let lastKey = state.snapshotLastKey;
        let done = false;
        // the next piece is asked for as soon as the previous one arrived: PostgreSQL reads it while
        // this process turns the previous one into messages and Kafka acknowledges the one before
        let want = Math.min(this.pieceRows, config.snapshotChunkSize);
        let reading: Promise<SnapshotRow[]> | undefined = this.reader.readChunk(client, lastKey, want);
        while (reading) {
          const piece = await reading;
          const asked = want;
          reading = undefined;
          done = piece.length < asked;
          if (piece.length > 0) lastKey = piece.at(-1)!.key;
          const left = config.snapshotChunkSize - tally.rows - piece.length;
          if (!done && left > 0) {
            want = Math.min(this.pieceRows, left);
            reading = this.reader.readChunk(client, lastKey, want);
            reading.catch(() => {}); // awaited above on the next turn
          }
          const bytes = await batches.publishBatch(publication, { rows: piece, schemaVersion: changes.schemaVersion, final: done ? piece.at(-1) : undefined }, tally);
          if (piece.length > 0) this.pieceRows = Math.max(100, Math.min(50_000, Math.round((pieceBytes * piece.length) / Math.max(bytes, 1))));
        }
        await batches.flush();
        const after: CaptureState = {
          phase: done ? 'streaming' : 'snapshot',
          position: { prev: cur, cur: null, lastChangeId: 0 },
          snapshotLastKey: lastKey,
          snapshotRowsDone: state.snapshotRowsDone + tally.rows,
          snapshotRowsTotal: total,
          changesPublished: state.changesPublished + tally.changes - tally.bad,
          deadLettered: state.deadLettered + tally.bad,
        };
        await publication.commit(stored, after);
        failpoint('producer.after-publish');
        after.updatedAt = await saveState(client, id, after);
        await changes.cleanup(client, cur);
        return after;
      }),
      'BEGIN ISOLATION LEVEL REPEATABLE READ',
    );
    telemetry.checkpoint(id);
    telemetry.snapshot(id, next.snapshotRowsDone, next.snapshotRowsTotal);
    batches.counted(tally);
    this.reportProgress(next);
    return next;
  }

  private reportProgress(state: CaptureState): void {
    const now = Date.now();
    const { id, log } = this.ctx;
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
