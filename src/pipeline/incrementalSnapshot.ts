import type pg from 'pg';
import type { TableConfig, TunnelConfig } from '../config/load.js';
import type { CapturedColumns } from '../capture/changeReader.js';
import { SnapshotReader } from '../capture/snapshotReader.js';
import { checkPredicate, failSignal, nextSignal, recordProgress, startSignal, type Signal } from '../capture/signals.js';
import type { CaptureState } from '../capture/stateStore.js';
import { classify, describeError, sqlState } from '../errors.js';
import { qualified } from '../pg.js';
import type { Logger } from '../instruments/log.js';
import { telemetry } from '../instruments/telemetry.js';
import type { PublishStep } from './publishStep.js';
import type { Chunk, SnapshotSource } from './snapshotSource.js';

/** How often a producer with no incremental snapshot running looks for a signal. */
const signalCheckMs = 2000;

/**
 * An incremental snapshot of one table (or of the rows a predicate selects) on a running tunnel, asked for
 * by a signal (capture/signals.ts), read in key chunks interleaved with the stream, resumable after a crash.
 *
 * The chunk window. Debezium's incremental snapshot (DBLog's watermarks) reads a chunk between a low and a
 * high watermark of the stream and drops the chunk's rows whose key a streamed change inside that window
 * touched, since the streamed change is newer. Here each chunk is read in one REPEATABLE READ transaction
 * whose snapshot s also bounds the stream batch published just before it (SnapshotSource.records): the
 * window is empty by construction. In a key's partition the chunk row follows every change it contains and
 * precedes every change it does not, so no row has to be dropped, no change is lost or reordered, and no
 * lock is taken beyond what the chunk's read takes. The progress (last key, rows) is stored in the chunk's
 * checkpoint transaction: after kill -9 the next leader resumes at the next chunk.
 */
export class IncrementalSnapshot {
  private job: { signal: Signal; reader: SnapshotReader } | undefined;
  private captured: CapturedColumns | undefined;
  private checkedAt = 0;
  private loggedAt = 0;

  constructor(
    private readonly id: string,
    private readonly config: TunnelConfig,
    private readonly table: TableConfig,
    private readonly masked: ReadonlySet<string>,
    private readonly snapshotSource: SnapshotSource,
    private readonly publishStep: PublishStep,
    private readonly log: Logger,
  ) {}

  /** The captured columns, which the chunk reads as the initial snapshot does. */
  use(captured: CapturedColumns): void {
    this.captured = captured;
    this.job?.reader.use(captured);
  }

  /** Whether a chunk is due: one runs, or a signal was found (looked for every `signalCheckMs`). */
  async due(client: pg.Client): Promise<boolean> {
    if (this.job) return true;
    if (Date.now() - this.checkedAt < signalCheckMs) return false;
    this.checkedAt = Date.now();
    const signal = await nextSignal(client, this.id);
    if (!signal) return false;
    const reader = new SnapshotReader(this.table.schema, this.table.name, this.masked, this.config.maskSalt, this.table.filter, signal.predicate);
    if (this.captured) reader.use(this.captured);
    if (signal.predicate !== null && !(await this.predicateHolds(client, signal))) return false;
    if (signal.state === 'pending') {
      // counted outside any chunk's snapshot: a figure for progress, not a bound
      const total = await reader.countRows(client);
      if (!(await startSignal(client, signal.signalId, total))) return false;
      Object.assign(signal, { state: 'running', rowsTotal: total });
    }
    this.log.info({ table: this.id, signalId: signal.signalId, where: signal.predicate, rows: signal.rowsTotal, done: signal.rowsDone }, `incremental snapshot ${signal.rowsDone > 0 || signal.lastKey !== null ? 'resumed' : 'started'}`);
    this.job = { signal, reader };
    telemetry.backfill(this.id, signal.signalId, signal.rowsDone, signal.rowsTotal, 'running');
    return true;
  }

  /** One chunk, with the stream batch before it, published and checkpointed with the snapshot's progress. */
  async step(client: pg.Client, state: CaptureState, stored: CaptureState): Promise<CaptureState> {
    const { signal, reader } = this.job!;
    const chunk: Chunk = { cur: '', total: signal.rowsTotal ?? 0, lastKey: signal.lastKey, done: false, incremental: true };
    let running = true;
    // the rows count in snapshotRowsDone too (status: captured + snapshot rows = applied + …)
    const rowsAfter = (after: CaptureState) => signal.rowsDone + after.snapshotRowsDone - state.snapshotRowsDone;
    try {
      const { after: next } = await this.publishStep.publish(client, {
        records: this.snapshotSource.records(client, state.position, chunk, reader),
        after: () => ({ ...state, position: { prev: chunk.cur, cur: null, lastChangeId: 0 } }),
        begin: this.snapshotSource.begin,
        store: async (c, after) => {
          running = await recordProgress(c, signal.signalId, chunk.lastKey, rowsAfter(after), chunk.done);
        },
      }, stored);
      Object.assign(signal, { rowsDone: rowsAfter(next), lastKey: chunk.lastKey });
      this.progressed(signal, running ? (chunk.done ? 'done' : 'running') : 'cancelled');
      return next;
    } catch (err) {
      // a data error of the operator's predicate (a division by zero in some row): that snapshot fails, not the producer
      if (signal.predicate === null || !sqlState(err)?.startsWith('22')) throw err;
      const message = `its predicate failed on a row: ${describeError(classify(err))}`;
      await failSignal(client, signal.signalId, message);
      this.progressed(signal, 'failed', message);
      return state;
    }
  }

  private async predicateHolds(client: pg.Client, signal: Signal): Promise<boolean> {
    try {
      await checkPredicate(client, qualified(this.table.schema, this.table.name), signal.predicate!);
      return true;
    } catch (err) {
      const e = classify(err);
      if (e.errorClass !== 'config') throw err;
      await failSignal(client, signal.signalId, describeError(e));
      this.progressed(signal, 'failed', describeError(e));
      return false;
    }
  }

  private progressed(signal: Signal, state: Signal['state'], message?: string): void {
    telemetry.backfill(this.id, signal.signalId, signal.rowsDone, signal.rowsTotal, state);
    const fields = { table: this.id, signalId: signal.signalId, done: signal.rowsDone, total: signal.rowsTotal };
    if (state === 'running') {
      if (Date.now() - this.loggedAt < 1000) return;
      this.loggedAt = Date.now();
      this.log.info(fields, 'incremental snapshot progress');
      return;
    }
    this.job = undefined;
    if (state === 'failed') this.log.error(fields, `incremental snapshot of ${this.id} failed: ${message}`);
    else this.log.info(fields, `incremental snapshot ${state}`);
  }
}
