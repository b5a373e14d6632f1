import type pg from 'pg';
import type { TableConfig, TunnelConfig } from '../config/load.js';
import type { LogicalChange, LogicalRows } from '../capture/logicalRows.js';
import type { Relation, TupleValue } from '../capture/pgoutput.js';
import type { MessageFeed, QueuedMessage } from '../capture/replicationStream.js';
import type { Logger } from '../instruments/log.js';
import { tableId } from '../names.js';
import { telemetry } from '../instruments/telemetry.js';
import { switchMessagePrefix } from '../capture/captureSwitch.js';
import type { CaptureState } from '../capture/stateStore.js';
import { failpoint } from './failpoints.js';
import { PagesInFlight } from './pagesInFlight.js';
import { onePart, type PublishStep } from './publishStep.js';

/** Pure: true when an update moved the row to another key (pgoutput then sends the old key). */
function keyChanged(relation: Relation, before: TupleValue[] | null, after: TupleValue[]): boolean {
  if (!before) return false;
  return relation.columns.some((c, i) => c.isKey && before[i] !== after[i]);
}

/** The schema versions of the table's relation messages (the producer's `LogicalSchemas` and its encoder). */
export interface RelationSchemas {
  /** The version of the relation a message at `lsn` describes (numbered when new). */
  versionAt(client: pg.Client, relation: Relation, lsn: bigint): Promise<number>;
  /** Makes the encoder's schemas those of this relation's version before a page of it is published. */
  use(client: pg.Client, relation: Relation, version: number): Promise<void>;
}

/**
 * The stream side of logical capture: pgoutput messages become change rows and pages, each a page of the
 * one publish step whose checkpoint is the slot's acknowledgement, given only after Kafka acknowledged
 * (or committed) it: the slot's confirmed flush LSN is the position and a restart resumes after it.
 */
export class LogicalStream {
  private readonly relations = new Map<number, { relation: Relation; version: number }>();
  /** The open transaction: `messages` counts its change messages taken so far (a position inside it). */
  private txn: { xid: number; commitTimeMs: number; finalLsn: bigint; messages: number; had: boolean; switchToTrigger?: boolean } | undefined;
  /** The end of the transaction that hands the table over to trigger capture: nothing after it is taken. */
  private handOverAt: bigint | undefined;
  /** Exactly-once resume: this many change messages of the transaction committing at `finalLsn` are in Kafka already. */
  private skip: { finalLsn: bigint; messages: number } | undefined;
  private pending: LogicalChange[] = [];
  /** The WAL position everything taken so far is complete up to (a commit's end, or an idle keepalive). */
  private complete = 0n;
  /** Transactions committing before this are in Kafka already (a shared slot's stream gives every table the slot's WAL). */
  private from = 0n;
  /** What Kafka acknowledged: the position and how much of the transaction open at it (a shared stream's restart resumes there). */
  private acked: { lsn: bigint; open: { finalLsn: bigint; messages: number } | undefined } | undefined;
  /** A table moving onto the shared slot: its own slot's stream ends once Kafka acknowledged this far (slotMigration.ts). */
  private until: bigint | undefined;

  constructor(
    private readonly config: TunnelConfig,
    private readonly table: TableConfig,
    private readonly rows: LogicalRows,
    private readonly step: PublishStep,
    private readonly log: Logger,
    private readonly schemas: RelationSchemas,
  ) {}

  /**
   * Waits for messages, turns them into pages and publishes them; returns when aborted or failed.
   * `stored`: the state the stream starts from: an exactly-once position record names it, and a page
   * that ended inside a transaction left there how much of it Kafka committed.
   */
  async run(client: pg.Client, stream: MessageFeed, stored: CaptureState, signal: AbortSignal, onPage: () => void): Promise<'handed over' | 'reached' | undefined> {
    let state = stored;
    if (stored.lsnInTransaction) this.skip = { finalLsn: BigInt(stored.lsnInTransaction.finalLsn), messages: stored.lsnInTransaction.messages };
    this.from = BigInt(stored.lsn ?? 0);
    // at-least-once: the next page is formed and sent while the previous one's ack is out (exactly-once
    // has one Kafka transaction open at a time); the slot confirms pages strictly in order
    const ahead = this.step.sendsAhead ? new PagesInFlight<SentPage>(2) : undefined;
    const confirm = ahead && ((page: SentPage) => {
      this.acknowledge(stream, page.complete, page.open);
      if (ahead.outstanding) failpoint('producer.between-acks');
    });
    while (!signal.aborted) {
      await (ahead && !ahead.empty ? this.waitEither(stream, ahead, signal) : stream.wait(1000, signal));
      await ahead?.release(confirm!);
      // the pages in flight at their limit: nothing more is taken before the oldest's ack (only an abort ends the wait earlier)
      if (ahead?.full) continue;
      const taken = stream.take(this.config.batchSize * 4);
      for (const item of taken) {
        if (this.handOverAt !== undefined) continue;
        // both publish what came before in the order it was sent
        if (item.message.tag === 'restart' || item.message.tag === 'relation') await ahead?.drain(confirm!);
        if (item.message.tag === 'restart') this.restarted();
        else if (item.message.tag === 'relation') state = await this.relation(client, stream, stored, state, item.message.relation);
        else this.accept(item);
      }
      // a page: everything taken, once a batch is full or the queue ran dry (latency over batching)
      if (this.pending.length > 0 && (this.pending.length >= this.config.batchSize || stream.queued === 0 || this.handOverAt !== undefined)) {
        if (ahead && this.handOverAt === undefined) await this.sendAhead(client, ahead);
        else {
          await ahead?.drain(confirm!);
          state = await this.publish(client, stream, stored, state);
        }
      }
      // an idle position is confirmed only once no page before it is out
      if (this.pending.length === 0 && this.complete > 0n && ahead?.empty !== false) this.acknowledge(stream, this.complete, undefined);
      onPage();
      if (this.handOverAt !== undefined && this.pending.length === 0) return 'handed over';
      if (this.until !== undefined && !this.txn && this.pending.length === 0 && (this.acked?.lsn ?? 0n) >= this.until) return 'reached';
    }
    // a stop: pages already sent are confirmed once acknowledged, so a restart does not send them again
    await ahead?.drain(confirm!);
    return undefined;
  }

