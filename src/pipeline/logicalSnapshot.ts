import type pg from 'pg';
import type { TunnelConfig } from '../config/load.js';
import { connect } from '../pg.js';
import { producerApplicationName, slotName, tableId } from '../names.js';
import { createSlotWithSnapshot } from '../capture/slotSnapshot.js';
import type { SnapshotReader } from '../capture/snapshotReader.js';
import type { CaptureState } from '../capture/stateStore.js';
import type { TableConfig } from '../config/load.js';
import type { Logger } from '../instruments/log.js';
import { telemetry } from '../instruments/telemetry.js';
import { onePart, type PublishStep, type SourcePage } from './publishStep.js';

/**
 * Logical capture's snapshot. A fresh one re-creates the slot with an exported snapshot and reads the
 * table in key chunks under it: every change before the slot's consistent point is in the rows, every
 * later one streams from the slot, so nothing is lost or sent twice. Each chunk's progress is saved
 * after Kafka acknowledged it; a resumed snapshot (the exported snapshot died with its connection) reads
 * on in a new snapshot and the stream then replays from the slot's consistent point, which full row
 * images make converge (a row may briefly show an older image on the target until the stream catches up).
 */
export class LogicalSnapshot {
  constructor(
    private readonly config: TunnelConfig,
    private readonly table: TableConfig,
    private readonly reader: SnapshotReader,
    private readonly step: PublishStep,
    private readonly log: Logger,
  ) {}

  async run(client: pg.Client, state: CaptureState, signal: AbortSignal): Promise<CaptureState> {
    const id = tableId(this.table);
    const fresh = state.snapshotLastKey === null && state.snapshotRowsDone === 0;
    const snap = await connect(this.config.sourceUrl, 'source', producerApplicationName(id));
    try {
      await snap.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
      if (fresh) await this.importSlotSnapshot(client, snap);
      else this.log.info({ table: id, rows: state.snapshotRowsDone }, 'snapshot resumed in a new snapshot; the stream replays from the slot');
      let next: CaptureState = { ...state, snapshotRowsTotal: state.snapshotRowsTotal ?? (await this.reader.countRows(snap)) };
      while (next.phase === 'snapshot' && !signal.aborted) {
        const rows = await this.reader.readChunk(snap, next.snapshotLastKey, this.config.snapshotChunkSize);
        const done = rows.length < this.config.snapshotChunkSize;
        // one chunk is one page of the publish step: its progress is stored only after Kafka's ack
        const before = next;
        const page: SourcePage = {
          records: onePart({ rows, schemaVersion: 1, final: done ? rows.at(-1) : undefined }),
          after: () => ({ ...before, phase: done ? 'streaming' : 'snapshot', snapshotLastKey: rows.at(-1)?.key ?? before.snapshotLastKey }),
        };
        next = (await this.step.publish(client, page, before)).after;
        telemetry.snapshot(id, next.snapshotRowsDone, next.snapshotRowsTotal);
      }
      await snap.query('COMMIT');
      if (next.phase === 'streaming') this.log.info({ table: id, rows: next.snapshotRowsDone }, 'snapshot published; phase streaming');
      return next;
    } finally {
      await snap.end().catch(() => {});
    }
  }

  /** Re-creates the slot with an exported snapshot and makes `snap`'s transaction read in it. */
  private async importSlotSnapshot(client: pg.Client, snap: pg.Client): Promise<void> {
    const slot = slotName(this.table, client.database ?? '');
    // nothing was published from the old slot since the snapshot began: the new snapshot holds all of it
    await client.query('SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1', [slot]);
    const consistentPoint = await createSlotWithSnapshot(this.config.sourceUrl, producerApplicationName(tableId(this.table)), snap, slot);
    this.log.info({ table: tableId(this.table), slot, consistentPoint }, 'slot created; snapshot reads under its exported snapshot');
  }
}
