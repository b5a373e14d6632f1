import type pg from 'pg';
import type { TableConfig } from '../config/load.js';
import { TunnelError, sqlState } from '../errors.js';
import { inTransaction } from '../pg.js';
import { tableId } from '../names.js';

/**
 * `before: full` on or off as configured: recorded in pgtunnel.captures and the capture functions
 * regenerated (sql/source/000009), which needs the installer's rights.
 */
export async function setBeforeImages(client: pg.Client, table: TableConfig): Promise<void> {
  const id = tableId(table);
  const full = table.before === 'full';
  const { rows } = await client.query<{ before_full: boolean }>('SELECT before_full FROM pgtunnel.captures WHERE table_id = $1', [id]);
  if (!rows[0] || rows[0].before_full === full) return;
  try {
    await inTransaction(client, async () => {
      await client.query('UPDATE pgtunnel.captures SET before_full = $2 WHERE table_id = $1', [id, full]);
      await client.query('SELECT pgtunnel.sync_capture($1)', [id]);
    });
  } catch (err) {
    if (sqlState(err) !== '42501') throw err;
    throw new TunnelError('PGT_PRIVILEGES', `${id} is configured with before: ${table.before}, but its capture was installed without, and this role may not change capture`, {
      errorClass: 'config',
      hint: 'run `pgtunnel install` once as the installer role after changing `before`',
      cause: err,
    });
  }
}

/** The reader's join: each update's old row, turned back into the change table's row type (`bb.*`). */
export function beforeImageJoin(changeTable: string, tableIdParam: string): string {
  return `LEFT JOIN pgtunnel.before_images bi ON bi.table_id = ${tableIdParam} AND bi.change_id = c.change_id
          CROSS JOIN LATERAL jsonb_populate_record(NULL::${changeTable}, bi.image) bb`;
}

/** Old rows go with their change rows: those of every transaction visible in the checkpoint. */
export const beforeImagesCleanupSql = `DELETE FROM pgtunnel.before_images
  WHERE table_id = $2 AND txid < pg_snapshot_xmax($1::pg_snapshot) AND pg_visible_in_snapshot(txid, $1::pg_snapshot)`;
