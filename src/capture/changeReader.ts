import type pg from 'pg';
import { qualified } from '../pg.js';
import type { TableConfig } from '../config/load.js';
import type { ChangeRow } from '../transport/envelope.js';
import type { Position } from './position.js';

export interface Page {
  cur: string;
  changes: ChangeRow[];
}

/**
 * Reads the change table in snapshot-diff batches: the changes of transactions visible in `cur` and not
 * in `prev`, in change_id order, never `change_id > last` alone (that loses late commits). The txid
 * range keeps it an index scan however large the change table is.
 */
export class ChangeReader {
  private readonly batchSql: string;
  private readonly cleanupSql: string;
  private readonly vacuumSql: string;
  private cleanedSinceVacuum = 0;

  constructor(table: TableConfig) {
    const changeTable = qualified(table.schema, table.changeTable);
    // The page's ids are chosen first and only those rows are turned into JSON: a large transaction
    // read in pages must not pay to_jsonb for every one of its rows on every page.
    this.batchSql = `
      WITH s AS MATERIALIZED (SELECT COALESCE($2::pg_snapshot, pg_current_snapshot()) AS cur, $1::pg_snapshot AS prev),
      page AS (
        SELECT c.change_id FROM ${changeTable} c, s
        WHERE c.txid >= pg_snapshot_xmin(s.prev) AND c.txid < pg_snapshot_xmax(s.cur)
          AND pg_visible_in_snapshot(c.txid, s.cur) AND NOT pg_visible_in_snapshot(c.txid, s.prev)
          AND c.change_id > $3
        ORDER BY c.change_id
        LIMIT $4)
      SELECT s.cur::text AS cur, b.*
      FROM s LEFT JOIN LATERAL (
        SELECT c.change_id, c.action, c.txid::text AS txid,
               extract(epoch FROM c.captured_at)::float8 * 1000 AS captured_ms,
               to_jsonb(c) - '{action,change_id,txid,captured_at}'::text[] AS row
        FROM ${changeTable} c JOIN page USING (change_id)
        ORDER BY c.change_id) b ON true`;
    // No truncation: it waits for an ACCESS EXCLUSIVE lock (up to 5 s) against the capture triggers' inserts.
    this.vacuumSql = `VACUUM (TRUNCATE false) ${changeTable}`;
    this.cleanupSql = `DELETE FROM ${changeTable} WHERE txid < pg_snapshot_xmax($1::pg_snapshot) AND pg_visible_in_snapshot(txid, $1::pg_snapshot)`;
  }

  /** One page of the batch after `position.prev`; `position.cur` pins the batch's snapshot across pages. */
  async readPage(client: pg.Client, position: Position, pageSize: number, cur: string | null = position.cur): Promise<Page> {
    const { rows } = await client.query<{ cur: string; change_id: number | null; action: string; txid: string; captured_ms: number; row: Record<string, unknown> }>(
      this.batchSql,
      [position.prev, cur, position.lastChangeId, pageSize],
    );
    const changes: ChangeRow[] = [];
    for (const r of rows) {
      if (r.change_id === null) continue;
      changes.push({ changeId: r.change_id, action: r.action, txid: r.txid, capturedMs: r.captured_ms, row: r.row });
    }
    return { cur: rows[0]!.cur, changes };
  }

  /** Removes the change rows of every transaction visible in a checkpointed snapshot. */
  async cleanup(client: pg.Client, checkpoint: string): Promise<number> {
    const result = await client.query(this.cleanupSql, [checkpoint]);
    this.cleanedSinceVacuum += result.rowCount ?? 0;
    return result.rowCount ?? 0;
  }

  /**
   * Deleted change rows leave dead tuples; autovacuum may wait a minute or more, so after enough
   * cleanups the producer vacuums the (small) change table itself and its size stays bounded.
   * Must run outside a transaction.
   */
  async vacuumIfDue(client: pg.Client, threshold = 20_000): Promise<boolean> {
    if (this.cleanedSinceVacuum < threshold) return false;
    this.cleanedSinceVacuum = 0;
    await client.query(this.vacuumSql);
    return true;
  }
}
