import type pg from 'pg';
import type { TableConfig, TunnelConfig } from '../config/load.js';
import { classify, describeError, type TunnelError } from '../errors.js';
import { connect, qualified } from '../pg.js';
import type { TableShape } from '../capture/catalog.js';
import type { CapturedColumns } from '../capture/changeReader.js';
import type { ShapeColumn } from '../capture/logicalSchema.js';
import { columnKinds, declaredKinds } from '../contracts/columnKinds.js';
import type { CaptureState } from '../capture/stateStore.js';
import type { TableRef } from '../contracts/envelope.js';
import type { SchemaRegistryClient, TableEncoder } from '../contracts/codec.js';
import type { EnvelopeProducer } from '../transport/kafka.js';
import type { Logger } from '../instruments/log.js';
import type { Health } from '../instruments/health.js';
import { telemetry } from '../instruments/telemetry.js';
import { producerApplicationName } from '../names.js';
import { Backoff } from '../retry.js';
import { BatchPublisher } from './batchPublisher.js';
import { producerParts } from './producerParts.js';
import { waitToRetry } from './producerRetry.js';
import { becomeLeader, type LockHolder } from './producerLock.js';
import { ExactlyOnce, adoptable, type PositionRecord } from './publisher.js';
import type { PublishStep } from './publishStep.js';

/** What a table's producer is made of (both kinds take the same). */
export type ProducerArgs = [
  config: TunnelConfig,
  table: TableConfig,
  shape: TableShape,
  producer: EnvelopeProducer,
  log: Logger,
  health: Health,
  onPhase?: (phase: CaptureState['phase']) => void,
  registry?: SchemaRegistryClient,
];

/**
 * What every table's producer shares, whatever captures its changes (triggers or logical decoding): its
 * parts, the retry loop around one leadership, the producer lock, and exactly-once's opening. A subclass
 * says what one leadership does (`lead`).
 */
export abstract class TableProducer {
  protected readonly id: string;
  /** Its name in health. */
  protected readonly part: string;
  protected readonly ref: TableRef;
  protected readonly masked: Set<string>;
  protected readonly encoder: TableEncoder;
  protected readonly batches: BatchPublisher;
  protected abstract readonly publishStep: PublishStep;

  protected readonly config: TunnelConfig;
  protected readonly table: TableConfig;
  protected readonly shape: TableShape;
  protected readonly producer: EnvelopeProducer;
  protected readonly log: Logger;
  protected readonly health: Health;
  protected readonly onPhase: (phase: CaptureState['phase']) => void;
  /** Another capture of the table takes over from here (a switch of capture mode): `run` returns. */
  handedOver = false;

  /** `transactions`: envelopes carry transaction blocks. */
  constructor([config, table, shape, producer, log, health, onPhase, registry]: ProducerArgs, transactions: boolean) {
    [this.config, this.table, this.shape, this.producer, this.log, this.health] = [config, table, shape, producer, log, health];
    this.onPhase = onPhase ?? (() => {});
    ({ id: this.id, part: this.part, ref: this.ref, masked: this.masked, encoder: this.encoder } = producerParts(config, table, shape, health, registry, transactions));
    this.batches = new BatchPublisher(this.id, table, this.ref, this.encoder, log);
  }

  /** Leads while it holds the table's lock; a retryable failure is waited out and the leadership taken again. */
  async run(signal: AbortSignal): Promise<void> {
    const backoff = new Backoff();
    while (!signal.aborted && !this.handedOver) {
      let client: pg.Client | undefined;
      try {
        if (!(await this.ready(signal))) return;
        client = await connect(this.config.sourceUrl, 'source', producerApplicationName(this.id));
        if (!(await this.becomeLeader(client, signal))) return;
        await this.lead(client, signal, () => {
          this.health.set(this.part, 'ok');
          backoff.reset();
        });
      } catch (err) {
        const e = this.failure(err);
        if (e === undefined) return;
        if (!e.retryable) throw e;
        await waitToRetry(e, backoff, { id: this.id, name: this.part, health: this.health, log: this.log }, signal);
      } finally {
        await this.batches.settle();
        await this.publishStep.close();
        await this.release();
        await client?.end().catch(() => {});
      }
    }
  }

  /** One leadership: publishes until aborted or failed; `progressed` after each unit of work. */
  protected abstract lead(client: pg.Client, signal: AbortSignal, progressed: () => void): Promise<void>;

