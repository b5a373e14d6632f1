import type { TableConfig, TunnelConfig } from '../config/load.js';
import { describeTable } from '../capture/catalog.js';
import { inTransaction, keyMatch, qualified, quoteIdent, withClient } from '../pg.js';

/**
 * Re-sends differing keys through the tunnel instead of writing the target behind its back: a no-op
 * update of each source row fires capture, and a key the source no longer has gets a DELETE change.
 */
/** `keys`: the differing keys as JSON texts (exact: an int8 key never passes through a JS number). */
export async function resendKeys(config: TunnelConfig, table: TableConfig, keys: string[]): Promise<{ touched: number; deleted: number }> {
  if (keys.length === 0) return { touched: 0, deleted: 0 };
  return withClient(config.sourceUrl, 'source', async (source) => {
    const shape = await describeTable(source, table, 'source');
    const t = qualified(table.schema, table.name);
    const match = keyMatch(shape.key, 't', 'k');
    const first = quoteIdent(shape.key[0]!);
    const keyCols = shape.key.map(quoteIdent).join(', ');
    return inTransaction(source, async () => {
      const touched = await source.query(
        `UPDATE ${t} t SET ${first} = t.${first} FROM json_populate_recordset(NULL::${t}, $1::json) k WHERE ${match}`,
        [`[${keys.join(',')}]`],
      );
      const deleted = await source.query(
        `INSERT INTO ${qualified(table.schema, table.changeTable)} (${keyCols}, action)
         SELECT ${shape.key.map((k) => `k.${quoteIdent(k)}`).join(', ')}, 'DELETE' FROM json_populate_recordset(NULL::${t}, $1::json) k
         WHERE NOT EXISTS (SELECT 1 FROM ${t} t WHERE ${match})`,
        [`[${keys.join(',')}]`],
      );
      return { touched: touched.rowCount ?? 0, deleted: deleted.rowCount ?? 0 };
    });
  });
}
