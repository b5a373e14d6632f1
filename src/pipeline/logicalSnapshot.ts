import type pg from 'pg';
import type { TunnelConfig } from '../config/load.js';
import { connect } from '../pg.js';
import { joinSlotName, producerApplicationName, slotName, tableId } from '../names.js';
import { createSlotWithSnapshot } from '../capture/slotSnapshot.js';
import type { SnapshotReader } from '../capture/snapshotReader.js';
import type { CaptureState } from '../capture/stateStore.js';
import type { TableConfig } from '../config/load.js';
import type { Logger } from '../instruments/log.js';
import { telemetry } from '../instruments/telemetry.js';
import type { TableFeed } from '../capture/slotFeed.js';
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
    /** The table is read from the source's shared slot: its snapshot joins it (below) instead of re-creating a slot. */
    private readonly shared?: { feed: TableFeed; slot: string },
  ) {}

  /** `schemaVersion`: the version of the columns the reader reads (logicalSchema.ts). */
  async run(client: pg.Client, state: CaptureState, signal: AbortSignal, schemaVersion: number): Promise<CaptureState> {
    const id = tableId(this.table);
    const fresh = state.snapshotLastKey === null && state.snapshotRowsDone === 0;
    const snap = await connect(this.config.sourceUrl, 'source', producerApplicationName(id));
    try {
      await snap.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
      if (this.shared) await this.holdSharedSlot(client, snap, fresh, this.shared);
      else if (fresh) await this.importSlotSnapshot(client, snap);
      if (!fresh) this.log.info({ table: id, rows: state.snapshotRowsDone }, 'snapshot resumed in a new snapshot; the stream replays from the slot');
      let next: CaptureState = { ...state, snapshotRowsTotal: state.snapshotRowsTotal ?? (await this.reader.countRows(snap)) };
      while (next.phase === 'snapshot' && !signal.aborted) {
        const rows = await this.reader.readChunk(snap, next.snapshotLastKey, this.config.snapshotChunkSize);
        const done = rows.length < this.config.snapshotChunkSize;
        // one chunk is one page of the publish step: its progress is stored only after Kafka's ack
        const before = next;
        const page: SourcePage = {
          records: onePart({ rows, schemaVersion, final: done ? rows.at(-1) : undefined }),
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

  /**
   * A table of the source's shared slot: a temporary slot's exported snapshot S, with consistent point C,
   * is what the table is read in (fresh), and the table's share of the stream takes transactions committing
   * at or after C. The shared slot is held first (it confirms nothing more for any table), then at C until
   * the table's Kafka has passed C, so the stream can still give every transaction from C (architecture.md).
   * A resumed snapshot holds at the C it stored and reads on in a new snapshot (the stream replays from C).
   */
  private async holdSharedSlot(client: pg.Client, snap: pg.Client, fresh: boolean, shared: { feed: TableFeed; slot: string }): Promise<void> {
    const id = tableId(this.table);
    const { rows } = await client.query<{ join: string | null }>("SELECT (join_lsn - '0/0')::text AS join FROM pgtunnel.state WHERE table_id = $1", [id]);
    if (!fresh && rows[0]?.join) {
      shared.feed.hold = BigInt(rows[0].join);
      return;
    }
    shared.feed.hold = 0n;
    const temporary = joinSlotName(shared.slot, this.table, process.pid);
    const consistentPoint = await createSlotWithSnapshot(this.config.sourceUrl, producerApplicationName(id), snap, temporary, true);
    await client.query('UPDATE pgtunnel.state SET join_lsn = $2::pg_lsn WHERE table_id = $1', [id, consistentPoint]);
    const { rows: lsn } = await client.query<{ n: string }>("SELECT ($1::pg_lsn - '0/0')::text AS n", [consistentPoint]);
    shared.feed.hold = BigInt(lsn[0]!.n);
    this.log.info({ table: id, slot: shared.slot, consistentPoint }, 'snapshot reads under a temporary slot\'s exported snapshot; the table joins the source slot at its consistent point');
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
