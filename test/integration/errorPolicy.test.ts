import assert from 'node:assert/strict';
import { test } from 'node:test';
import { query, tunnelDatabases, waitFor } from '../helpers/services.js';
import { runCli, TunnelProcess } from '../helpers/tunnelProcess.js';

const insert = (id: number) => `INSERT INTO employees VALUES (${id}, 'Bug', 'Path', '2010-01-01', 'Oslo', 50000)`;

test('a bug in the write path stops the consumer with its stack; nothing goes to the DLQ, nothing is lost', { timeout: 120_000 }, async (t) => {
  const db = await tunnelDatabases(t);
  // Every write throws a plain TypeError, as a bug in the write path would (src/pipeline/failpoints.ts).
  const buggy = await TunnelProcess.start(t, { ...db.env, PGTUNNEL_FAILPOINTS: 'apply.write:1:throw' });
  await query(db.sourceUrl, `${insert(1)}; ${insert(2)}; ${insert(3)}`);
  await query(db.sourceUrl, insert(4));
  await waitFor('the tunnel to stop on the bug', async () => buggy.child.exitCode !== null, 60_000, 100);
  assert.equal(buggy.child.exitCode, 4, buggy.output);
  assert.match(buggy.output, /consumer stopped: failpoint apply\.write/);
  assert.match(buggy.output, /unexpected error \(a bug\? please report it with this stack\):\nTypeError: failpoint apply\.write[^\n]*\n\s+at /);
  assert.deepEqual(await query(db.targetUrl, 'SELECT emp_id FROM employees'), [], 'the failed set was not applied');
  const letters = await runCli(['dlq', 'list', '--json', '--all'], db.env);
  assert.equal(letters.code, 0, letters.stderr);
  assert.deepEqual(JSON.parse(letters.stdout), [], 'a bug is never bisected into dead letters');

  // Fixed (no fault point): the same records apply, none was skipped.
  const fixed = await TunnelProcess.start(t, db.env);
  await waitFor('every row applied', async () => (await query(db.targetUrl, 'SELECT count(*)::int AS n FROM employees'))[0]!.n === 4, 30_000, 100);
  await fixed.stop();
});
