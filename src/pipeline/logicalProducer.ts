import type pg from 'pg';
import { TunnelError, classify, sqlState } from '../errors.js';
import { LogicalRows, logicalColumns } from '../capture/logicalRows.js';
import { LogicalSchemas, catalogShape, relationShape } from '../capture/logicalSchema.js';
import type { Relation } from '../capture/pgoutput.js';
import { ReplicationStream, replicationClient, type MessageFeed } from '../capture/replicationStream.js';
import type { TableFeed } from '../capture/slotFeed.js';
import type { SourceSlot } from './sourceSlot.js';
import { dropSlotWhenReleased } from '../capture/logicalInstall.js';
import { leaveSharedWhenReleased } from '../capture/sharedSlot.js';
import { SlotMigration } from '../capture/slotMigration.js';
import { SnapshotReader } from '../capture/snapshotReader.js';
import { loadState, type CaptureState } from '../capture/stateStore.js';
import { producerApplicationName, publicationName, slotName } from '../names.js';
import { LogicalSnapshot } from './logicalSnapshot.js';
import { LogicalStream, type RelationSchemas } from './logicalStream.js';
import type { PositionRecord } from './publisher.js';
import { PublishStep } from './publishStep.js';
import { TableProducer, type ProducerArgs } from './tableProducer.js';

/** SQLSTATEs of a slot that is gone (42704) or can no longer give its changes (55000: invalidated, WAL removed). */
const slotLost = new Set(['42704', '55000']);

/**
 * Publishes one table captured by logical decoding: the snapshot under the slot's exported snapshot,
 * then pgoutput from the slot. Same envelope, topics and publish step as trigger capture; the position is
 * the slot's confirmed flush LSN, moved only after Kafka acknowledged (or committed, in exactly-once mode,
 * where the Kafka transaction's position record carries the LSN, so a crash between the commit and the
 * slot's acknowledgement resumes after what Kafka has).
 */
export class LogicalProducer extends TableProducer {
  protected readonly publishStep: PublishStep;
  private readonly reader: SnapshotReader;
  private readonly rows: LogicalRows;
  /** The table's replication slot, named once the source connection says which database it is. */
  private slot = '';
  private stream: ReplicationStream | undefined;
  /** The source's shared slot, when the table is read from it (issue 22) instead of a slot of its own. */
  private sourceSlot: SourceSlot | undefined;
  private feed: TableFeed | undefined;
  /** The table's schema versions, read again by each leadership (a predecessor may have numbered more). */
  private schemas = new LogicalSchemas('');

  constructor(...args: ProducerArgs) {
    super(args, false);
    const [config, table, shape, producer] = args;
    this.publishStep = new PublishStep(this.id, this.batches, undefined, producer);
    this.reader = new SnapshotReader(table.schema, table.name, this.masked, config.maskSalt);
    this.rows = new LogicalRows(shape.key, new Set(table.exclude), this.masked, config.maskSalt);
  }

  /** Reads the table from the source's shared slot. */
  useSourceSlot(slot: SourceSlot): this {
    this.sourceSlot = slot;
    return this;
  }

  protected async ready(signal: AbortSignal): Promise<boolean> {
    return this.sourceSlot ? this.sourceSlot.ready(signal) : true;
  }

