import type pg from 'pg';
import type { TableConfig, TunnelConfig } from '../config/load.js';
import { TunnelError, classify, describeError } from '../errors.js';
import { connect, inTransaction } from '../pg.js';
import { checkCapture, repairHint, uncapturedColumns, type TableShape } from '../capture/catalog.js';
import { ChangeReader } from '../capture/changeReader.js';
import { tableId } from '../capture/install.js';
import { advance, isBatchComplete, nextPageSize } from '../capture/position.js';
import { SnapshotReader } from '../capture/snapshotReader.js';
import { loadState, saveState, type CaptureState } from '../capture/stateStore.js';
import { changeToMessages, opOf, snapshotRowToMessage, type ChangeRow, type OutMessage, type TableRef, type WireMessage } from '../transport/envelope.js';
import { TableEncoder, UnencodableError, type SchemaRegistryClient } from '../contracts/codec.js';
import { columnKinds } from '../contracts/columnKinds.js';
import type { CapturedColumns } from '../capture/changeReader.js';
import { qualified } from '../pg.js';
import { maxMessageBytes, type EnvelopeProducer } from '../transport/kafka.js';
import { deadLetterMessage, type DeadLetter } from '../validate/deadLetters.js';
import type { Logger } from '../observe/log.js';
import type { Health } from '../observe/health.js';
import { failpoint } from './failpoints.js';
import { telemetry } from '../observe/telemetry.js';
import { Backoff, sleep } from './retry.js';
import { ChangeVacuum } from './changeVacuum.js';
import { becomeLeader } from './producerLock.js';
import { ExactlyOnce, adoptable, atLeastOnce, type Publication, type Publisher } from './publisher.js';

function countOps(changes: ChangeRow[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const c of changes) {
    const op = opOf(c.action) ?? 'bad';
    out[op] = (out[op] ?? 0) + 1;
  }
  return out;
}

/** How often the producer checks that its triggers still exist. */
const captureCheckMs = 2000;
/** The longest idle wait in one query: the producer's own duties (capture check, shutdown) come between. */
const idleWaitMs = 250;
/** SQLSTATEs of a change table whose columns or types were changed by hand. */
const changeTableBroken = new Set(['42703', '42P01', '42804', '22P02', '23502']);

/**
 * Publishes one table's changes: the snapshot in key chunks interleaved with stream batches, then the
 * stream. Only the holder of the table's advisory lock publishes; other instances stand by.
 */
export class CaptureProducer {
  private readonly id: string;
  private readonly ref: TableRef;
  private readonly changes: ChangeReader;
  private readonly snapshot: SnapshotReader;
  private state: CaptureState | undefined;
  /** The state last written to the source: a batch's position record names it as its start. */
  private stored: CaptureState | undefined;
  private publisher: Publisher;
  private readonly part: string;
  private lastProgressLog = 0;
  private pageSize = 0;
  private snapshotStarted: { at: number; rows: number } | undefined;
  private uncaptured = '';
  private readonly encoder: TableEncoder;
  private readonly masked: Set<string>;

  constructor(
    private readonly config: TunnelConfig,
    private readonly table: TableConfig,
    shape: TableShape,
    private readonly producer: EnvelopeProducer,
    private readonly log: Logger,
    private readonly health: Health,
    private readonly onPhase: (phase: CaptureState['phase']) => void = () => {},
    registry?: SchemaRegistryClient,
  ) {
    this.id = tableId(table);
    this.part = `producer ${this.id}`;
    this.health.set(this.part, 'starting');
    const db = new URL(config.sourceUrl).pathname.slice(1);
    this.ref = { db, schema: table.schema, name: table.name, key: shape.key, topic: table.topic, topicPrefix: config.topicPrefix };
    const masked = new Set(Object.keys(table.mask));
    this.masked = masked;
    this.encoder = new TableEncoder(table.format ?? config.format, table.topic, registry);
    this.changes = new ChangeReader(table, masked, config.maskSalt);
    this.snapshot = new SnapshotReader(table.schema, table.name, masked, config.maskSalt);
    this.publisher = atLeastOnce(producer);
  }

