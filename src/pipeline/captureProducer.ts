import type pg from 'pg';
import { TunnelError, classify } from '../errors.js';
import { checkCapture, repairHint, uncapturedColumns } from '../capture/catalog.js';
import { ChangeReader } from '../capture/changeReader.js';
import { setSharedBoundary, sharedSwitchOf, switchBoundary, type SharedSwitch } from '../capture/captureSwitch.js';
import { uninstallCapture } from '../capture/install.js';
import { waitForCommit } from '../capture/commitWait.js';
import { changeTableId, producerApplicationName } from '../names.js';
import { connect } from '../pg.js';
import { SnapshotReader } from '../capture/snapshotReader.js';
import { loadState, useAsyncCheckpoints, type CaptureState } from '../capture/stateStore.js';
import { sleep } from '../retry.js';
import { telemetry } from '../instruments/telemetry.js';
import { ChangePages } from './changePages.js';
import { ChangeVacuum } from './changeVacuum.js';
import { PublishStep } from './publishStep.js';
import { Heartbeat } from './heartbeat.js';
import { ProgressMarks } from './progressMarks.js';
import { IncrementalSnapshot } from './incrementalSnapshot.js';
import { SnapshotSource, snapshotPath } from './snapshotSource.js';
import { StreamSource } from './streamSource.js';
import { TableProducer, type ProducerArgs } from './tableProducer.js';
import type { SourceSlot } from './sourceSlot.js';

/** How often the producer checks that its triggers still exist. */
const captureCheckMs = 2000;
/** SQLSTATEs of a change table whose columns or types were changed by hand. */
const changeTableBroken = new Set(['42703', '42P01', '42804', '22P02', '23502']);

/**
 * Publishes one table's changes: the snapshot in key chunks interleaved with stream batches, then the
 * stream. Only the holder of the table's advisory lock publishes; other instances stand by.
 */
export class CaptureProducer extends TableProducer {
  private readonly changes: ChangeReader;
  private readonly snapshot: SnapshotReader;
  private state: CaptureState | undefined;
  /** The state last written to the source: a batch's position record names it as its start. */
  private stored: CaptureState | undefined;
  private uncaptured = '';
  protected readonly publishStep: PublishStep;
  private readonly stream: StreamSource;
  private readonly snapshotSource: SnapshotSource;
  private vacuum: ChangeVacuum | undefined;
  private readonly incremental: IncrementalSnapshot;
  private readonly heartbeat: Heartbeat;
  private readonly progress: ProgressMarks;
  /** The stream's page reads, on a connection of their own beside the lock holder's session (issue 21 item 6). */
  private reads: pg.Client | undefined;
  /** A switch to logical capture under way: the snapshot the last trigger batch ends at. */
  private switchAt: string | undefined;
  /** A switch onto the source's shared slot (captureSwitch.ts): the slot this process leads, and the boundary once set. */
  private sourceSlot: SourceSlot | undefined;
  private sharedSwitch: SharedSwitch | undefined;

  constructor(...args: ProducerArgs) {
    super(args, args[0].transactionMetadata);
    const [config, table, , producer, log] = args;
    this.changes = new ChangeReader(table, this.masked, config.maskSalt, config.transactionMetadata, this.encoder.format === 'json');
    this.snapshot = new SnapshotReader(table.schema, table.name, this.masked, config.maskSalt, table.filter);
    this.publishStep = new PublishStep(this.id, this.batches, this.changes, producer);
    const pages = new ChangePages(this.changes, config.batchSize, (client) => this.refreshColumns(client));
    this.stream = new StreamSource(this.id, pages, this.publishStep, log);
    this.snapshotSource = new SnapshotSource(this.id, config, pages, this.changes, this.snapshot, this.publishStep, log, this.onPhase, snapshotPath(this.encoder.format, this.snapshot));
    this.heartbeat = new Heartbeat(config, this.id, table.topic, producer);
    this.progress = new ProgressMarks(config, this.id, table.topic, producer);
    this.incremental = new IncrementalSnapshot(this.id, config, table, this.masked, this.snapshotSource, this.publishStep, log);
  }

