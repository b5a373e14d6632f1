import type pg from 'pg';
import { sqlName } from './privileges.js';

/**
 * Grants that `ALTER DEFAULT PRIVILEGES` gives on tables the connected role creates in these schemas: they
 * land on the change table and pgtunnel's tables, and install's `REVOKE … FROM PUBLIC` does not take them
 * back. Whoever holds one can read changes or, with INSERT or UPDATE, forge them. Functions need no
 * warning: install takes EXECUTE on pgtunnel's functions from everyone.
 */
export async function defaultTableGrants(source: pg.Client, schemas: string[]): Promise<string[]> {
  const { rows } = await source.query<{ owner: string; schema: string | null; grantee: string; privileges: string[] }>(
    `SELECT d.defaclrole::regrole::text AS owner, n.nspname AS schema, a.grantee::regrole::text AS grantee,
            array_agg(a.privilege_type ORDER BY a.privilege_type) AS privileges
     FROM pg_default_acl d LEFT JOIN pg_namespace n ON n.oid = d.defaclnamespace, aclexplode(d.defaclacl) a
     WHERE d.defaclrole = current_user::regrole AND d.defaclobjtype = 'r' AND a.grantee NOT IN (0, d.defaclrole)
       AND (d.defaclnamespace = 0 OR n.nspname = ANY ($1::text[]))
     GROUP BY 1, 2, 3 ORDER BY 2 NULLS FIRST, 3`,
    [schemas],
  );
  return rows.map((r) => {
    const where = r.schema === null ? '' : ` IN SCHEMA ${sqlName(r.schema)}`;
    return `default privileges of ${r.owner} grant ${r.privileges.join(', ')} on new tables${where} to ${r.grantee}, so also on the change tables`
      + ` and pgtunnel's tables; unless ${r.grantee} is the producer role, revoke them (REVOKE ALL ON <change table> FROM ${r.grantee}) and run`
      + ` ALTER DEFAULT PRIVILEGES FOR ROLE ${r.owner}${where} REVOKE ${r.privileges.join(', ')} ON TABLES FROM ${r.grantee};`;
  });
}