  /** Waits for the oldest page's ack or, unless the pages in flight are at their limit, a message. */
  private async waitEither(stream: MessageFeed, ahead: PagesInFlight<SentPage>, signal: AbortSignal): Promise<void> {
    const woken = new AbortController();
    const stop = () => woken.abort();
    signal.addEventListener('abort', stop, { once: true });
    try {
      const waiting = ahead.full ? new Promise<void>((resolve) => woken.signal.addEventListener('abort', () => resolve(), { once: true })) : stream.wait(1000, woken.signal);
      await Promise.race([waiting, ahead.oldest()]);
      woken.abort();
      await waiting;
    } finally {
      signal.removeEventListener('abort', stop);
    }
  }

  /** Ends the stream at the first whole-transaction position Kafka acknowledged at or past `lsn` (`run` returns 'reached'). */
  endAt(lsn: bigint): this {
    this.until = lsn;
    return this;
  }

  /** The position Kafka acknowledged last (the slot was told so). */
  get acknowledged(): bigint | undefined {
    return this.acked?.lsn;
  }

  private accept({ message: m, lsn }: QueuedMessage): void {
    switch (m.tag) {
      case 'keepalive':
        // nothing of this table is open: the slot may move past WAL it has no changes in
        if (!this.txn) this.complete = lsn > this.complete ? lsn : this.complete;
        return;
      case 'begin':
        // committed before `from`: Kafka has it (a shared slot resends WAL the slot confirmed for another table)
        this.txn = { xid: m.xid, commitTimeMs: m.commitTimeMs, finalLsn: m.finalLsn, messages: 0, had: m.finalLsn < this.from };
        return;
      case 'commit':
        if (this.txn?.switchToTrigger) this.handOverAt = m.endLsn;
        this.txn = undefined;
        this.skip = undefined;
        if (m.endLsn > this.complete) this.complete = m.endLsn;
        return;
      case 'message':
        // the boundary of a switch to trigger capture: every later commit is in the change table
        if (this.txn && m.transactional && m.prefix === switchMessagePrefix && m.content.toString() === tableId(this.table)) this.txn.switchToTrigger = true;
        return;
      case 'insert':
      case 'update':
      case 'delete': {
        const known = this.relations.get(m.relationOid);
        if (!known || !this.txn || this.skipped(this.txn)) return;
        const { relation, version: schemaVersion } = known;
        const base = { lsn, xid: this.txn.xid, commitTimeMs: this.txn.commitTimeMs, relation, schemaVersion };
        if (m.tag === 'insert') this.pending.push({ ...base, action: 'INSERT', values: m.after });
        else if (m.tag === 'delete') this.pending.push({ ...base, action: 'DELETE', values: m.before });
        else {
          // a key-changing update: the old key goes (as trigger capture sends it), the new row comes
          if (keyChanged(relation, m.before, m.after)) this.pending.push({ ...base, action: 'DELETE', values: m.before! });
          this.pending.push({ ...base, action: 'UPDATE', values: m.after });
        }
        return;
      }
      case 'truncate': {
        const known = m.relationOids.map((oid) => this.relations.get(oid)).find((r) => r !== undefined);
        if (known && this.txn && !this.skipped(this.txn)) this.pending.push({ lsn, xid: this.txn.xid, commitTimeMs: this.txn.commitTimeMs, relation: known.relation, schemaVersion: known.version, action: 'TRUNCATE', values: [] });
        return;
      }
      default:
        return;
    }
  }

