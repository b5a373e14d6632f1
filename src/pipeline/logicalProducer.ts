import type pg from 'pg';
import type { TableConfig, TunnelConfig } from '../config/load.js';
import { TunnelError, classify, sqlState } from '../errors.js';
import { connect, qualified } from '../pg.js';
import type { TableShape } from '../capture/catalog.js';
import { LogicalRows, logicalColumns } from '../capture/logicalRows.js';
import { ReplicationStream, replicationClient } from '../capture/replicationStream.js';
import { SnapshotReader } from '../capture/snapshotReader.js';
import { loadState, type CaptureState } from '../capture/stateStore.js';
import type { TableRef } from '../contracts/envelope.js';
import { TableEncoder, type SchemaRegistryClient } from '../contracts/codec.js';
import { columnKinds } from '../contracts/columnKinds.js';
import type { EnvelopeProducer } from '../transport/kafka.js';
import type { Logger } from '../instruments/log.js';
import type { Health } from '../instruments/health.js';
import { telemetry } from '../instruments/telemetry.js';
import { producerApplicationName, publicationName, slotName } from '../names.js';
import { Backoff } from '../retry.js';
import { BatchPublisher } from './batchPublisher.js';
import { producerParts } from './producerParts.js';
import { waitToRetry } from './producerRetry.js';
import { LogicalSnapshot } from './logicalSnapshot.js';
import { LogicalStream } from './logicalStream.js';
import { becomeLeader } from './producerLock.js';
import { atLeastOnce } from './publisher.js';
import { PublishStep } from './publishStep.js';

/** SQLSTATEs of a slot that is gone (42704) or can no longer give its changes (55000: invalidated, WAL removed). */
const slotLost = new Set(['42704', '55000']);

/**
 * Publishes one table captured by logical decoding: the snapshot under the slot's exported snapshot,
 * then pgoutput from the slot. Same envelope, topics and publish step as trigger capture; the position is
 * the slot's confirmed flush LSN, moved only after Kafka acknowledged. Only the holder of the table's
 * producer lock publishes; other instances stand by.
 */
export class LogicalProducer {
  private readonly id: string;
  private readonly part: string;
  private readonly ref: TableRef;
  private readonly encoder: TableEncoder;
  private readonly masked: Set<string>;
  private readonly batches: BatchPublisher;
  private readonly reader: SnapshotReader;
  private readonly rows: LogicalRows;
  /** The table's replication slot, named once the source connection says which database it is. */
  private slot = '';

  constructor(
    private readonly config: TunnelConfig,
    private readonly table: TableConfig,
    private readonly shape: TableShape,
    private readonly producer: EnvelopeProducer,
    private readonly log: Logger,
    private readonly health: Health,
    private readonly onPhase: (phase: CaptureState['phase']) => void = () => {},
    registry?: SchemaRegistryClient,
  ) {
    ({ id: this.id, part: this.part, ref: this.ref, masked: this.masked, encoder: this.encoder } = producerParts(config, table, shape, health, registry));
    this.batches = new BatchPublisher(this.id, table, this.ref, this.encoder, log);
    this.reader = new SnapshotReader(table.schema, table.name, this.masked, config.maskSalt);
    this.rows = new LogicalRows(table.schema, table.name, shape.key, new Set(table.exclude), this.masked, config.maskSalt);
  }

  async run(signal: AbortSignal): Promise<void> {
    const backoff = new Backoff();
    while (!signal.aborted) {
      let client: pg.Client | undefined;
      let stream: ReplicationStream | undefined;
      try {
        client = await connect(this.config.sourceUrl, 'source', producerApplicationName(this.id));
        this.slot = slotName(this.table, client.database ?? '');
        const leading = await becomeLeader(client, this.id, signal, async () => this.health.set(this.part, 'standby', 'another instance holds the producer lock of this table'));
        if (!leading) return;
        telemetry.leadership(this.id, 'leading');
        let state = await loadState(client, this.id);
        await this.useColumns(client);
        this.onPhase(state.phase);
        const publication = await atLeastOnce(this.producer).begin();
        this.log.info({ table: this.id, capture: 'logical', slot: this.slot, phase: state.phase }, 'producer started');
        if (state.phase === 'snapshot') {
          this.health.set(this.part, 'ok');
          const step = new PublishStep(this.id, this.batches, undefined, this.producer);
          state = await new LogicalSnapshot(this.config, this.table, this.reader, step, this.log).run(client, state, signal);
          if (state.phase !== 'streaming') continue;
          this.onPhase('streaming');
        }
        const repl = await replicationClient(this.config.sourceUrl, producerApplicationName(this.id));
        // 0/0: the server starts after the slot's confirmed flush LSN, the last position Kafka acknowledged
        stream = await ReplicationStream.start(repl, this.slot, publicationName(this.table), 0n);
        await new LogicalStream(this.config, this.table, this.rows, this.batches, publication, this.log).run(client, stream, signal, () => {
          this.health.set(this.part, 'ok');
          backoff.reset();
        });
      } catch (err) {
        const e = classify(err);
        if (slotLost.has(sqlState(err) ?? '')) throw this.slotLost(e.message, err);
        if (!e.retryable) throw e;
        await waitToRetry(e, backoff, { id: this.id, name: this.part, health: this.health, log: this.log }, signal);
      } finally {
        await this.batches.settle();
        await stream?.close();
        await client?.end().catch(() => {});
      }
    }
  }

  /** The captured columns for the snapshot reader and, with a registry, the table's schemas. */
  private async useColumns(client: pg.Client): Promise<void> {
    const captured = await logicalColumns(client, this.table.schema, this.table.name, this.shape.key, this.table.exclude);
    this.reader.use(captured);
    if (this.encoder.format === 'json' || this.encoder.describes(captured.schemaVersion, captured.columns)) return;
    const table = qualified(this.table.schema, this.table.name);
    await this.encoder.use(captured.schemaVersion, await columnKinds(client, table, captured.columns, this.masked), await columnKinds(client, table, this.ref.key));
  }

  private slotLost(message: string, cause: unknown): TunnelError {
    return new TunnelError('PGT_SLOT_LOST', `the replication slot ${this.slot} of ${this.id} cannot give its changes (${message}): changes since its last position may be gone`, {
      errorClass: 'fatal',
      hint: 'run `pgtunnel install` (re-creates the slot) then `pgtunnel snapshot --restart`, or switch this source to capture: trigger',
      cause,
    });
  }
}