  async run(signal: AbortSignal): Promise<void> {
    const backoff = new Backoff();
    while (!signal.aborted) {
      let client: pg.Client | undefined;
      let vacuum: ChangeVacuum | undefined;
      try {
        client = await connect(this.config.sourceUrl, 'source', `pgtunnel producer ${this.id}`);
        if (!(await this.becomeLeader(client, signal))) return;
        this.state = this.stored = await loadState(client, this.id);
        if (this.config.exactlyOnce) await this.openExactlyOnce(client);
        await this.refreshColumns(client);
        this.onPhase(this.state.phase);
        this.log.info({ table: this.id, phase: this.state.phase, checkpoint: this.state.position.prev }, 'producer started');
        vacuum = new ChangeVacuum(this.config.sourceUrl, this.id, this.changes, this.log);
        let checkedAt = 0;
        while (!signal.aborted) {
          if (Date.now() - checkedAt > captureCheckMs) {
            await checkCapture(client, this.table);
            await this.refreshColumns(client);
            checkedAt = Date.now();
          }
          const busy = await this.step(client);
          vacuum.poke();
          this.health.set(this.part, 'ok');
          backoff.reset();
          if (!busy) await this.idle(client, signal);
        }
      } catch (err) {
        const e = classify(err);
        if (e.code === 'PGT_REGISTRY_INCOMPATIBLE') {
          // only this table stops: its schema change waits for the fix, the other tables go on
          this.health.set(this.part, 'degraded', `publishing stopped: ${describeError(e)}`);
          this.log.error({ table: this.id, code: e.code }, `producer of ${this.id} stopped: ${describeError(e)}`);
          return;
        }
        if (!e.retryable) throw e;
        const wait = backoff.next();
        telemetry.retried('producer', e.errorClass);
        this.health.set(this.part, 'waiting', describeError(e));
        this.log.warn({ table: this.id, code: e.code, retryInMs: wait }, `producer waiting: ${describeError(e)}`);
        await sleep(wait, signal);
      } finally {
        await this.publisher.close();
        this.publisher = atLeastOnce(this.producer);
        await vacuum?.close();
        await client?.end().catch(() => {});
      }
    }
  }

  /** Only the holder of the table's lock publishes; a standby warms its broker connection while it waits. */
  private async becomeLeader(client: pg.Client, signal: AbortSignal): Promise<boolean> {
    const standbyAt = Date.now();
    let waited = false;
    const leading = await becomeLeader(client, this.id, signal, async () => {
      waited = true;
      this.log.info({ table: this.id }, 'producer standing by: another instance publishes this table');
      this.health.set(this.part, 'standby', 'another instance holds the producer lock of this table');
      await this.producer.partitions(this.table.topic).catch(() => {});
    });
    if (leading && waited) this.log.info({ table: this.id, standbyMs: Date.now() - standbyAt }, 'producer taking over: the previous leader\'s session ended');
    return leading;
  }

  /**
   * Which columns capture reads, and which source columns it cannot capture yet (DDL while no event
   * trigger could follow): those are named in the log and in status until `pgtunnel install` adopts them.
   */
  private async refreshColumns(client: pg.Client): Promise<void> {
    const captured = await this.changes.refresh(client, this.ref.key);
    this.snapshot.use(captured);
    await this.useSchemas(client, captured);
    const missing = (await uncapturedColumns(client, this.table)).join(', ');
    if (missing !== this.uncaptured) {
      this.uncaptured = missing;
      if (missing) this.log.warn({ table: this.id, columns: missing }, `columns ${missing} of ${this.id} are not captured; run \`pgtunnel install\` to adopt them`);
    }
    this.health.set(`capture ${this.id}`, missing ? 'degraded' : 'ok', missing ? `columns not captured: ${missing} — run \`pgtunnel install\` to adopt them` : undefined);
  }

