import assert from 'node:assert/strict';
import { test } from 'node:test';
import { query, tunnelDatabases, waitFor, withStackPassword, type TunnelEnv } from '../helpers/services.js';
import { InProcessTunnel } from '../helpers/inProcessTunnel.js';
import { runCli } from '../helpers/tunnelProcess.js';

/**
 * The application's own role: it owns employees and may create in public, and holds no grant on
 * anything of pgtunnel's. Its migrations run after a superuser install (issue 19).
 */
async function appOwner(db: TunnelEnv): Promise<string> {
  const role = `app_${db.topicPrefix}`;
  await query(db.sourceUrl, `CREATE ROLE ${role} LOGIN`);
  await withStackPassword(db.sourceUrl, [role]);
  await query(db.sourceUrl, `ALTER TABLE employees OWNER TO ${role}; GRANT CREATE ON SCHEMA public TO ${role}`);
  const url = new URL(db.sourceUrl);
  url.username = role;
  return url.toString();
}

/** Writes one row as the application and waits for it in the target; returns the target's row. */
async function arrives(db: TunnelEnv, app: string, marker: string, extra: Record<string, string> = {}): Promise<Record<string, unknown>> {
  const columns = ['first_name', ...Object.keys(extra)];
  await query(app, `INSERT INTO employees (${columns.join(', ')}) VALUES (${columns.map((_, i) => `$${i + 1}`).join(', ')})`, [marker, ...Object.values(extra)]);
  return waitFor(`the row written after "${marker}" in the target`, async () => {
    const rows = await query<Record<string, unknown>>(db.targetUrl, 'SELECT to_jsonb(e) AS row FROM employees e WHERE first_name = $1', [marker]);
    return rows[0]?.row as Record<string, unknown> | undefined;
  });
}

test('an application role with no pgtunnel grant: every migration succeeds and every write after it arrives', { timeout: 240_000 }, async (t) => {
  const db = await tunnelDatabases(t);
  const app = await appOwner(db);
  const tunnel = await InProcessTunnel.start(t, db.env);
  const triggers = await query<{ evtname: string }>(db.sourceUrl, "SELECT evtname FROM pg_event_trigger WHERE evtname LIKE 'pgtunnel%' ORDER BY 1");
  assert.deepEqual(triggers.map((r) => r.evtname), ['pgtunnel_ddl', 'pgtunnel_ddl_drop'], 'a superuser install follows DDL');
  await assert.rejects(query(app, 'SELECT 1 FROM pgtunnel.captures'), /permission denied for schema pgtunnel/);

  // tables of its own, which pgtunnel does not capture: every ALTER TABLE used to fail here
  await query(app, 'CREATE TABLE app_side (id int PRIMARY KEY, v text)');
  await query(app, 'ALTER TABLE app_side ADD COLUMN w int');
  await query(app, 'ALTER TABLE app_side RENAME COLUMN v TO v2');
  await query(app, 'DROP TABLE app_side');
  await arrives(db, app, 'after uncaptured DDL');

  await query(app, 'ALTER TABLE employees ADD COLUMN nickname text');
  assert.equal((await arrives(db, app, 'after add', { nickname: 'nick' })).nickname, 'nick');
  await query(app, 'ALTER TABLE employees RENAME COLUMN last_name TO surname');
  assert.equal((await arrives(db, app, 'after rename', { surname: 'S' })).surname, 'S');
  await query(app, 'ALTER TABLE employees DROP COLUMN city');
  await arrives(db, app, 'after drop');
  await query(app, 'ALTER TABLE employees ALTER COLUMN salary TYPE bigint');
  await arrives(db, app, 'after alter type', { salary: '9007199254740993' });
  const exact = await query<{ s: string }>(db.targetUrl, "SELECT salary::text AS s FROM employees WHERE first_name = 'after alter type'");
  assert.equal(exact[0]!.s, '9007199254740993');

  // DROP … CASCADE removes a column with no ALTER TABLE: capture must follow it or every write fails
  await query(app, "CREATE DOMAIN app_code AS text CHECK (VALUE <> '')");
  await query(app, 'ALTER TABLE employees ADD COLUMN code app_code');
  assert.equal((await arrives(db, app, 'with a domain column', { code: 'c1' })).code, 'c1');
  await query(app, 'DROP DOMAIN app_code CASCADE');
  await arrives(db, app, 'after DROP DOMAIN CASCADE');
  await query(app, "CREATE TYPE app_mood AS ENUM ('calm', 'busy')");
  await query(app, 'ALTER TABLE employees ADD COLUMN mood app_mood');
  assert.equal((await arrives(db, app, 'with an enum column', { mood: 'busy' })).mood, 'busy');
  await query(app, 'DROP TYPE app_mood CASCADE');
  await arrives(db, app, 'after DROP TYPE CASCADE');
  await query(app, 'UPDATE employees SET salary = salary + 1');
  await query(app, 'DELETE FROM employees WHERE first_name = $1', ['after drop']);

  const captured = await query<{ column_name: string }>(db.sourceUrl,
    "SELECT column_name FROM information_schema.columns WHERE table_name = 'emp_cdc' AND column_name IN ('code', 'mood', 'city', 'nickname', 'surname') ORDER BY 1");
  assert.deepEqual(captured.map((c) => c.column_name), ['nickname', 'surname'], 'the change table followed every column change');
  const problems = await query<{ by_name: boolean; ddl_problem: string | null }>(db.sourceUrl, 'SELECT by_name, ddl_problem FROM pgtunnel.captures');
  assert.deepEqual(problems, [{ by_name: false, ddl_problem: null }], 'capture followed every DDL directly');
  await tunnel.waitForEqual();
  assert.deepEqual(JSON.parse((await runCli(['dlq', 'list', '--json'], db.env)).stdout), []);
  await tunnel.stop();
});

