import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { test, type TestContext } from 'node:test';
import pg from 'pg';
import { onCleanup, query, tunnelDatabases, waitFor, withStackPassword, type TunnelEnv } from '../helpers/services.js';
import { InProcessTunnel, installInProcess } from '../helpers/inProcessTunnel.js';
import { runCli } from '../helpers/tunnelProcess.js';
import { topicRecords } from '../helpers/oracles.js';

/**
 * Application writers as a role that may write employees but owns nothing of pgtunnel's: they must
 * never see an error from capture, whatever DDL runs on the table meanwhile.
 */
class Writers {
  failures: string[] = [];
  writes = 0;
  private running = true;
  private readonly loops: Promise<void>[];

  constructor(url: string, count: number) {
    this.loops = Array.from({ length: count }, (_, i) => this.loop(url, i));
  }

  private async loop(url: string, n: number): Promise<void> {
    const client = new pg.Client({ connectionString: url });
    client.on('error', () => {});
    await client.connect();
    try {
      for (let i = 0; this.running; i++) {
        try {
          if (i % 3 === 0) await client.query("INSERT INTO employees (first_name, salary) VALUES ($1, 20000)", [`w${n}-${i}`]);
          else if (i % 3 === 1) await client.query('UPDATE employees SET salary = salary + 1 WHERE emp_id = (SELECT max(emp_id) FROM employees)');
          else await client.query('DELETE FROM employees WHERE emp_id = (SELECT min(emp_id) FROM employees) AND $1::int > 0', [n + 1]);
          this.writes++;
        } catch (err) {
          this.failures.push((err as Error).message);
        }
      }
    } finally {
      await client.end();
    }
  }

  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.loops);
  }
}

async function appRole(db: TunnelEnv): Promise<string> {
  const role = `app_${db.topicPrefix}`;
  await query(db.sourceUrl, `CREATE ROLE ${role} LOGIN`);
  await withStackPassword(db.sourceUrl, [role]);
  await query(db.sourceUrl, `GRANT SELECT, INSERT, UPDATE, DELETE ON employees TO ${role}; GRANT USAGE ON SEQUENCE employees_emp_id_seq TO ${role}`);
  const url = new URL(db.sourceUrl);
  url.username = role;
  return url.toString();
}

/** Lets the writers run across one DDL statement, with writes before and after it. */
async function during(writers: Writers, ddl: () => Promise<unknown>): Promise<void> {
  const before = writers.writes;
  await waitFor('writes before the DDL', async () => writers.writes >= before + 20);
  await ddl();
  const after = writers.writes;
  await waitFor('writes after the DDL', async () => writers.writes >= after + 20);
}

// trigger capture follows DDL by its event trigger, logical capture by pgoutput's relation messages: one schema path
for (const capture of ['trigger', 'logical'] as const) {
  test(`${capture === 'logical' ? 'capture: logical, ' : ''}ADD, DROP, RENAME COLUMN and ALTER TYPE under concurrent writers: no failed write, every change arrives, the target follows`, { timeout: 180_000 }, (t) => evolves(t, capture));
}