  protected async lead(client: pg.Client, signal: AbortSignal, progressed: () => void): Promise<void> {
    // a table of the shared slot that still has a slot of its own reads that one until it moves over
    const migration = this.sourceSlot && new SlotMigration(client, this.table);
    const migrating = migration !== undefined && (await migration.pending());
    this.slot = migrating ? migration.ownSlot : this.sourceSlot?.name ?? slotName(this.table, client.database ?? '');
    this.feed = this.sourceSlot?.feed(this.id);
    // while it is off the shared slot, that slot confirms nothing more for any table (it must still give the move's position)
    if (migrating) this.feed!.hold = 0n;
    let state = await loadState(client, this.id);
    let record: PositionRecord | undefined;
    if (this.config.exactlyOnce) {
      record = await this.openExactlyOnce();
      // a snapshot chunk's record is adopted as in trigger mode; a stream page's checkpoint is the slot (resumeAt)
      if (record?.after.lsn === undefined) state = (await this.adopt(client, record, state)) ?? state;
    }
    this.schemas = new LogicalSchemas(this.id);
    this.onPhase(state.phase);
    this.log.info({ table: this.id, capture: 'logical', slot: this.slot, phase: state.phase, exactlyOnce: this.config.exactlyOnce }, 'producer started');
    if (state.phase === 'snapshot') {
      const version = await this.useColumns(client);
      progressed();
      state = await new LogicalSnapshot(this.config, this.table, this.reader, this.publishStep, this.log, !migrating && this.feed ? { feed: this.feed, slot: this.slot } : undefined).run(client, state, signal, version);
      if (state.phase !== 'streaming') return;
      this.onPhase('streaming');
    }
    state = await this.resumeAt(client, record, state);
    if (migrating && !(await this.moveToSourceSlot(client, migration, state, signal, progressed))) return;
    let feed: MessageFeed;
    if (this.feed) {
      state = await this.joinAt(client, state, this.feed);
      this.feed.subscribe();
      feed = this.feed;
    } else {
      const repl = await replicationClient(this.config.sourceUrl, producerApplicationName(this.id));
      // 0/0: the server starts after the slot's confirmed flush LSN, the last position Kafka acknowledged
      this.stream = await ReplicationStream.start(repl, this.slot, publicationName(this.table), BigInt(state.lsn ?? 0));
      feed = this.stream;
    }
    const ended = await new LogicalStream(this.config, this.table, this.rows, this.publishStep, this.log, this.relationSchemas(new Set(this.table.exclude))).run(client, feed, state, signal, progressed);
    if (ended === 'handed over') await this.handOver(client);
  }

  /**
   * Moves the table from its own slot onto the shared one (slotMigration.ts): its own slot's stream runs
   * until it confirmed the mark; the table then joins the shared stream at that confirmed position, the
   * shared slot held there until the table's Kafka passed it. False when the stream was stopped first.
   */
  private async moveToSourceSlot(client: pg.Client, migration: SlotMigration, state: CaptureState, signal: AbortSignal, progressed: () => void): Promise<boolean> {
    const mark = await migration.mark();
    let at = await migration.confirmed();
    if (at < mark) {
      const repl = await replicationClient(this.config.sourceUrl, producerApplicationName(this.id));
      this.stream = await ReplicationStream.start(repl, migration.ownSlot, publicationName(this.table), BigInt(state.lsn ?? 0));
      const own = new LogicalStream(this.config, this.table, this.rows, this.publishStep, this.log, this.relationSchemas(new Set(this.table.exclude))).endAt(mark);
      if ((await own.run(client, this.stream, state, signal, progressed)) !== 'reached') return false;
      at = await migration.confirmedAt(own.acknowledged!);
      await this.stream.close();
      this.stream = undefined;
    }
    await migration.finish(at);
    this.feed!.hold = at;
    this.slot = this.sourceSlot!.name;
    this.log.info({ table: this.id, from: migration.ownSlot, to: this.slot, joinLsn: at.toString() }, 'moved onto the source slot: its own slot confirmed the move\'s position, the shared stream gives every later commit; own slot and publication dropped');
    return true;
  }

  /**
   * A switch to trigger capture: everything before the boundary transaction is in Kafka and the slot confirmed
   * it; the triggers have every later write. The switch is marked done first (a crash after it drops the
   * slot as an abandoned one, or takes the table out of the shared publication), then the table's own slot and
   * publication go, or the table leaves the shared ones (the shared slot no longer waits for it), and trigger
   * capture takes over.
   */
  private async handOver(client: pg.Client): Promise<void> {
    await this.release();
    await client.query('UPDATE pgtunnel.state SET capture_switch = NULL WHERE table_id = $1', [this.id]);
    if (this.sourceSlot) {
      const last = this.sourceSlot.leave(this.id);
      await leaveSharedWhenReleased(client, this.table, this.config.topicPrefix, last);
    } else await dropSlotWhenReleased(client, this.table);
    this.log.info({ table: this.id, slot: this.slot }, `switched to capture: trigger: logical capture published everything before the boundary; ${this.sourceSlot ? 'the table left the source slot' : 'slot and publication dropped'}`);
    this.handedOver = true;
  }