test('a DDL the event trigger cannot follow: the statement succeeds, capture matches by name, status says so and install repairs it', { timeout: 180_000 }, async (t) => {
  const db = await tunnelDatabases(t);
  const app = await appOwner(db);
  const tunnel = await InProcessTunnel.start(t, db.env);
  // a source column named like one of the change table's own (an identity) cannot be adopted
  await query(app, 'ALTER TABLE employees ADD COLUMN change_id text');
  const problem = await query<{ by_name: boolean; ddl_problem: string | null }>(db.sourceUrl, 'SELECT by_name, ddl_problem FROM pgtunnel.captures');
  assert.equal(problem[0]!.by_name, true);
  assert.ok(problem[0]!.ddl_problem, 'the reason is recorded');
  // by name, even a DROP and a RENAME the trigger does not get to follow never break a write
  await query(app, 'ALTER TABLE employees DROP COLUMN city');
  await query(app, 'ALTER TABLE employees RENAME COLUMN last_name TO surname');
  await arrives(db, app, 'by name');
  const status = await runCli(['status'], db.env);
  assert.match(status.stdout, /capture matches columns by name: a DDL could not be followed \(.+\) — run `pgtunnel install`/);
  assert.equal(JSON.parse((await runCli(['status', '--json'], db.env)).stdout).tables[0].captureProblem, problem[0]!.ddl_problem);

  await query(app, 'ALTER TABLE employees DROP COLUMN change_id');
  const install = await runCli(['install'], db.env);
  assert.equal(install.code, 0, install.stdout + install.stderr);
  assert.deepEqual(await query(db.sourceUrl, 'SELECT by_name, ddl_problem FROM pgtunnel.captures'), [{ by_name: false, ddl_problem: null }]);
  assert.doesNotMatch((await runCli(['status'], db.env)).stdout, /matches columns by name/);
  assert.equal((await arrives(db, app, 'repaired', { surname: 'R' })).surname, 'R');
  await tunnel.stop();
});