async function evolves(t: TestContext, capture: 'trigger' | 'logical'): Promise<void> {
  const db = await tunnelDatabases(t);
  const env = { ...db.env, PGTUNNEL_CAPTURE: capture };
  await query(db.sourceUrl, "INSERT INTO employees (first_name, last_name, city, salary) SELECT 'seed' || i, 'L' || i, 'C', 30000 FROM generate_series(1, 200) i");
  const tunnel = await InProcessTunnel.start(t, env);
  const writers = new Writers(await appRole(db), 3);
  onCleanup(t, () => writers.stop());

  await during(writers, () => query(db.sourceUrl, 'ALTER TABLE employees ADD COLUMN email text'));
  await query(db.sourceUrl, "UPDATE employees SET email = 'e' || emp_id || '@example.com' WHERE emp_id % 2 = 0");
  await during(writers, () => query(db.sourceUrl, 'ALTER TABLE employees DROP COLUMN city'));
  await during(writers, () => query(db.sourceUrl, 'ALTER TABLE employees RENAME COLUMN last_name TO surname'));
  await during(writers, () => query(db.sourceUrl, 'ALTER TABLE employees ALTER COLUMN salary TYPE bigint'));
  await query(db.sourceUrl, 'UPDATE employees SET salary = 9007199254740993 WHERE emp_id % 7 = 0');
  // a renamed column is a new column to the target: each row's value arrives with its next change
  await query(db.sourceUrl, 'UPDATE employees SET surname = surname');
  await writers.stop();
  assert.deepEqual(writers.failures, [], 'no source write failed');
  assert.ok(writers.writes > 100);

  await tunnel.waitForEqual();
  const columns = await query<{ column_name: string }>(db.targetUrl, "SELECT column_name FROM information_schema.columns WHERE table_name = 'employees' ORDER BY ordinal_position");
  assert.deepEqual(columns.map((c) => c.column_name).sort(), ['city', 'dob', 'email', 'emp_id', 'first_name', 'last_name', 'salary', 'surname'], 'added and renamed columns added; dropped ones kept');
  // the target's salary followed the source's type change, so 2^53+1 arrived exactly and nothing was refused
  const salary = await query<{ t: string }>(db.targetUrl, "SELECT data_type AS t FROM information_schema.columns WHERE table_name = 'employees' AND column_name = 'salary'");
  assert.equal(salary[0]!.t, 'bigint');
  assert.deepEqual(tunnel.events.of('pgtunnel:dead-lettered'), [], 'no dead letters');
  // each of the four DDL statements is a new capture schema version (shown by status and the dashboard)
  assert.deepEqual(await statusVersions(env), [5, null]);

  // changes while the tunnel is down, across a DROP and a RENAME: the restart reads each with the columns
  // it was written with (logical capture replays them from the slot under their own relation messages)
  await tunnel.stop();
  await query(db.sourceUrl, 'UPDATE employees SET salary = salary + 1 WHERE emp_id % 3 = 0');
  await query(db.sourceUrl, 'ALTER TABLE employees DROP COLUMN dob');
  await query(db.sourceUrl, "UPDATE employees SET first_name = first_name || '+' WHERE emp_id % 3 = 1");
  await query(db.sourceUrl, 'ALTER TABLE employees RENAME COLUMN first_name TO given_name');
  await query(db.sourceUrl, 'UPDATE employees SET given_name = given_name');
  const again = await InProcessTunnel.start(t, env);
  await again.waitForEqual();
  assert.deepEqual(again.events.of('pgtunnel:dead-lettered'), [], 'no dead letters after the restart');
  assert.deepEqual(await statusVersions(env), [7, null]);
  const records = await topicRecords(`${db.topicPrefix}.public.employees`);
  const versions = new Set(records.map((r) => (r.value?.source as { schema_version?: number } | undefined)?.schema_version).filter((v): v is number => v !== undefined));
  assert.deepEqual([...versions].sort((x, y) => x - y), [1, 2, 3, 4, 5, 6, 7], 'each change says which version wrote it');
  await again.stop();
}

/**
 * Starts a tunnel while ALTER COLUMN salary TYPE bigint holds its locks: on the source table and, through the
 * event trigger's sync_capture, on emp_cdc (both rewritten). Commits the DDL once a read of the tunnel waits for
 * `relation` with a statement like `statement`: that read's snapshot may predate the rewrite it then reads.
 */
async function startBehindRewrite(t: TestContext, db: TunnelEnv, relation: string, statement: string): Promise<InProcessTunnel> {
  const ddl = new pg.Client({ connectionString: db.sourceUrl });
  await ddl.connect();
  onCleanup(t, () => ddl.end());
  await ddl.query('BEGIN');
  await ddl.query('ALTER TABLE employees ALTER COLUMN salary TYPE bigint');
  const starting = InProcessTunnel.start(t, db.env);
  starting.catch(() => {});
  await waitFor(`a read of the tunnel waiting for the DDL's lock on ${relation}`, async () => (await query(db.sourceUrl,
    'SELECT 1 FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.relation = $1::regclass AND NOT l.granted AND a.query LIKE $2', [relation, statement])).length > 0, 60_000);
  await ddl.query('COMMIT');
  return starting;
}

/**
 * A page read waiting for emp_cdc while sync_capture rewrites it: COPY takes its snapshot before it locks the
 * table, so the rewritten rows were all invisible to it, the page came back empty, the batch completed and its
 * checkpoint deleted changes never published. The deletes among them left rows in the target: the DDL test
 * above, where the writers' last changes before ALTER TYPE met such a read, ended 2–3 rows over the source.
 */
test('changes committed before a rewriting ALTER COLUMN TYPE arrive when the page read waits for its lock on the change table', { timeout: 180_000 }, async (t) => {
  const db = await tunnelDatabases(t);
  await query(db.sourceUrl, "INSERT INTO employees (first_name, salary) SELECT 'seed' || i, 30000 FROM generate_series(1, 20) i");
  const first = await InProcessTunnel.start(t, db.env);
  await first.waitForEqual();
  await first.stop();
  // committed while no producer runs: the restarted producer's first page holds them
  await query(db.sourceUrl, "DELETE FROM employees WHERE emp_id <= 5; UPDATE employees SET salary = salary + 1 WHERE emp_id > 15; INSERT INTO employees (first_name, salary) VALUES ('late', 1)");
  const again = await startBehindRewrite(t, db, 'emp_cdc', 'COPY%');
  await again.waitForEqual(30_000);
  assert.deepEqual(await query(db.targetUrl, 'SELECT emp_id FROM employees WHERE emp_id <= 5'), [], 'the deletes arrived');
  await again.stop();
});

/**
 * The snapshot's chunk transaction (REPEATABLE READ) took its snapshot with its first statement and locked the
 * source table only when it read it: behind a rewriting ALTER TYPE, the table read empty and the snapshot ended.
 */
