import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Producer, stringSerializers } from '@platformatic/kafka';
import pg from 'pg';
import { query, services, tunnelDatabases, waitFor, withStackPassword, type TunnelEnv } from '../helpers/services.js';
import { InProcessTunnel } from '../helpers/inProcessTunnel.js';
import { runCli } from '../helpers/tunnelProcess.js';
import { quoteLiteral } from '../../src/pg.js';

const count = async (url: string) => (await query<{ n: number }>(url, 'SELECT count(*)::int AS n FROM employees'))[0]!.n;

function as(role: string, url: string): string {
  const u = new URL(url);
  u.username = role;
  return u.toString();
}

/** What install left in the source: schema, event triggers, functions, change table, capture triggers. */
async function leftovers(db: TunnelEnv): Promise<string[]> {
  const rows = await query<{ what: string }>(db.sourceUrl,
    `SELECT 'schema ' || nspname AS what FROM pg_namespace WHERE nspname = 'pgtunnel'
     UNION ALL SELECT 'event trigger ' || evtname FROM pg_event_trigger WHERE evtname LIKE 'pgtunnel%'
     UNION ALL SELECT 'function ' || p.oid::regprocedure FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'pgtunnel'
     UNION ALL SELECT 'table ' || relname FROM pg_class WHERE relname = 'emp_cdc'
     UNION ALL SELECT 'trigger ' || tgname FROM pg_trigger WHERE tgname LIKE 'pgtunnel%'`);
  return rows.map((r) => r.what);
}

test('a role with USAGE on pgtunnel cannot attach capture to its own table, and with EXECUTE forges neither changes nor a truncate', { timeout: 120_000 }, async (t) => {
  const db = await tunnelDatabases(t);
  const mallory = `mallory_${db.topicPrefix}`;
  await query(db.sourceUrl, `CREATE ROLE ${mallory} LOGIN; GRANT CREATE ON SCHEMA public TO ${mallory}`);
  await withStackPassword(db.sourceUrl, [mallory]);
  // default privileges of the installer: install takes EXECUTE back, and warns about the table grants
  await query(db.sourceUrl, `ALTER DEFAULT PRIVILEGES GRANT EXECUTE ON FUNCTIONS TO ${mallory}; ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO ${mallory}`);
  const install = await runCli(['install'], db.env);
  assert.equal(install.code, 0, install.stdout + install.stderr);
  assert.match(install.stdout + install.stderr, new RegExp(`default privileges of \\S+ grant SELECT on new tables to ${mallory}`));
  await query(db.sourceUrl, `GRANT USAGE ON SCHEMA pgtunnel TO ${mallory}`);
  const executable = await query(db.sourceUrl,
    "SELECT p.oid::regprocedure FROM pg_proc p WHERE p.pronamespace = 'pgtunnel'::regnamespace AND (has_function_privilege($1, p.oid, 'EXECUTE') OR has_function_privilege('public', p.oid, 'EXECUTE'))", [mallory]);
  assert.deepEqual(executable, [], 'nobody but the installer may execute a pgtunnel function');

  const prefix = (await query<{ p: string }>(db.sourceUrl, 'SELECT function_prefix AS p FROM pgtunnel.captures'))[0]!.p;
  const app = as(mallory, db.sourceUrl);
  await query(app, 'CREATE TABLE decoy (emp_id int, first_name text, last_name text, city text, salary numeric, dob date)');
  await assert.rejects(query(app, `CREATE TRIGGER forge AFTER INSERT ON decoy REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION pgtunnel."${prefix}_ins"()`),
    /permission denied for function/);

  // granted EXECUTE anyway (by hand here), the functions refuse any table but their own
  await query(db.sourceUrl, `GRANT EXECUTE ON FUNCTION pgtunnel."${prefix}_ins"(), pgtunnel."${prefix}_trunc"() TO ${mallory}`);
  await query(app, `CREATE TRIGGER forge AFTER INSERT ON decoy REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION pgtunnel."${prefix}_ins"()`);
  await query(app, `CREATE TRIGGER forge_truncate AFTER TRUNCATE ON decoy FOR EACH STATEMENT EXECUTE FUNCTION pgtunnel."${prefix}_trunc"()`);
  await assert.rejects(query(app, "INSERT INTO decoy (emp_id, first_name) VALUES (1, 'forged')"), /capture function of another table fired on public\.decoy/);
  await assert.rejects(query(app, 'TRUNCATE decoy'), /capture function of another table/);
  const forged = await query<{ changes: number; truncates: number }>(db.sourceUrl,
    'SELECT (SELECT count(*)::int FROM emp_cdc) AS changes, (SELECT count(*)::int FROM pgtunnel.truncates) AS truncates');
  assert.deepEqual(forged, [{ changes: 0, truncates: 0 }]);

  // the captured table itself still captures
  await query(db.sourceUrl, "INSERT INTO employees (first_name) VALUES ('real')");
  assert.equal((await query<{ n: number }>(db.sourceUrl, 'SELECT count(*)::int AS n FROM emp_cdc'))[0]!.n, 1);
});

