import type pg from 'pg';
import type { TableConfig, TunnelConfig } from '../config/load.js';
import { describeTable } from '../capture/catalog.js';
import type { TableApply } from '../apply/targetWriter.js';
import { tableApply } from '../apply/tableApply.js';
import { TunnelError } from '../errors.js';
import { withClient } from '../pg.js';
import { compileRules } from '../validate/rules.js';
import { lockNames } from '../names.js';

/** A table as `dlq replay` writes it: found by the DLQ topic that holds a letter, never by a header. */
export interface ReplayTable extends TableApply {
  topic: string;
  dlqTopic: string;
}

/** The configured tables `--table` selects (all without it); an unknown name is a usage error. */
export function selectTables(cfg: TunnelConfig, table?: string): TableConfig[] {
  const selected = cfg.tables.filter((t) => !table || table === t.name || table === `${t.schema}.${t.name}`);
  if (selected.length === 0) {
    throw new TunnelError('PGT_UNKNOWN_TABLE', `--table ${table} is not a configured table`, {
      errorClass: 'config',
      hint: `use one of: ${cfg.tables.map((t) => `${t.schema}.${t.name}`).join(', ')}`,
    });
  }
  return selected;
}

/**
 * Describes the selected tables read-only (catalog queries, no install), so a dry run changes nothing;
 * rules are compiled against the target's column types as the tunnel does.
 */
export async function replayTables(cfg: TunnelConfig, tables: TableConfig[]): Promise<Map<string, ReplayTable>> {
  const sources = await withClient(cfg.sourceUrl, 'source', async (source) => {
    const out = [];
    for (const t of tables) out.push(await describeTable(source, t, 'source'));
    return out;
  });
  return withClient(cfg.targetUrl, 'target', async (target) => {
    const out = new Map<string, ReplayTable>();
    for (const [i, t] of tables.entries()) {
      const source = sources[i]!;
      const shape = await describeTable(target, { ...t, key: source.key }, 'target');
      const rules = compileRules(t.rules, shape.types, `${t.schema}.${t.name}`);
      out.set(t.dlqTopic, { ...tableApply({ config: t, source, target: shape, rules }), topic: t.topic, dlqTopic: t.dlqTopic });
    }
    return out;
  });
}

/** True once `pgtunnel install`/`run` created the target's bookkeeping; a dry run never creates it. */
export async function targetInstalled(target: pg.Client, table = 'pgtunnel.dlq_resolved'): Promise<boolean> {
  const { rows } = await target.query<{ ok: boolean }>('SELECT to_regclass($1) IS NOT NULL AS ok', [table]);
  return rows[0]?.ok === true;
}

/**
 * One replay or discard at a time per target: a session advisory lock, held until the command's connection
 * ends, so two replays never apply (or re-queue) the same letters twice.
 */
export async function takeReplayLock(target: pg.Client): Promise<void> {
  const { rows } = await target.query<{ ok: boolean }>('SELECT pg_try_advisory_lock(hashtext($1)) AS ok', [lockNames.dlqReplay]);
  if (rows[0]?.ok) return;
  throw new TunnelError('PGT_REPLAY_BUSY', 'another `pgtunnel dlq replay` or `dlq discard` is running against this target', {
    errorClass: 'fatal',
    hint: 'wait until it finishes, then run the command again (it resumes with the letters still unresolved)',
  });
}
