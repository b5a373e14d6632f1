import type pg from 'pg';
import { TunnelError, sqlState } from '../errors.js';
import type { ChangeRow, TransactionEnd } from '../contracts/envelope.js';

/** Per transaction (txid text): the events it wrote into each captured table (table id → count). */
export type TransactionCounts = Map<string, Map<string, number>>;

/**
 * Pure: the transaction block of each change of a page, and which changes open (BEGIN) or close (END) their
 * transaction on the transaction topic. `earlier` counts the transaction's changes of this table already
 * published by earlier pages of the batch, so a transaction split across pages keeps counting on.
 *
 * Trigger capture numbers changes per table (change_id), not across tables, so `total_order` orders a
 * transaction's events by table id, then by change within the table: dense 1..event_count and the same
 * from every producer, which is what a consumer needs to know it has them all. One producer speaks for
 * the transaction on the transaction topic: the one of its lowest table id.
 */
export function planTransactions(changes: ChangeRow[], table: string, counts: TransactionCounts, earlier: ReadonlyMap<string, number>): void {
  const seen = new Map<string, number>();
  for (const change of changes) {
    const perTable = counts.get(change.txid);
    const own = perTable?.get(table);
    if (!perTable || own === undefined) continue; // written before transaction metadata was on
    const order = (seen.get(change.txid) ?? earlier.get(change.txid) ?? 0) + 1;
    seen.set(change.txid, order);
    const tables = [...perTable.keys()].sort();
    let before = 0;
    for (const t of tables) if (t < table) before += perTable.get(t)!;
    change.transaction = { id: change.txid, totalOrder: before + order, dataCollectionOrder: order };
    if (tables[0] !== table) continue;
    if (order === 1) change.transactionBegin = true;
    if (order === own) change.transactionEnd = endOf(tables, perTable);
  }
}

function endOf(tables: string[], perTable: Map<string, number>): TransactionEnd {
  const dataCollections = tables.map((t) => ({ dataCollection: t, eventCount: perTable.get(t)! }));
  return { eventCount: dataCollections.reduce((n, d) => n + d.eventCount, 0), dataCollections };
}

/**
 * The transaction counts behind `planTransactions`, read in SQL: what capture counted per transaction and
 * table (committed with the changes), and what earlier pages of this batch published of this table.
 */
export class TransactionReader {
  constructor(private readonly table: string, private readonly changeTable: string) {}

  async plan(client: pg.Client, changes: ChangeRow[], lastChangeId: number): Promise<void> {
    if (changes.length === 0) return;
    const txids = [...new Set(changes.map((c) => c.txid))];
    const { rows } = await client.query<{ txid: string; table_id: string; events: string }>(
      'SELECT txid::text, table_id, events::text FROM pgtunnel.transaction_events WHERE txid = ANY ($1::xid8[])',
      [txids],
    );
    const counts: TransactionCounts = new Map();
    for (const r of rows) {
      const perTable = counts.get(r.txid) ?? new Map<string, number>();
      perTable.set(r.table_id, Number(r.events));
      counts.set(r.txid, perTable);
    }
    const earlier = new Map<string, number>();
    if (lastChangeId > 0) {
      // rows of earlier pages stay in the change table until their batch is complete
      const { rows: done } = await client.query<{ txid: string; n: string }>(
        `SELECT txid::text, count(*)::text AS n FROM ${this.changeTable} WHERE txid = ANY ($1::xid8[]) AND change_id <= $2 GROUP BY txid`,
        [txids, lastChangeId],
      );
      for (const r of done) earlier.set(r.txid, Number(r.n));
    }
    planTransactions(changes, this.table, counts, earlier);
  }

  /**
   * After a complete batch: this table has passed its transactions; a transaction every table has passed
   * is forgotten (by whichever producer comes next: SKIP LOCKED, so two never wait on each other).
   */
  async cleanup(client: pg.Client, checkpoint: string): Promise<void> {
    await client.query(
      `UPDATE pgtunnel.transaction_events SET published = true
       WHERE table_id = $2 AND NOT published AND txid < pg_snapshot_xmax($1::pg_snapshot) AND pg_visible_in_snapshot(txid, $1::pg_snapshot)`,
      [checkpoint, this.table],
    );
    await client.query(
      `DELETE FROM pgtunnel.transaction_events WHERE (txid, table_id) IN (
         SELECT e.txid, e.table_id FROM pgtunnel.transaction_events e
         WHERE NOT EXISTS (SELECT 1 FROM pgtunnel.transaction_events u WHERE u.txid = e.txid AND NOT u.published)
         FOR UPDATE SKIP LOCKED)`,
    );
  }
}

/**
 * Turns the change table's transaction counter on or off as configured. Off costs capture nothing (a
 * disabled trigger); switching needs the change table's owner, the installer.
 */
export async function setTransactionCounting(client: pg.Client, changeTable: string, on: boolean): Promise<void> {
  const { rows } = await client.query<{ enabled: boolean | null }>(
    "SELECT (SELECT tgenabled <> 'D' FROM pg_trigger WHERE tgrelid = to_regclass($1) AND tgname = 'pgtunnel_transaction_events') AS enabled",
    [changeTable],
  );
  const enabled = rows[0]?.enabled;
  if (enabled === null || enabled === undefined || enabled === on) return;
  try {
    await client.query(`ALTER TABLE ${changeTable} ${on ? 'ENABLE' : 'DISABLE'} TRIGGER pgtunnel_transaction_events`);
  } catch (err) {
    if (sqlState(err) !== '42501') throw err;
    throw new TunnelError('PGT_PRIVILEGES', `transactionMetadata is ${on ? 'on' : 'off'} but the change table ${changeTable} still counts ${on ? 'nothing' : 'transactions'}, and this role may not switch it`, {
      errorClass: 'config',
      hint: 'run `pgtunnel install` once as the installer role (the change table\'s owner) after changing transactionMetadata',
      cause: err,
    });
  }
}
