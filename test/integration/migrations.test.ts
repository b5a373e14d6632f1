import assert from 'node:assert/strict';
import { test } from 'node:test';
import { migrate, readMigrations } from '../../src/capture/migrations.js';
import { classify, isRefusedChange, isTableLevel, sqlState, TunnelError } from '../../src/errors.js';
import { connect } from '../../src/pg.js';
import { onCleanup, query, tunnelDatabases } from '../helpers/services.js';
import { runCli } from '../helpers/tunnelProcess.js';

test('a database a newer pgtunnel migrated is refused, naming its migration and the fix', { timeout: 120_000 }, async (t) => {
  const db = await tunnelDatabases(t);
  assert.equal((await runCli(['install'], db.env)).code, 0);
  const known = readMigrations('target');
  const future = known.at(-1)!.version + 1;
  await query(db.targetUrl, "INSERT INTO pgtunnel.migrations (scope, version, name) VALUES ('target', $1, 'from_a_newer_pgtunnel')", [future]);
  const before = await query(db.targetUrl, 'SELECT scope, version FROM pgtunnel.migrations ORDER BY scope, version');

  const client = await connect(db.targetUrl, 'target');
  onCleanup(t, () => client.end());
  await assert.rejects(migrate(client, 'target', known), (err: unknown) => {
    assert.ok(err instanceof TunnelError);
    assert.equal(err.code, 'PGT_SCHEMA_NEWER');
    assert.match(err.message, new RegExp(`${String(future).padStart(6, '0')}_from_a_newer_pgtunnel`));
    assert.match(err.hint ?? '', /version that installed it/);
    return true;
  });
  const start = await runCli(['run', '--once'], db.env);
  assert.equal(start.code, 4, start.stderr);
  assert.match(start.stderr, /newer than this pgtunnel/);
  assert.deepEqual(await query(db.targetUrl, 'SELECT scope, version FROM pgtunnel.migrations ORDER BY scope, version'), before, 'nothing was migrated');
});

test("PostgreSQL's errors are read through node-postgres's DatabaseError, also once classified", { timeout: 60_000 }, async (t) => {
  const db = await tunnelDatabases(t);
  const client = await connect(db.targetUrl, 'target');
  onCleanup(t, () => client.end());
  const refused = await client.query('SELECT 1 / 0').catch((err: unknown) => err);
  assert.equal(sqlState(refused), '22012');
  assert.ok(isRefusedChange(refused) && isRefusedChange(classify(refused)));
  const missing = await client.query('SELECT * FROM no_such_table').catch((err: unknown) => err);
  assert.ok(isTableLevel(missing) && isTableLevel(classify(missing)) && !isRefusedChange(missing));
  assert.equal(sqlState(Object.assign(new Error('not from PostgreSQL'), { code: '22012' })), undefined);
});