test('a snapshot whose chunk read waits for a rewriting ALTER COLUMN TYPE of the source table still reads every row', { timeout: 180_000 }, async (t) => {
  const db = await tunnelDatabases(t);
  await query(db.sourceUrl, "INSERT INTO employees (first_name, salary) SELECT 'seed' || i, 30000 FROM generate_series(1, 50) i");
  await installInProcess(db.env);
  const tunnel = await startBehindRewrite(t, db, 'employees', '%');
  await tunnel.waitForEqual(30_000);
  assert.equal((await query(db.targetUrl, 'SELECT 1 FROM employees')).length, 50);
  await tunnel.stop();
});

/** The capture schema version status shows, and the registered one. */
async function statusVersions(env: Record<string, string>): Promise<unknown[]> {
  const table = JSON.parse((await runCli(['status', '--json'], env)).stdout).tables[0];
  return [table.schemaVersion, table.registeredVersion];
}

test('without a DDL event trigger: writes never fail, status names the columns not captured, and install adopts them', { timeout: 180_000 }, async (t) => {
  const db = await tunnelDatabases(t);
  assert.equal((await runCli(['install'], db.env)).code, 0);
  // as where pgtunnel is not a superuser: no event trigger; install regenerates capture to match by name
  await query(db.sourceUrl, 'DROP EVENT TRIGGER pgtunnel_ddl');
  assert.equal((await runCli(['install'], db.env)).code, 0);
  const tunnel = await InProcessTunnel.start(t, db.env);
  const app = await appRole(db);
  const writers = new Writers(app, 3);
  onCleanup(t, () => writers.stop());

  await during(writers, () => query(db.sourceUrl, 'ALTER TABLE employees ADD COLUMN email text'));
  await during(writers, () => query(db.sourceUrl, 'ALTER TABLE employees DROP COLUMN city'));
  await during(writers, () => query(db.sourceUrl, 'ALTER TABLE employees RENAME COLUMN last_name TO surname'));
  await writers.stop();
  assert.deepEqual(writers.failures, [], 'no source write failed');

  const degraded = await waitFor('status naming the uncaptured columns', async () => {
    const status = await runCli(['status'], db.env);
    return /email/.test(status.stdout) && /surname/.test(status.stdout) && /pgtunnel install/.test(status.stdout) ? status.stdout : undefined;
  }, 10_000, 200);
  assert.match(degraded, /not captured/);

  // no writer can forge change rows
  await assert.rejects(query(app, "INSERT INTO emp_cdc (emp_id, action) VALUES (1, 'DELETE')"), /permission denied/);

  assert.equal((await runCli(['install'], db.env)).code, 0);
  await query(db.sourceUrl, "INSERT INTO employees (first_name, email, surname) VALUES ('adopted', 'a@b.c', 'S')");
  await waitFor('the adopted columns in the target', async () => (await query<{ email: string; surname: string }>(db.targetUrl, "SELECT email, surname FROM employees WHERE first_name = 'adopted'"))[0]?.email === 'a@b.c');
  await query(db.sourceUrl, 'UPDATE employees SET surname = surname');
  await tunnel.waitForEqual();
  await tunnel.stop();
});

test('a change table name that points at a table pgtunnel did not create is refused, and uninstall drops only its own objects', { timeout: 120_000 }, async (t) => {
  const db = await tunnelDatabases(t);
  await query(db.sourceUrl, 'CREATE TABLE audit (id int)');
  const clash = await runCli(['install', '--config', writeConfig(db, 'tables: [{ name: employees, changeTable: audit }]')], db.env);
  assert.equal(clash.code, 2, clash.stderr);
  assert.match(clash.stderr, /audit .*pgtunnel did not create/);
  const installed = await runCli(['install'], db.env);
  assert.equal(installed.code, 0, installed.stderr);
  const moved = await runCli(['install', '--config', writeConfig(db, 'tables: [{ name: employees, changeTable: audit }]')], db.env);
  assert.equal(moved.code, 2, moved.stderr);
  assert.match(moved.stderr, /captured into the change table emp_cdc/);
  const self = await runCli(['uninstall', '--config', writeConfig(db, 'tables: [{ name: employees, changeTable: employees }]')], db.env);
  assert.equal(self.code, 2, 'a table named as its own change table is a config error, so uninstall never drops it');
  const uninstall = await runCli(['uninstall'], db.env);
  assert.equal(uninstall.code, 0, uninstall.stderr);
  const left = await query<{ t: string | null; a: string | null }>(db.sourceUrl, "SELECT to_regclass('employees')::text AS t, to_regclass('audit')::text AS a");
  assert.deepEqual(left[0], { t: 'employees', a: 'audit' });
  assert.equal((await query(db.sourceUrl, "SELECT 1 FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'pgtunnel' AND p.proname LIKE 'employees_%'")).length, 0);
});

function writeConfig(db: TunnelEnv, yaml: string): string {
  const file = `${db.home}/pgtunnel-${Math.random().toString(36).slice(2)}.yaml`;
  writeFileSync(file, yaml);
  return file;
}
