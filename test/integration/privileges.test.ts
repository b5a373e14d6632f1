import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { onCleanup, query, services, tunnelDatabases, waitFor, withStackPassword } from '../helpers/services.js';
import { InProcessTunnel } from '../helpers/inProcessTunnel.js';
import { runCli } from '../helpers/tunnelProcess.js';

const securityPage = readFileSync(fileURLToPath(new URL('../../../docs/security.md', import.meta.url)), 'utf8');

/** docs/security.md's "Least privileges" SQL blocks by their first line: what the test runs is what users read. */
function documentedBlocks(): Map<string, string> {
  const start = securityPage.indexOf('\n## Least privileges\n');
  assert.ok(start >= 0, 'docs/security.md has a "## Least privileges" section');
  const section = securityPage.slice(start, securityPage.indexOf('\n## ', start + 1));
  const blocks = new Map<string, string>();
  for (const m of section.matchAll(/```sql\n(-- [^\n]+)\n([\s\S]*?)```/g)) blocks.set(m[1]!, m[2]!);
  return blocks;
}

/** A postgres://role@host:port/db URL for one of the test clusters. */
function as(role: string, url: string): string {
  return url.replace('postgres://postgres@', `postgres://${role}@`);
}

test('the tunnel runs under roles holding only the GRANTs docs/security.md documents, and names a missing one', { timeout: 240_000 }, async (t) => {
  const s = services();
  const id = randomBytes(3).toString('hex');
  const names: Record<string, string> = {
    pgtunnel_installer: `pgtunnel_installer_${id}`,
    pgtunnel_producer: `pgtunnel_producer_${id}`,
    pgtunnel_apply: `pgtunnel_apply_${id}`,
    app_owner: `app_owner_${id}`,
    app_writer: `app_writer_${id}`,
  };
  // Roles are cluster-wide: registered first, so they are dropped after the databases that hold their objects.
  onCleanup(t, async () => {
    for (const server of [s.sourceServer, s.targetServer]) {
      const present = (await query<{ rolname: string }>(`${server}/postgres`, 'SELECT rolname FROM pg_roles WHERE rolname = ANY ($1)', [Object.values(names)])).map((r) => r.rolname);
      if (present.length === 0) continue;
      // DROP OWNED also revokes privileges on shared objects such as the session_replication_role parameter
      await query(`${server}/postgres`, `DROP OWNED BY ${present.join(', ')}`);
      for (const role of present) await query(`${server}/postgres`, `DROP ROLE ${role}`);
    }
  });
  const db = await tunnelDatabases(t);
  const name = db.topicPrefix;
  const rename = (sql: string) =>
    sql.replace(/\b(pgtunnel_installer|pgtunnel_producer|pgtunnel_apply|app_owner)\b/g, (n) => names[n]!).replace(/\b(sales|reporting)\b/g, name);
  const blocks = documentedBlocks();
  const block = (first: string) => {
    const sql = blocks.get(first);
    assert.ok(sql, `docs/security.md's Least privileges section has a block starting "${first}"`);
    return rename(sql);
  };

  // The application: its owner owns employees, a writer only writes it.
  await query(`${s.sourceServer}/postgres`, `CREATE ROLE ${names.app_owner}; CREATE ROLE ${names.app_writer} LOGIN`);
  await withStackPassword(`${s.sourceServer}/postgres`, [names.app_writer]);
  await query(db.sourceUrl, `ALTER TABLE employees OWNER TO ${names.app_owner};
    GRANT SELECT, INSERT, UPDATE, DELETE ON employees TO ${names.app_writer}; GRANT USAGE ON SEQUENCE employees_emp_id_seq TO ${names.app_writer}`);
  const writerUrl = as(names.app_writer, db.sourceUrl);
  await query(writerUrl, "INSERT INTO employees (first_name, salary) SELECT 'seed' || g, g FROM generate_series(1, 300) g");

  await query(db.sourceUrl, block('-- source, as an administrator, before pgtunnel install'));
  await query(db.targetUrl, block('-- target, as an administrator, before pgtunnel install'));
  for (const url of [db.sourceUrl, db.targetUrl]) await withStackPassword(url, Object.values(names));
  const installerEnv = { ...db.env, PGTUNNEL_SOURCE_URL: as(names.pgtunnel_installer, db.sourceUrl), PGTUNNEL_TARGET_URL: as(names.pgtunnel_installer, db.targetUrl) };
  const runtimeEnv = { ...db.env, PGTUNNEL_SOURCE_URL: as(names.pgtunnel_producer, db.sourceUrl), PGTUNNEL_TARGET_URL: as(names.pgtunnel_apply, db.targetUrl) };

  // Before the installer ran, the runtime role may not install: it is told what installing needs.
  const early = await runCli(['run'], runtimeEnv);
  assert.equal(early.code, 2, early.stdout + early.stderr);
  assert.match(early.stderr, /run `pgtunnel install` as the installer role/);
  assert.match(early.stderr, new RegExp(`GRANT CREATE ON DATABASE ${name} TO ${names.pgtunnel_producer};`));
  assert.match(early.stderr, new RegExp(`GRANT ${names.app_owner} TO ${names.pgtunnel_producer};`));

  const install = await runCli(['install'], installerEnv);
  assert.equal(install.code, 0, install.stdout + install.stderr);
  const owners = await query<{ owner: string }>(db.sourceUrl, "SELECT nspowner::regrole::text AS owner FROM pg_namespace WHERE nspname = 'pgtunnel'");
  assert.equal(owners[0]?.owner, names.pgtunnel_installer, 'the installer owns pgtunnel, not a superuser');
  const noEventTrigger = await query(db.sourceUrl, "SELECT 1 FROM pg_event_trigger WHERE evtname = 'pgtunnel_ddl'");
  assert.equal(noEventTrigger.length, 0, 'a non-superuser installer creates no event trigger');

  // After install but before the runtime GRANTs: run names exactly what the producer lacks.
  const ungranted = await runCli(['run'], runtimeEnv);
  assert.equal(ungranted.code, 2, ungranted.stdout + ungranted.stderr);
  assert.match(ungranted.stderr, new RegExp(`GRANT USAGE ON SCHEMA pgtunnel TO ${names.pgtunnel_producer};`));
  assert.match(ungranted.stderr, new RegExp(`GRANT SELECT, DELETE ON TABLE public.emp_cdc TO ${names.pgtunnel_producer};`));

  await query(db.sourceUrl, block('-- source, as an administrator, after pgtunnel install'));
  await query(db.targetUrl, block('-- target, as an administrator, after pgtunnel install'));

  // Snapshot, then streaming, under the runtime roles; the writer writes with no right on the change table.
  const tunnel = await InProcessTunnel.start(t, runtimeEnv);
  const count = async () => Number((await query<{ n: string }>(db.targetUrl, 'SELECT count(*) AS n FROM employees'))[0]!.n);
  await waitFor('the snapshot in the target', async () => (await count()) === 300, 60_000, 100);
  await query(writerUrl, "INSERT INTO employees (first_name, salary) VALUES ('streamed', 1)");
  await query(writerUrl, "UPDATE employees SET salary = salary + 1000 WHERE emp_id <= 10");
  await query(writerUrl, 'DELETE FROM employees WHERE emp_id BETWEEN 11 AND 20');
  await waitFor('streamed changes in the target', async () => {
    // ::int: in this process src/pg.ts makes node-postgres parse bigint (count) as a number, in a process of its own not
    const rows = await query<{ n: number; raised: number; streamed: number }>(db.targetUrl,
      "SELECT count(*)::int AS n, (count(*) FILTER (WHERE emp_id <= 10 AND salary > 1000))::int AS raised, (count(*) FILTER (WHERE first_name = 'streamed'))::int AS streamed FROM employees");
    return rows[0]!.n === 291 && rows[0]!.raised === 10 && rows[0]!.streamed === 1;
  }, 30_000, 100);
  const verify = await runCli(['verify'], runtimeEnv);
  assert.equal(verify.code, 0, verify.stdout + verify.stderr);
  const degraded = await tunnel.waitForEvents('pgtunnel:degraded', 'the producer leaving the VACUUM to autovacuum', (events) => events.some((e) => e.part === 'vacuum'));
  assert.match(degraded.find((e) => e.part === 'vacuum')!.reason, /does not own the change table .*autovacuum/);
  assert.deepEqual(degraded.filter((e) => e.part !== 'vacuum'), [], 'the SET ON PARAMETER grant lets apply run as a replica session');
  const changeRows = async () => Number((await query<{ n: string }>(db.sourceUrl, 'SELECT count(*) AS n FROM emp_cdc'))[0]!.n);
  await waitFor('the producer cleaning the change table', async () => (await changeRows()) === 0, 30_000, 100);
  // a missing grant is a table-wide or process-wide stop (the watched tunnel fails the waits above), or a retry
  assert.deepEqual(tunnel.events.of('pgtunnel:retried').map((r) => r.event).filter((e) => e.errorClass === 'config' || e.errorClass === 'fatal'), []);
  assert.doesNotMatch(tunnel.logLines.join('\n'), /permission denied/);
  await tunnel.stop();

  // One grant less on each side: run stops with exit 2 before doing anything, naming the exact GRANT.
  await query(db.sourceUrl, `REVOKE DELETE ON public.emp_cdc FROM ${names.pgtunnel_producer}`);
  const noDelete = await runCli(['run'], runtimeEnv);
  assert.equal(noDelete.code, 2, noDelete.stdout + noDelete.stderr);
  assert.match(noDelete.stderr, new RegExp(`lacks what the producer needs: DELETE on public.emp_cdc\\n`));
  assert.match(noDelete.stderr, new RegExp(`fix: as an administrator of the source database run: GRANT DELETE ON TABLE public.emp_cdc TO ${names.pgtunnel_producer}; \\(docs/security\\.md`));
  await query(db.sourceUrl, `GRANT DELETE ON public.emp_cdc TO ${names.pgtunnel_producer}`);

  await query(db.targetUrl, `REVOKE UPDATE ON pgtunnel.consumer_offsets FROM ${names.pgtunnel_apply}`);
  const noUpdate = await runCli(['run'], runtimeEnv);
  assert.equal(noUpdate.code, 2, noUpdate.stdout + noUpdate.stderr);
  assert.match(noUpdate.stderr, new RegExp(`GRANT UPDATE ON TABLE pgtunnel.consumer_offsets TO ${names.pgtunnel_apply}; \\(docs/security\\.md`));
  assert.doesNotMatch(noUpdate.stderr, /GRANT (SELECT|INSERT|DELETE)/, 'only what is missing is named');
});
