import type pg from 'pg';
import { TunnelError } from '../errors.js';
import { quoteIdent, quoteLiteral } from '../pg.js';
import { replicationClient } from './replicationStream.js';

/**
 * Creates `slot` (pgoutput) with an exported snapshot and makes `snap`'s transaction (REPEATABLE READ, no
 * statement run yet) read in it: a transaction is visible there exactly when it committed before the slot's
 * consistent point, and every later one is streamed from the slot. Returns the consistent point.
 */
export async function createSlotWithSnapshot(sourceUrl: string, applicationName: string, snap: pg.Client, slot: string, temporary = false): Promise<string> {
  const repl = await replicationClient(sourceUrl, applicationName);
  try {
    // a temporary slot (a table joining the source's shared slot) goes with its connection: only its snapshot and consistent point are wanted
    const { rows } = await repl.query<{ snapshot_name: string; consistent_point: string }>(`CREATE_REPLICATION_SLOT ${quoteIdent(slot)}${temporary ? ' TEMPORARY' : ''} LOGICAL pgoutput (SNAPSHOT 'export')`);
    const name = rows[0]?.snapshot_name ?? '';
    if (!/^[0-9A-Fa-f-]+$/.test(name)) throw new TunnelError('PGT_UNEXPECTED', `the source exported a snapshot named ${JSON.stringify(name)}`, { unexpected: true });
    // SET TRANSACTION SNAPSHOT takes no parameters; the name was checked above. The export lives while
    // the replication connection stays idle, so it is imported before that connection does anything else.
    await snap.query(`SET TRANSACTION SNAPSHOT ${quoteLiteral(name)}`);
    return rows[0]!.consistent_point;
  } finally {
    await repl.end().catch(() => {});
  }
}