test('a truncate is honoured once per partition; uninstall of the last table leaves nothing behind; a reinstall truncates', { timeout: 180_000 }, async (t) => {
  const db = await tunnelDatabases(t);
  await query(db.sourceUrl, "INSERT INTO employees (first_name) SELECT 'r' || i FROM generate_series(1, 20) i");
  const tunnel = await InProcessTunnel.start(t, db.env);
  await waitFor('the snapshot in the target', async () => (await count(db.targetUrl)) === 20);
  await query(db.sourceUrl, 'TRUNCATE employees');
  await waitFor('the truncate applied', async () => (await count(db.targetUrl)) === 0);
  await query(db.sourceUrl, "INSERT INTO employees (first_name) SELECT 'after' || i FROM generate_series(1, 5) i");
  await waitFor('the rows after the truncate', async () => (await count(db.targetUrl)) === 5);

  // the genuine truncate, written to every partition again: recorded by the source, yet not honoured twice
  const recorded = await query<{ txid: string; change_id: string }>(db.sourceUrl, 'SELECT txid::text, change_id::text FROM pgtunnel.truncates');
  assert.equal(recorded.length, 1);
  const topic = `${db.topicPrefix}.public.employees`;
  const source = `{"version":"0","connector":"pgtunnel","name":"x","ts_ms":1,"snapshot":"false","db":"db1","schema":"public","table":"employees","txId":${recorded[0]!.txid},"lsn":${recorded[0]!.change_id},"schema_version":1}`;
  const producer = new Producer({ clientId: 'replayer', bootstrapBrokers: [services().brokers], serializers: stringSerializers });
  await producer.send({ messages: [0, 1, 2].map((partition) => ({ topic, partition, value: `{"before":null,"after":null,"source":${source},"op":"t","ts_ms":1}` })) });
  await producer.close();
  await query(db.sourceUrl, "INSERT INTO employees (first_name) VALUES ('after the replay')");
  await waitFor('the change after the replayed truncate', async () => (await count(db.targetUrl)) === 6);
  const letters = JSON.parse((await runCli(['dlq', 'list', '--json'], db.env)).stdout) as { message: string }[];
  assert.equal(letters.length, 3);
  assert.ok(letters.every((l) => /already honoured/.test(l.message)), JSON.stringify(letters));

  // a record published (below the checkpoint) more than 7 days ago is pruned by the next truncate
  await query(db.sourceUrl, "UPDATE pgtunnel.truncates SET recorded_at = now() - interval '8 days'");
  await query(db.sourceUrl, 'TRUNCATE employees');
  await waitFor('the second truncate applied', async () => (await count(db.targetUrl)) === 0);
  const kept = await query<{ change_id: string }>(db.sourceUrl, 'SELECT change_id::text FROM pgtunnel.truncates');
  assert.equal(kept.length, 1);
  assert.notEqual(kept[0]!.change_id, recorded[0]!.change_id, 'only the new truncate is recorded');
  await tunnel.stop();

  // keeping the schema, the truncate record still goes with its table; a reinstall's change ids restart
  assert.equal((await runCli(['uninstall', '--keep-schema'], db.env)).code, 0);
  assert.equal((await query<{ n: number }>(db.sourceUrl, 'SELECT count(*)::int AS n FROM pgtunnel.truncates'))[0]!.n, 0);
  assert.equal((await runCli(['install'], db.env)).code, 0);
  await query(db.sourceUrl, 'TRUNCATE employees');
  await query(db.sourceUrl, 'TRUNCATE employees');

  const uninstall = await runCli(['uninstall'], db.env);
  assert.equal(uninstall.code, 0, uninstall.stdout + uninstall.stderr);
  assert.match(uninstall.stdout, /schema pgtunnel and its DDL event triggers removed/);
  assert.deepEqual(await leftovers(db), []);
  // and DDL on the former captured table meets no trace of pgtunnel
  await query(db.sourceUrl, 'ALTER TABLE employees ADD COLUMN later text');
});

test('quoteLiteral means the same text whatever standard_conforming_strings says', { timeout: 30_000 }, async (t) => {
  const db = await tunnelDatabases(t, { createTables: false });
  const client = new pg.Client({ connectionString: db.sourceUrl });
  await client.connect();
  try {
    for (const text of ['plain', "it's", 'back\\slash', "both\\'\\\\", '%s $1 "q"']) {
      for (const setting of ['on', 'off']) {
        await client.query(`SET standard_conforming_strings = ${setting}`);
        const { rows } = await client.query<{ v: string }>(`SELECT ${quoteLiteral(text)}::text AS v`);
        assert.equal(rows[0]?.v, text, `${text} with standard_conforming_strings = ${setting}`);
      }
    }
  } finally {
    await client.end();
  }
});