  /** The table switches onto the source's shared slot: its boundary is set once this process leads that slot. */
  useSourceSlot(slot: SourceSlot): this {
    this.sourceSlot = slot;
    return this;
  }

  protected async ready(signal: AbortSignal): Promise<boolean> {
    return this.sourceSlot ? this.sourceSlot.ready(signal) : true;
  }

  protected async lead(client: pg.Client, signal: AbortSignal, progressed: () => void): Promise<void> {
    await useAsyncCheckpoints(client, this.config.exactlyOnce);
    this.state = this.stored = await loadState(client, this.id);
    if (this.config.exactlyOnce) this.state = this.stored = (await this.adopt(client, await this.openExactlyOnce(), this.stored)) ?? this.stored;
    await this.refreshColumns(client);
    // the produce path ready before the tunnel says it streams: the first change must not pay its round trips
    await this.producer.warm(this.table.topic);
    this.onPhase(this.state.phase);
    this.log.info({ table: this.id, phase: this.state.phase, checkpoint: this.state.position.prev, pages: this.changes.path.bytes ? 'bytes' : 'objects' }, `producer started; change pages read as ${this.changes.path.bytes ? 'COPY bytes' : 'row objects'}: ${this.changes.path.why}`);
    this.vacuum = new ChangeVacuum(this.config.sourceUrl, this.id, this.changes, this.log);
    this.reads = await connect(this.config.sourceUrl, 'source', producerApplicationName(this.id));
    this.switchAt = await switchBoundary(client, this.table);
    if (this.sourceSlot) {
      // the shared slot confirms nothing more for any table until the stream has this one: it must still give M
      this.sourceSlot.feed(this.id).hold = 0n;
      this.sharedSwitch = await sharedSwitchOf(client, this.table);
      this.switchAt = this.sharedSwitch?.boundary;
    }
    let checkedAt = 0;
    while (!signal.aborted) {
      if (this.sourceSlot && !this.sharedSwitch && this.state!.phase === 'streaming' && this.state!.position.cur === null) await this.pinShared(client);
      if (this.switchAt !== undefined && this.stored!.position.prev === this.switchAt && this.stored!.position.cur === null) return this.handOver(client);
      if (Date.now() - checkedAt > captureCheckMs) {
        await checkCapture(client, this.table);
        await this.refreshColumns(client);
        checkedAt = Date.now();
      }
      const readAt = Date.now();
      const busy = await this.step(client);
      this.vacuum.poke();
      progressed();
      if (busy) this.heartbeat.busy();
      else if (this.state!.position.cur === null) await this.heartbeat.idle(readAt);
      await this.progress.after(this.state!.position.cur === null ? this.state!.position.prev : null, busy);
      if (!busy) {
        await this.publishStep.drained();
        await this.idle(client, signal);
      }
    }
  }

  /**
   * The batch pinned at the slot's snapshot is published and checkpointed: everything committed before the
   * slot's consistent point is in Kafka, the slot has the rest. The triggers and the change table go (the
   * table's state stays) and logical capture takes over.
   */
  private async handOver(client: pg.Client): Promise<void> {
    // the boundary batch's checkpoint may still be queued on the session (issue 21 item 6): durable first
    await this.publishStep.drained();
    await this.vacuum?.close();
    this.vacuum = undefined;
    if (this.sharedSwitch) {
      // held at M until the table's Kafka passed it; the mark goes first (a crash before the triggers go redoes the switch)
      this.sourceSlot!.feed(this.id).hold = this.sharedSwitch.mark;
      await client.query('UPDATE pgtunnel.state SET shared_switch = NULL WHERE table_id = $1', [this.id]);
    }
    await uninstallCapture(client, this.table, { keepState: true });
    this.log.info({ table: this.id, boundary: this.switchAt }, 'switched to capture: logical: trigger capture published everything before the slot\'s snapshot; triggers and change table removed');
    this.handedOver = true;
  }

