import type pg from 'pg';
import { TunnelError, classify } from '../errors.js';
import { inTransaction, quoteIdent } from '../pg.js';
import { lockNames } from '../names.js';

export type Teardown = 'removed' | 'in use' | 'absent';

/**
 * After the last captured table's uninstall, removes what install left in the source: the DDL event
 * triggers, pgtunnel's functions and tables, and the schema. Object by object, never `CASCADE`: an object
 * of someone else's that depends on one of ours stops the removal with its name instead of going too.
 */
export async function removeCaptureSchema(source: pg.Client): Promise<Teardown> {
  return inTransaction(source, async () => {
    await source.query('SELECT pg_advisory_xact_lock(hashtext($1))', [lockNames.migrate]);
    const { rows: present } = await source.query<{ schema: boolean; captures: boolean }>(
      "SELECT to_regnamespace('pgtunnel') IS NOT NULL AS schema, to_regclass('pgtunnel.captures') IS NOT NULL AS captures",
    );
    if (!present[0]!.schema) return 'absent';
    if (present[0]!.captures) {
      // logical capture has state but no captures row
      const { rows } = await source.query<{ n: number }>('SELECT ((SELECT count(*) FROM pgtunnel.captures) + (SELECT count(*) FROM pgtunnel.state))::int AS n');
      if (rows[0]!.n > 0) return 'in use';
    }
    try {
      for (const name of ['pgtunnel_ddl', 'pgtunnel_ddl_drop']) await source.query(`DROP EVENT TRIGGER IF EXISTS ${quoteIdent(name)}`);
      const { rows: functions } = await source.query<{ f: string }>("SELECT oid::regprocedure::text AS f FROM pg_proc WHERE pronamespace = 'pgtunnel'::regnamespace");
      for (const { f } of functions) await source.query(`DROP FUNCTION ${f}`);
      const { rows: tables } = await source.query<{ t: string }>("SELECT oid::regclass::text AS t FROM pg_class WHERE relnamespace = 'pgtunnel'::regnamespace AND relkind = 'r'");
      for (const { t } of tables) await source.query(`DROP TABLE ${t}`);
      await source.query('DROP SCHEMA pgtunnel');
    } catch (err) {
      const e = classify(err);
      throw new TunnelError(e.code, `capture was removed from every table, but schema pgtunnel could not be removed: ${e.message}`, {
        errorClass: 'config',
        hint: e.code === '42501'
          ? 'the event triggers belong to a superuser: run `pgtunnel uninstall` as one, or as one run DROP EVENT TRIGGER pgtunnel_ddl; DROP EVENT TRIGGER pgtunnel_ddl_drop; and uninstall again'
          : 'remove the object named above that depends on pgtunnel, or keep the schema with `pgtunnel uninstall --keep-schema`',
        cause: err,
      });
    }
    return 'removed';
  });
}
