import type pg from 'pg';
import type { TableConfig, TunnelConfig } from '../config/load.js';
import { describeTable, type TableShape } from '../capture/catalog.js';
import type { CompiledRule } from '../validate/rules.js';
import type { Logger } from '../instruments/log.js';
import { tableId } from '../names.js';
import { withClient } from '../pg.js';
import { TableStatements } from './statements.js';
import type { TableApply } from './targetWriter.js';
import { addTargetColumns, followSourceTypes } from './targetSchema.js';

export interface PreparedTable {
  config: TableConfig;
  source: TableShape;
  target: TableShape;
  /** The table's rules, compiled against the target's column types when the tunnel is prepared. */
  rules: CompiledRule[];
}

export function tableApply(t: PreparedTable, config?: TunnelConfig, log?: Logger): TableApply {
  return {
    table: tableId(t.config),
    statements: new TableStatements(t.target),
    evolve: config && t.config.autoCreate ? (target: pg.Client, columns: string[]) => evolveTarget(config, t, target, columns, log) : undefined,
    truncateRecorded: config ? genuineTruncates(config, t) : undefined,
    followTypes: config && t.config.autoCreate ? (target: pg.Client) => followTypes(config, t, target, log) : undefined,
    rules: t.rules,
    onMissingKey: t.config.onMissingKey,
    orderPolicy: t.config.orderPolicy,
  };
}

/** A source column the target lacks is added to it (autoCreate), in the apply transaction of `target`. */
async function evolveTarget(config: TunnelConfig, t: PreparedTable, target: pg.Client, columns: string[], log?: Logger): Promise<TableShape> {
  const added = await withClient(config.sourceUrl, 'source', (source) => addTargetColumns(source, target, t.config.schema, t.config.name, columns.filter((c) => !t.config.exclude.includes(c))));
  if (added.length > 0) log?.info({ table: tableId(t.config), columns: added }, 'source columns added to the target table');
  return describeTable(target, { ...t.config, key: t.source.key }, 'target');
}

/**
 * A truncate envelope is genuine when the source's capture of the table recorded its change id. It comes
 * once per partition, so a genuine one is remembered.
 */
function genuineTruncates(config: TunnelConfig, t: PreparedTable): (txid: string | null, changeId: string | null) => Promise<boolean> {
  const genuine = new Set<string>();
  return async (txid, changeId) => {
    if (txid === null || changeId === null || !/^\d{1,19}$/.test(changeId) || !/^\d{1,20}$/.test(txid)) return false;
    const id = `${txid}/${changeId}`;
    if (genuine.has(id)) return true;
    const ok = await withClient(config.sourceUrl, 'source', async (source) => {
      const { rows } = await source.query<{ ok: boolean }>(
        'SELECT EXISTS (SELECT 1 FROM pgtunnel.truncates WHERE table_id = $1 AND change_id = $2 AND txid = $3::xid8) AS ok',
        [tableId(t.config), changeId, txid],
      );
      return rows[0]?.ok === true;
    });
    if (ok && genuine.size < 1000) genuine.add(id);
    return ok;
  };
}

/** Target column types follow type changes on the source (autoCreate); undefined when none differs. */
async function followTypes(config: TunnelConfig, t: PreparedTable, target: pg.Client, log?: Logger): Promise<TableShape | undefined> {
  const changed = await withClient(config.sourceUrl, 'source', (source) => followSourceTypes(source, target, t.config.schema, t.config.name));
  if (changed.length === 0) return undefined;
  log?.info({ table: tableId(t.config), columns: changed }, 'target column types changed to follow the source');
  return describeTable(target, { ...t.config, key: t.source.key }, 'target');
}