  /**
   * A relation message of the table (before its first change in a session, and after a DDL changed it):
   * its schema version. A page holds one version, so changes of the version before are published first,
   * read with their own columns and types and encoded with their own schemas.
   */
  private async relation(client: pg.Client, stream: MessageFeed, stored: CaptureState, state: CaptureState, relation: Relation): Promise<CaptureState> {
    if (relation.schema !== this.table.schema || relation.name !== this.table.name) return state;
    // the server sends a relation message at no WAL position: its transaction's commit places it in the stream
    const version = await this.schemas.versionAt(client, relation, this.txn?.finalLsn ?? this.complete);
    const next = this.pending.some((c) => c.schemaVersion !== version) ? await this.publish(client, stream, stored, state) : state;
    if (this.relations.get(relation.oid)?.version !== version) this.log.info({ table: tableId(this.table), schemaVersion: version, columns: relation.columns.map((c) => c.name) }, 'relation message: schema version');
    this.relations.set(relation.oid, { relation, version });
    return next;
  }

  /** Counts a change message of the open transaction; true when Kafka has it already (exactly-once resume). */
  private skipped(txn: NonNullable<LogicalStream['txn']>): boolean {
    txn.messages += 1;
    return txn.had || this.skip !== undefined && this.skip.finalLsn === txn.finalLsn && txn.messages <= this.skip.messages;
  }

  private acknowledge(stream: MessageFeed, lsn: bigint, open: { finalLsn: bigint; messages: number } | undefined): void {
    // an idle acknowledgement at the same position keeps what pages carried of the transaction open there
    const kept = open ?? (this.acked && lsn === this.acked.lsn ? this.acked.open : undefined);
    this.acked = { lsn: lsn > (this.acked?.lsn ?? 0n) ? lsn : this.acked!.lsn, open: kept };
    stream.acknowledge(lsn);
  }

  /**
   * The source's shared stream started again from its slot: what was taken and not published is dropped
   * and comes again; what Kafka acknowledged is skipped (whole transactions before it, and the part of the
   * one open at it that pages carried).
   */
  private restarted(): void {
    this.pending = [];
    this.txn = undefined;
    if (!this.acked) return;
    if (this.acked.lsn > this.from) this.from = this.acked.lsn;
    this.complete = this.acked.lsn;
    this.skip = this.acked.open;
  }

  /**
   * The pending changes as a page: truncates recorded, the encoder on the page's schema version, rows read.
   * `complete`: the position the slot may confirm once Kafka has the page; `open`: how much of a
   * transaction the page ends inside Kafka then has (the slot can only confirm up to the commit before it,
   * so the position record says it, and a resume skips that much of it).
   */
  private async page(client: pg.Client) {
    const changes = this.pending;
    this.pending = [];
    const readAt = performance.now();
    // the source commit (its clock, this host's in the bench) until the page formed: walsender, our take, the page before
    if (telemetry.timingStages) telemetry.stages({ wait: Date.now() - changes[0]!.commitTimeMs });
    const complete = this.complete;
    const open = this.txn && { finalLsn: this.txn.finalLsn, messages: this.txn.messages };
    const truncates = changes.filter((c) => c.action === 'TRUNCATE');
    // the consumer honours only a truncate the source recorded (anyone who can write a topic could empty a table)
    for (const t of truncates) {
      await client.query('INSERT INTO pgtunnel.truncates (table_id, change_id, txid) VALUES ($1, $2, $3::text::xid8) ON CONFLICT DO NOTHING', [tableId(this.table), t.lsn.toString(), String(t.xid)]);
    }
    await this.schemas.use(client, changes[0]!.relation, changes[0]!.schemaVersion);
    const rows = await this.rows.rows(client, changes);
    return { rows, count: changes.length, complete, open, readMs: performance.now() - readAt };
  }

  /** One page through the publish step; its checkpoint is the slot's acknowledgement of the page's end. */
  private async publish(client: pg.Client, stream: MessageFeed, stored: CaptureState, state: CaptureState): Promise<CaptureState> {
    const { rows, count, complete, open, readMs } = await this.page(client);
    const { after } = await this.step.publish(client, {
      records: onePart({ changes: rows }),
      after: () => ({ ...state, lsn: complete.toString(), lsnInTransaction: open && { finalLsn: open.finalLsn.toString(), messages: open.messages } }),
      pageSize: count,
      readMs,
      checkpoint: () => this.acknowledge(stream, complete, open),
    }, stored);
    this.published(count, complete);
    return after;
  }

  /** One page sent behind the pages in flight; its slot acknowledgement comes when `ahead` releases it. */
  private async sendAhead(client: pg.Client, ahead: PagesInFlight<SentPage>): Promise<void> {
    const { rows, count, complete, open, readMs } = await this.page(client);
    const { acked } = await this.step.sendAhead({ records: { changes: rows }, pageSize: count, readMs });
    ahead.add(acked, { complete, open });
    this.published(count, complete);
  }

  private published(count: number, complete: bigint): void {
    if (this.log.isLevelEnabled('debug')) this.log.debug({ table: tableId(this.table), count, lsn: complete.toString() }, 'logical page published');
  }
}

/** A page in flight: what the slot may confirm once Kafka acknowledged it and every page before it. */
interface SentPage {
  complete: bigint;
  open: { finalLsn: bigint; messages: number } | undefined;
}