  /** Schemas follow the captured columns: derived from the catalog and registered when they change. */
  private async useSchemas(client: pg.Client, captured: CapturedColumns): Promise<void> {
    if (this.encoder.format === 'json' || this.encoder.describes(captured.schemaVersion, captured.columns)) return;
    const table = qualified(this.table.schema, this.table.name);
    const columns = await columnKinds(client, table, captured.columns, this.masked);
    await this.encoder.use(captured.schemaVersion, columns, await columnKinds(client, table, this.ref.key));
    this.log.info({ table: this.id, format: this.encoder.format, schemaVersion: captured.schemaVersion }, 'schemas registered');
  }

  /** One unit of work; true when more work is likely waiting. */
  private async step(client: pg.Client, afterDdl = false): Promise<boolean> {
    const state = this.state!;
    try {
      if (state.phase === 'snapshot' && state.position.cur === null) return await this.snapshotStep(client, state);
      return await this.streamStep(client, state);
    } catch (err) {
      const e = classify(err);
      if (!changeTableBroken.has(e.code)) throw err;
      if (!afterDdl) {
        // DDL on the source changed the change table's columns under the statement: read them again
        await this.refreshColumns(client);
        return this.step(client, true);
      }
      throw new TunnelError('PGT_CHANGE_TABLE', `reading the change table ${this.table.schema}.${this.table.changeTable} failed (${e.message}): it no longer has the shape capture writes — edited by hand?`, {
        errorClass: 'fatal',
        hint: repairHint,
        cause: err,
      });
    }
  }

  private async streamStep(client: pg.Client, state: CaptureState): Promise<boolean> {
    const size = nextPageSize(state.position, this.pageSize, this.config.batchSize);
    this.pageSize = size;
    const readAt = Date.now();
    let page = await this.changes.readPage(client, state.position, size);
    if (this.changes.isStale(page)) {
      // rows written after DDL on the source: read them with the columns capture has now
      await this.refreshColumns(client);
      page = await this.changes.readPage(client, state.position, size);
    }
    const readMs = Date.now() - readAt;
    const count = page.changes.length;
    const next: CaptureState = { ...state, position: advance(state.position, page.cur, count, page.changes.at(-1)?.changeId as number, size) };
    if (count === 0 && state.position.cur === null) {
      // An empty batch moves the position in memory only: nothing was published, nothing to clean.
      this.state = next;
      telemetry.checkpoint(this.id);
      return false;
    }
    const publishAt = Date.now();
    const bad = page.changes.filter((c) => opOf(c.action) === undefined).length;
    next.changesPublished += count - bad;
    next.deadLettered += bad;
    if (count > 0) {
      await this.published(async (publication) => {
        await publication.send(this.toMessages(page.changes));
        await publication.commit(this.stored!, next);
      });
      failpoint('producer.after-publish');
      telemetry.captured(this.id, countOps(page.changes));
      telemetry.produced(this.id, count, count);
    }
    const savedAt = Date.now();
    await inTransaction(client, async () => {
      next.updatedAt = await saveState(client, this.id, next);
      if (isBatchComplete(next.position)) await this.changes.cleanup(client, next.position.prev!);
    });
    this.state = this.stored = next;
    telemetry.checkpoint(this.id);
    // Stage timings of each page, for the latency hunt (bench/stall.ts reads them).
    if (count > 0 && this.log.isLevelEnabled('debug')) {
      const txids = page.changes.map((c) => Number(c.txid));
      this.log.debug({ table: this.id, count, txids: [Math.min(...txids), Math.max(...txids)], at: readAt, readMs, publishMs: savedAt - publishAt, saveMs: Date.now() - savedAt }, 'page published');
    }
    return true;
  }