  /** What a failure means: the error to retry or throw, or undefined when only this table stops. */
  protected failure(err: unknown): TunnelError | undefined {
    const e = classify(err);
    if (e.code !== 'PGT_REGISTRY_INCOMPATIBLE') return e;
    // only this table stops: its schema change waits for the fix, the other tables go on
    this.health.set(this.part, 'degraded', `publishing stopped: ${describeError(e)}`);
    this.log.error({ table: this.id, code: e.code }, `producer of ${this.id} stopped: ${describeError(e)}`);
    return undefined;
  }

  /**
   * Schemas follow the captured columns (a DDL's new version, trigger or logical capture alike): derived
   * from the catalog, or from the types a relation message `declared`, and registered when they change.
   */
  protected async useSchemas(client: pg.Client, captured: CapturedColumns, declared?: ShapeColumn[]): Promise<void> {
    if (this.encoder.format === 'json' || this.encoder.describes(captured.schemaVersion, captured.columns)) return;
    const table = qualified(this.table.schema, this.table.name);
    const columns = declared ? await declaredKinds(client, table, declared, this.masked) : await columnKinds(client, table, captured.columns, this.masked);
    await this.encoder.use(captured.schemaVersion, columns, await columnKinds(client, table, this.ref.key));
    this.log.info({ table: this.id, format: this.encoder.format, schemaVersion: captured.schemaVersion }, 'schemas registered');
  }

  /** Waits for what must lead before this table's lock is taken (a shared slot's source lock: one lock order); false when stopped first. */
  protected async ready(_signal: AbortSignal): Promise<boolean> {
    return true;
  }

  /** Closes what one leadership opened. */
  protected async release(): Promise<void> {}

  /**
   * Exactly-once: this leader's transactional publisher fences its predecessor; returns the newest
   * position record Kafka committed for the table (read after fencing, so none is in flight).
   */
  protected async openExactlyOnce(): Promise<PositionRecord | undefined> {
    const publisher = await ExactlyOnce.open(this.config, this.id, this.table.topic, this.producer);
    this.publishStep.use(publisher);
    return publisher.lastCommitted();
  }

  /** A page Kafka committed whose source checkpoint a crash prevented is adopted, not published again. */
  protected async adopt(client: pg.Client, record: PositionRecord | undefined, stored: CaptureState): Promise<CaptureState | undefined> {
    const adopted = adoptable(record, stored);
    if (!adopted) return undefined;
    await this.publishStep.checkpoint(client, adopted);
    this.log.info({ table: this.id, checkpoint: adopted.position.prev, phase: adopted.phase }, 'adopted the position Kafka committed last: the source checkpoint after it was never written');
    return adopted;
  }

  /** Only the holder of the table's lock publishes; a standby warms its broker connection while it waits. */
  private async becomeLeader(client: pg.Client, signal: AbortSignal): Promise<boolean> {
    const standbyAt = Date.now();
    let waited = false;
    let squatter: number | undefined;
    const leading = await becomeLeader(client, this.id, signal, async (holder) => {
      if (!waited) {
        this.log.info({ table: this.id }, 'producer standing by: another instance publishes this table');
        telemetry.leadership(this.id, 'standby');
        await this.producer.partitions(this.table.topic).catch(() => {});
      }
      waited = true;
      if (holder === undefined || holder.pgtunnel) {
        this.health.set(this.part, 'standby', `another instance holds the producer lock of this table${holder ? ` (pid ${holder.pid}${holder.clientAddr ? ` from ${holder.clientAddr}` : ''})` : ''}`);
        squatter = undefined;
        return;
      }
      // not ready: nothing publishes this table while that session holds the lock
      const reason = squatterReason(holder);
      this.health.set(this.part, 'waiting', reason);
      if (squatter !== holder.pid) this.log.warn({ table: this.id, holder }, reason);
      squatter = holder.pid;
    });
    if (leading && waited) this.log.info({ table: this.id, standbyMs: Date.now() - standbyAt }, 'producer taking over: the previous leader\'s session ended');
    if (leading) telemetry.leadership(this.id, 'leading');
    return leading;
  }
}

/** Why a standby waits on a lock no pgtunnel producer holds, naming the session and the fix. */
function squatterReason(holder: LockHolder): string {
  const who = [`pid ${holder.pid}`, `application_name ${JSON.stringify(holder.applicationName ?? '')}`, `client ${holder.clientAddr ?? 'local or hidden'}`, `user ${holder.user ?? 'hidden'}`].join(', ');
  return `the producer lock of this table is held by a session that is not a pgtunnel producer (${who}), so nothing publishes it: end that session (SELECT pg_terminate_backend(${holder.pid})) or find who runs it`;
}