  /**
   * Exactly-once: Kafka's newest position record past the slot's confirmed flush LSN is where the stream
   * resumes (the crash fell between the Kafka commit and the slot's acknowledgement); the stream is then
   * started there, which acknowledges it. Otherwise the slot's own position.
   */
  private async resumeAt(client: pg.Client, record: PositionRecord | undefined, state: CaptureState): Promise<CaptureState> {
    const after = record?.after;
    if (after?.lsn === undefined || after.phase !== 'streaming') return state;
    const { rows } = await client.query<{ confirmed: string | null }>("SELECT (confirmed_flush_lsn - '0/0')::text AS confirmed FROM pg_replication_slots WHERE slot_name = $1", [this.slot]);
    const confirmed = BigInt(rows[0]?.confirmed ?? 0);
    const lsn = BigInt(after.lsn);
    // a record inside a transaction resumes at the commit before it and skips what Kafka has of it
    if (lsn < confirmed || (lsn === confirmed && !after.lsnInTransaction)) return state;
    this.log.info({ table: this.id, lsn: after.lsn, slotConfirmed: confirmed.toString(), inTransaction: after.lsnInTransaction }, 'adopted the position Kafka committed last: the slot was not acknowledged after it');
    return { ...state, lsn: after.lsn, lsnInTransaction: after.lsnInTransaction };
  }

  /**
   * Where the table's share of the source's stream starts: after what Kafka has (this process's
   * acknowledgement, an exactly-once record) and never before its snapshot's consistent point (the
   * shared slot resends WAL other tables' positions still need).
   */
  private async joinAt(client: pg.Client, state: CaptureState, feed: TableFeed): Promise<CaptureState> {
    const { rows } = await client.query<{ join: string | null }>("SELECT (join_lsn - '0/0')::text AS join FROM pgtunnel.state WHERE table_id = $1", [this.id]);
    let from = BigInt(state.lsn ?? 0);
    for (const lsn of [BigInt(rows[0]?.join ?? 0), feed.acked ?? 0n]) if (lsn > from) from = lsn;
    // a position inside a transaction (exactly-once) stays the record's: its skip counts that transaction's messages
    if (from === BigInt(state.lsn ?? 0)) return state;
    return { ...state, lsn: from.toString(), lsnInTransaction: undefined };
  }

  protected failure(err: unknown): TunnelError | undefined {
    return slotLost.has(sqlState(err) ?? '') ? this.slotLost(classify(err).message, err) : super.failure(err);
  }

  protected async release(): Promise<void> {
    this.feed?.unsubscribe();
    await this.stream?.close();
    this.stream = undefined;
  }

  /** The snapshot's columns (the catalog's now, numbered as a schema version) for its reader and the table's schemas. */
  private async useColumns(client: pg.Client): Promise<number> {
    const version = await this.schemas.current(client, await catalogShape(client, this.table.schema, this.table.name, this.table.exclude));
    const captured = await logicalColumns(client, this.table.schema, this.table.name, this.shape.key, this.table.exclude, version);
    this.reader.use(captured);
    await this.useSchemas(client, captured);
    return version;
  }

  /** The stream's relation messages drive the same schema path as trigger capture's DDL: versions and registered schemas. */
  private relationSchemas(excluded: ReadonlySet<string>): RelationSchemas {
    return {
      versionAt: (client: pg.Client, relation: Relation, lsn: bigint) => this.schemas.versionAt(client, relationShape(relation, excluded), lsn),
      use: (client: pg.Client, relation: Relation, version: number) => {
        const declared = relationShape(relation, excluded);
        return this.useSchemas(client, { columns: declared.map((c) => c.name), key: this.shape.key, schemaVersion: version, json: new Set() }, declared);
      },
    };
  }

  private slotLost(message: string, cause: unknown): TunnelError {
    return new TunnelError('PGT_SLOT_LOST', `the replication slot ${this.slot} of ${this.id} cannot give its changes (${message}): changes since its last position may be gone`, {
      errorClass: 'fatal',
      hint: 'run `pgtunnel install` (re-creates the slot) then `pgtunnel snapshot --restart`, or switch this source to capture: trigger',
      cause,
    });
  }
}
