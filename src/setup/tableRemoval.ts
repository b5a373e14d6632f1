import type pg from 'pg';
import type { TableConfig, TunnelConfig } from '../config/load.js';
import { uninstallCapture } from '../capture/install.js';
import { uninstallLogical } from '../capture/logicalInstall.js';
import { classify, describeError, sqlState } from '../errors.js';
import { connect, qualified } from '../pg.js';
import { producerApplicationName, tableId } from '../names.js';
import { becomeLeader, type LockHolder } from '../pipeline/producerLock.js';
import { sleep } from '../retry.js';

/** What became of a removed table's capture, for the log and its part in status. */
export interface Removal {
  /** False when capture stays installed (the reason and fix in `what`). */
  removed: boolean;
  /** One sentence: what was removed and what was dropped with it, or why capture stays and the fix. */
  what: string;
}

/** How long the removed table's producer may take to stop (its grace is 3.5 s) before another one is presumed to lead it. */
const stopWaitMs = 20_000;
/** DDL on the captured table waits this long for its lock, so writers never queue behind it for longer. */
const lockTimeoutMs = 2000;
const attempts = 5;

/**
 * Uninstalls the capture of a table taken out of the running tunnel, once its producer stopped: what
 * `pgtunnel uninstall` removes for one table (capture/install.ts `uninstallCapture`, or the slot and
 * publication), so the source stops writing change rows nobody reads.
 *
 * The producer lock is the proof that nobody publishes the table any more: it is taken first (the stopping
 * producer frees it within its grace) and held while capture is removed. When another process's producer
 * takes it over (the table is still in that process's configuration), capture stays and the log says so.
 *
 * A removal racing changes of the table: everything Kafka acknowledged before the producer stopped is in the
 * topic; change rows its last checkpoint did not pass go with the change table (counted in the log; those Kafka
 * had not acknowledged are never published). Removal is the end of that table's stream: added back, it is installed and snapshotted
 * afresh, so its target converges again. The other tables are not touched: each DDL statement takes only the
 * removed table's and its change table's locks, with a lock timeout so the table's writers never wait long.
 */
export async function removeCapture(config: TunnelConfig, table: TableConfig, waitMs = stopWaitMs): Promise<Removal> {
  const id = tableId(table);
  const source = await connect(config.sourceUrl, 'source', producerApplicationName(id));
  try {
    let holder: LockHolder | undefined;
    const held = await becomeLeader(source, id, AbortSignal.timeout(waitMs), async (h) => {
      holder = h;
    });
    if (!held) {
      const who = holder ? `pid ${holder.pid}${holder.clientAddr ? ` from ${holder.clientAddr}` : ''}${holder.applicationName ? ` (${holder.applicationName})` : ''}` : 'another session';
      return { removed: false, what: `capture of ${id} stays installed: after ${waitMs / 1000} s its producer lock is still held by ${who}, a producer that still runs it (another tunnel's, or this one's not stopped yet); remove the table there too, or run \`PGTUNNEL_TABLES=${id} pgtunnel uninstall --keep-schema\` once none does` };
    }
    const dropped = await unpublishedRows(source, table);
    await source.query(`SET lock_timeout = ${lockTimeoutMs}`);
    for (let attempt = 1; ; attempt++) {
      try {
        const logical = await uninstallLogical(source, table, config.topicPrefix);
        const trigger = await uninstallCapture(source, table);
        if (!logical && !trigger) return { removed: true, what: `no capture of ${id} was installed: nothing to remove` };
        const kind = logical ? 'replication slot and publication' : 'triggers, capture functions, change table';
        return { removed: true, what: `capture of ${id} removed from the source (${kind}, its position and state)${dropped > 0 ? `; ${dropped} changes committed after its last checkpoint (some may be in Kafka already) went with it` : ''}` };
      } catch (err) {
        // 55P03: a writer held the table past the lock timeout; PGT_SLOT_ACTIVE: the walsender is still closing
        const busy = sqlState(err) === '55P03' || classify(err).code === 'PGT_SLOT_ACTIVE';
        if (busy && attempt < attempts) {
          await sleep(attempt * 500);
          continue;
        }
        const fix = sqlState(err) === '42501'
          ? `this role may not remove capture: run \`PGTUNNEL_TABLES=${id} pgtunnel uninstall --keep-schema\` as the installer`
          : `run \`PGTUNNEL_TABLES=${id} pgtunnel uninstall --keep-schema\` when the table is quiet`;
        return { removed: false, what: `capture of ${id} stays installed (${describeError(classify(err))}): ${fix}; its change table grows until then` };
      }
    }
  } finally {
    await source.end().catch(() => {});
  }
}

/** Change rows of transactions the stored checkpoint did not pass: not published (but for a batch under way), dropped with the change table. */
async function unpublishedRows(source: pg.Client, table: TableConfig): Promise<number> {
  const { rows: registry } = await source.query<{ ok: boolean }>("SELECT to_regclass('pgtunnel.captures') IS NOT NULL AS ok");
  if (!registry[0]!.ok) return 0;
  const changeTable = qualified(table.schema, table.changeTable);
  const { rows: recorded } = await source.query<{ ok: boolean }>('SELECT EXISTS (SELECT 1 FROM pgtunnel.captures WHERE table_id = $1 AND change_table = to_regclass($2)) AS ok', [tableId(table), changeTable]);
  if (!recorded[0]!.ok) return 0;
  const { rows } = await source.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM ${changeTable} c LEFT JOIN pgtunnel.state s ON s.table_id = $1
     WHERE s.prev_snapshot IS NULL OR NOT pg_visible_in_snapshot(c.txid, s.prev_snapshot)`,
    [tableId(table)],
  );
  return rows[0]!.n;
}