  /**
   * DBLog's idea in batch terms: in one REPEATABLE READ transaction with snapshot s, publish the stream
   * batch up to s, then a key chunk read in s. Each chunk row thus follows every change it contains.
   */
  private async snapshotStep(client: pg.Client, state: CaptureState): Promise<boolean> {
    const next = await inTransaction(
      client,
      () => this.published(async (publication) => {
        const { rows } = await client.query<{ cur: string }>('SELECT pg_current_snapshot()::text AS cur');
        const cur = rows[0]!.cur;
        const total = state.snapshotRowsTotal ?? (await this.snapshot.countRows(client));
        let published = 0;
        let bad = 0;
        if (state.position.prev !== null) {
          let position = state.position;
          for (;;) {
            let page = await this.changes.readPage(client, position, this.config.batchSize, cur);
            if (this.changes.isStale(page)) {
              await this.refreshColumns(client);
              page = await this.changes.readPage(client, position, this.config.batchSize, cur);
            }
            if (page.changes.length > 0) await publication.send(this.toMessages(page.changes));
            published += page.changes.length;
            bad += page.changes.filter((c) => opOf(c.action) === undefined).length;
            position = advance(position, cur, page.changes.length, page.changes.at(-1)?.changeId as number, this.config.batchSize);
            if (isBatchComplete(position)) break;
          }
        }
        const chunk = await this.snapshot.readChunk(client, state.snapshotLastKey, this.config.snapshotChunkSize);
        const now = Date.now();
        const final = chunk.length < this.config.snapshotChunkSize ? chunk.at(-1) : undefined;
        await publication.send(chunk.flatMap((row) => this.encoded([snapshotRowToMessage(this.ref, row, this.changes.schemaVersion, now, row === final)], { key: row.key, txid: null, changeId: null })));
        const last = chunk.at(-1);
        const after: CaptureState = {
          phase: chunk.length < this.config.snapshotChunkSize ? 'streaming' : 'snapshot',
          position: { prev: cur, cur: null, lastChangeId: 0 },
          snapshotLastKey: last ? last.key : state.snapshotLastKey,
          snapshotRowsDone: state.snapshotRowsDone + chunk.length,
          snapshotRowsTotal: total,
          changesPublished: state.changesPublished + published - bad,
          deadLettered: state.deadLettered + bad,
        };
        await publication.commit(this.stored!, after);
        after.updatedAt = await saveState(client, this.id, after);
        await this.changes.cleanup(client, cur);
        return after;
      }),
      'BEGIN ISOLATION LEVEL REPEATABLE READ',
    );
    this.state = this.stored = next;
    telemetry.checkpoint(this.id);
    telemetry.snapshot(this.id, next.snapshotRowsDone, next.snapshotRowsTotal);
    telemetry.produced(this.id, next.snapshotRowsDone - state.snapshotRowsDone);
    this.reportProgress(next);
    return true;
  }

  /**
   * Idle: waits in the source until its snapshot moves past the one last read — the database compares
   * snapshots every pollIntervalMs, cheaply — so an idle producer sends one query per 250 ms, and a commit
   * still wakes it within a poll interval. Capture pays nothing for it (unlike a NOTIFY per transaction).
   */
  private async idle(client: pg.Client, signal: AbortSignal): Promise<void> {
    const position = this.state?.position;
    if (!position || position.prev === null || position.cur !== null || signal.aborted) return sleep(this.config.pollIntervalMs, signal);
    await client.query('SELECT pgtunnel.wait_for_commit($1, $2, $3)', [position.prev, this.config.pollIntervalMs, idleWaitMs]);
  }

  /** A batch's publication, aborted when anything before its source checkpoint fails. */
  private async published<T>(work: (publication: Publication) => Promise<T>): Promise<T> {
    const publication = await this.publisher.begin();
    try {
      return await work(publication);
    } catch (err) {
      await publication.abort();
      throw err;
    }
  }