  /** Between batches, with every checkpoint durable: the boundary of the switch onto the shared slot pins the next batch. */
  private async pinShared(client: pg.Client): Promise<void> {
    await this.publishStep.drained();
    this.sharedSwitch = await setSharedBoundary(client, this.table);
    this.state = this.stored = await loadState(client, this.id);
    this.switchAt = this.sharedSwitch.boundary;
    this.log.info({ table: this.id, boundary: this.switchAt, mark: this.sharedSwitch.mark.toString() }, 'switch to capture: logical on the source slot: the last trigger batch ends at the boundary transaction');
  }

  protected async release(): Promise<void> {
    await this.progress.close();
    await this.vacuum?.close();
    this.vacuum = undefined;
    await this.snapshotSource.dropAhead(); // its transaction is on the reads connection
    await this.reads?.end().catch(() => {});
    this.reads = undefined;
  }

  /**
   * Which columns capture reads, and which source columns it cannot capture yet (DDL while no event
   * trigger could follow): those are named in the log and in status until `pgtunnel install` adopts them.
   */
  private async refreshColumns(client: pg.Client): Promise<void> {
    const captured = await this.changes.refresh(client, this.ref.key);
    this.snapshot.use(captured);
    this.incremental.use(captured);
    await this.useSchemas(client, captured);
    const missing = (await uncapturedColumns(client, this.table)).join(', ');
    if (missing !== this.uncaptured) {
      this.uncaptured = missing;
      if (missing) this.log.warn({ table: this.id, columns: missing }, `columns ${missing} of ${this.id} are not captured; run \`pgtunnel install\` to adopt them`);
    }
    this.health.set(`capture ${this.id}`, missing ? 'degraded' : 'ok', missing ? `columns not captured: ${missing} — run \`pgtunnel install\` to adopt them` : undefined);
  }

  /** One unit of work; true when more work is likely waiting. */
  private async step(client: pg.Client, afterDdl = false): Promise<boolean> {
    const state = this.state!;
    try {
      if (state.phase === 'snapshot' && state.position.cur === null) {
        this.state = this.stored = await this.snapshotSource.step(client, state, this.stored!, this.reads);
        return true;
      }
      // between complete batches, a chunk of an incremental snapshot asked for by a signal
      if (state.position.cur === null && (await this.incremental.due(client))) {
        this.state = this.stored = await this.incremental.step(client, state, this.stored!);
        return true;
      }
      const { next, busy } = await this.stream.step(client, state, this.stored!, this.reads);
      this.state = next;
      if (busy) this.stored = next;
      return busy;
    } catch (err) {
      const e = classify(err);
      if (!changeTableBroken.has(e.code)) throw err;
      if (!afterDdl) {
        // DDL on the source changed the change table's columns under the statement: read them again
        await this.refreshColumns(client);
        return this.step(client, true);
      }
      throw new TunnelError('PGT_CHANGE_TABLE', `reading the change table ${changeTableId(this.table)} failed (${e.message}): it no longer has the shape capture writes — edited by hand?`, {
        errorClass: 'fatal',
        hint: repairHint,
        cause: err,
      });
    }
  }

  /**
   * Idle: waits in the source until its snapshot moves past the one last read (commitWait.ts), until the
   * next capture check at the latest. Capture pays nothing for it (unlike a NOTIFY per transaction).
   */
  private async idle(client: pg.Client, signal: AbortSignal): Promise<void> {
    const position = this.state?.position;
    if (!position || position.prev === null || position.cur !== null || signal.aborted) return sleep(this.config.pollIntervalMs, signal);
    const at = performance.now();
    await waitForCommit(client, position.prev, this.config.pollIntervalMs, captureCheckMs, signal);
    telemetry.stages({ poll: performance.now() - at });
  }
}
