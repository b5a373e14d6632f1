import type pg from 'pg';
import { TunnelError } from '../errors.js';
import type { RowImage } from '../contracts/envelope.js';
import { newestPerKey, type DecodedRecord } from './reduce.js';
import { missingKeyCandidates, missingKeyDecisions, type RouteTable } from './route.js';
import type { SetOutcome } from './setOutcome.js';
import { Staging } from './staging.js';
import { TableStatements } from './statements.js';
import type { TableApply } from './targetWriter.js';

/**
 * The one way changes reach target tables, set-based, for the consumer's polled sets and `dlq replay`
 * alike: route's missing-key decisions on the keys the target has, autoCreate's new columns, one DELETE
 * and one upsert per table for the newest change of each key. Runs inside its caller's transaction;
 * `ended` keeps what that transaction changed once it committed.
 */
export class ChangeWriter {
  private readonly checkedColumns = new Map<string, Set<string>>();
  private readonly staging = new Staging();

  constructor(
    private readonly client: pg.Client,
    private readonly tables: Map<string, TableApply>,
    /** Called before each table's rows are written, inside the transaction (a test's fault point). */
    private readonly beforeWrite: () => void = () => {},
  ) {}

  table(topic: string): TableApply {
    const t = this.tables.get(topic);
    if (!t) throw new TunnelError('PGT_UNKNOWN_TOPIC', `no target table is configured for topic ${topic}`);
    return t;
  }

  routeTable(topic: string): RouteTable {
    const t = this.table(topic);
    return { table: t.table, key: t.statements.key, types: t.statements.types, rules: t.rules, orderPolicy: t.orderPolicy, onMissingKey: t.onMissingKey };
  }

  /** Which of route's missing-key candidates the target lacks (read inside the set's transaction). */
  private async missingKeys(topic: string, candidates: Set<string>): Promise<Set<string>> {
    if (candidates.size === 0) return new Set();
    const statements = this.table(topic).statements;
    const { rows } = await this.client.query<{ k: string }>(statements.existingKeysSql, [`[${[...candidates].join(',')}]`]);
    const present = new Set(rows.map((r) => r.k));
    return new Set([...candidates].filter((k) => !present.has(k)));
  }

  /** One DELETE and one upsert per table for the newest change of each key, in the caller's transaction. */
  async write(segment: DecodedRecord[], outcome: SetOutcome): Promise<void> {
    const byTopic = new Map<string, DecodedRecord[]>();
    for (const r of segment) {
      const records = byTopic.get(r.topic);
      if (records) records.push(r);
      else byTopic.set(r.topic, [r]);
    }
    for (const [topic, records] of byTopic) {
      this.beforeWrite();
      const table = this.table(topic);
      const routeTable = this.routeTable(topic);
      const missing = await this.missingKeys(topic, missingKeyCandidates(records, routeTable));
      const { kept, dead } = missingKeyDecisions(records, missing, routeTable);
      for (const d of dead) outcome.dead(d.record, d.letter, d.park);
      const writes = newestPerKey(kept).get(topic);
      if (!writes) continue;
      const statements = await this.evolve(topic, table, writes.upserts, outcome);
      if (writes.deletes.length > 0) await statements.delete(this.client, writes.deletes);
      if (writes.upserts.length > 0) await statements.upsert(this.client, writes.upserts, this.staging, writes.creates);
      outcome.newestSourceMs = Math.max(outcome.newestSourceMs, writes.newestSourceMs);
      outcome.applied(table.table, kept);
      for (const r of kept) if (r.envelope.op !== 'r') outcome.latencies.push(r.envelope.source.tsMs);
    }
  }

  /**
   * Columns map by name: a row carrying a column the target lacks (added on the source) adds that
   * column to the target first, when the table evolves (autoCreate); names already checked are not
   * looked up again, so records naming made-up columns cost one catalog read per name.
   */
  private async evolve(topic: string, table: TableApply, rows: RowImage[], outcome: SetOutcome): Promise<TableStatements> {
    const current = outcome.evolved.get(topic) ?? table.statements;
    if (!table.evolve) return current;
    const checked = this.checkedColumns.get(topic) ?? new Set<string>();
    const unknown = new Set<string>();
    for (const row of rows) for (const c of current.unknownColumns(row)) if (!checked.has(c)) unknown.add(c);
    if (unknown.size === 0) return current;
    const shape = await table.evolve(this.client, [...unknown]);
    outcome.checked.push({ topic, names: [...unknown] });
    const statements = new TableStatements(shape);
    outcome.evolved.set(topic, statements);
    return statements;
  }

  /** The caller's transaction ended: a committed one's new statements and checked columns are kept. */
  ended(outcome: SetOutcome | undefined): void {
    this.staging.ended(outcome !== undefined);
    if (!outcome) return;
    for (const [topic, statements] of outcome.evolved) this.table(topic).statements = statements;
    for (const { topic, names } of outcome.checked) {
      const checked = this.checkedColumns.get(topic) ?? new Set<string>();
      if (checked.size < 10_000) for (const n of names) checked.add(n);
      this.checkedColumns.set(topic, checked);
    }
  }
}