  /**
   * Exactly-once: this leader's transactional publisher fences its predecessor, then a batch Kafka
   * committed whose source checkpoint the crash prevented is adopted (and its change rows cleaned), not
   * published again.
   */
  private async openExactlyOnce(client: pg.Client): Promise<void> {
    const publisher = await ExactlyOnce.open(this.config, this.id, this.table.topic, this.producer);
    this.publisher = publisher;
    const adopted = adoptable(await publisher.lastCommitted(), this.stored!);
    if (!adopted) return;
    await inTransaction(client, async () => {
      adopted.updatedAt = await saveState(client, this.id, adopted);
      if (isBatchComplete(adopted.position)) await this.changes.cleanup(client, adopted.position.prev!);
    });
    this.state = this.stored = adopted;
    this.log.info({ table: this.id, checkpoint: adopted.position.prev }, 'adopted the position Kafka committed last: the source checkpoint after it was never written');
  }

  private reportProgress(state: CaptureState): void {
    const now = Date.now();
    if (state.phase === 'streaming') {
      this.log.info({ table: this.id, rows: state.snapshotRowsDone }, 'snapshot published; phase streaming');
      this.onPhase('streaming');
    } else if (now - this.lastProgressLog >= 1000) {
      this.lastProgressLog = now;
      this.snapshotStarted ??= { at: now, rows: state.snapshotRowsDone };
      const seconds = (now - this.snapshotStarted.at) / 1000;
      const rate = seconds > 0 ? Math.round((state.snapshotRowsDone - this.snapshotStarted.rows) / seconds) : 0;
      const left = (state.snapshotRowsTotal ?? state.snapshotRowsDone) - state.snapshotRowsDone;
      const etaSeconds = rate > 0 ? Math.round(left / rate) : null;
      const pct = state.snapshotRowsTotal ? Math.min(100, Math.round((100 * state.snapshotRowsDone) / state.snapshotRowsTotal)) : null;
      this.log.info({ table: this.id, done: state.snapshotRowsDone, total: state.snapshotRowsTotal, rowsPerSecond: rate, etaSeconds }, `snapshot progress${pct === null ? '' : ` ${pct}%`}`);
    }
  }

  private toMessages(changes: ChangeRow[]): WireMessage[] {
    const now = Date.now();
    const out: WireMessage[] = [];
    for (const change of changes) {
      const op = opOf(change.action);
      if (op) {
        out.push(...this.encoded(changeToMessages(this.ref, change, op, now), change));
        continue;
      }
      // A row written by hand with an unknown action is kept as a dead letter, never dropped.
      this.log.warn({ table: this.id, changeId: change.changeId, action: change.action }, 'bad action sent to the dead-letter topic');
      out.push(this.letter(change, `{"action":${JSON.stringify(change.action)},"row":${change.row},"source":${this.sourceJson(change)}}`, {
        errorClass: 'bad-action',
        message: `action ${JSON.stringify(change.action)} is not INSERT, UPDATE, DELETE or TRUNCATE`,
      }));
    }
    return out;
  }

  private sourceJson(change: { txid: string | null; changeId: number | string | null }): string {
    return JSON.stringify({ db: this.ref.db, schema: this.ref.schema, table: this.ref.name, txid: change.txid, changeId: change.changeId === null ? null : String(change.changeId) });
  }

  /** A dead letter written by the producer: the change never reached the table topic. */
  private letter(change: { key: string; txid: string | null; changeId: number | string | null }, value: string, letter: DeadLetter): WireMessage {
    telemetry.deadLettered({ time: new Date().toISOString(), table: this.id, errorClass: letter.errorClass, key: change.key, message: letter.message });
    return deadLetterMessage({
      record: { topic: this.table.topic, partition: -1, offset: -1n, key: change.key, value },
      letter,
      original: { topic: `${this.table.schema}.${this.table.changeTable}`, partition: -1, offset: String(change.changeId ?? -1) },
    });
  }

  /**
   * The messages in the table's format (after the size check on their JSON text); a value the format
   * cannot carry (a numeric NaN in a decimal column) is a dead letter naming the column, never a wrong value.
   */
  private encoded(messages: OutMessage[], change: { key: string; txid: string | null; changeId: number | string | null }): WireMessage[] {
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
  private fitted(messages: OutMessage[], change: { key: string; txid: string | null; changeId: number | string | null }): WireMessage[] {
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
