import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import { topicRecords } from '../helpers/oracles.js';
import { query, tunnelDatabases, waitFor } from '../helpers/services.js';
import { runCli, TunnelProcess } from '../helpers/tunnelProcess.js';

type Row = { emp_id: number; first_name: string; last_name: string; dob: string; city: string; salary: number };

const selectRow = "SELECT emp_id, first_name, last_name, to_char(dob, 'YYYY-MM-DD') AS dob, city, salary FROM employees WHERE emp_id = $1";

/** Commits a change on the source, then measures until the target shows what `expect` wants. */
async function timeToTarget(sourceUrl: string, targetUrl: string, sql: string, id: number, expect: (row: Row | undefined) => boolean): Promise<number> {
  await query(sourceUrl, sql);
  const committed = Date.now();
  await waitFor(`target row ${id}`, async () => expect((await query<Row>(targetUrl, selectRow, [id]))[0]), 10_000, 5);
  return Date.now() - committed;
}

// both captures keep the promise; logical capture's run is smaller (the snapshot is not what it proves)
for (const [capture, rows] of [['trigger', 30000], ['logical', 5000]] as const) {
  test(`${capture === 'logical' ? 'capture: logical, ' : ''}snapshot of many rows, then every kind of change reaches the target in under 1 s`, { timeout: 180_000 }, (t) => promise(t, capture, rows));
}

async function promise(t: TestContext, capture: 'trigger' | 'logical', rows: number): Promise<void> {
  const db = await tunnelDatabases(t);
  const env = { ...db.env, PGTUNNEL_CAPTURE: capture };
  await query(
    db.sourceUrl,
    `INSERT INTO employees (first_name, last_name, dob, city, salary)
     SELECT 'f' || i, 'l' || i, DATE '1970-01-01' + i % 10000, 'c' || i % 50, i % 20000 FROM generate_series(1, $1::int) i`,
    [rows],
  );
  const tunnel = await TunnelProcess.start(t, { ...env, PGTUNNEL_SNAPSHOT_CHUNK_SIZE: '4000' });
  await waitFor('the snapshot in the target', async () => (await query<{ n: number }>(db.targetUrl, 'SELECT count(*)::int AS n FROM employees'))[0]!.n === rows, 60_000);
  const verified = await runCli(['verify'], env);
  assert.equal(verified.code, 0, verified.stdout + verified.stderr);
  assert.match(verified.stdout, new RegExp(`equal \\(${rows} rows\\)`));

  const timings: Record<string, number> = {};
  timings.insert = await timeToTarget(db.sourceUrl, db.targetUrl,
    "INSERT INTO employees (emp_id, first_name, last_name, dob, city, salary) VALUES (40001, 'Ada', 'Lovelace', '1990-12-10', 'London', 20000)",
    40001, (r) => r?.last_name === 'Lovelace' && r.dob === '1990-12-10');
  timings.update = await timeToTarget(db.sourceUrl, db.targetUrl, 'UPDATE employees SET salary = 25000 WHERE emp_id = 40001', 40001, (r) => r?.salary === 25000);
  timings.delete = await timeToTarget(db.sourceUrl, db.targetUrl, 'DELETE FROM employees WHERE emp_id = 40001', 40001, (r) => r === undefined);
  timings.keyChange = await timeToTarget(db.sourceUrl, db.targetUrl, 'UPDATE employees SET emp_id = 40002 WHERE emp_id = 7', 40002, (r) => r?.first_name === 'f7');
  assert.equal((await query(db.targetUrl, selectRow, [7])).length, 0, 'the old key of a key-changing update is deleted in the target');
  timings.deleteReinsert = await timeToTarget(db.sourceUrl, db.targetUrl,
    "BEGIN; DELETE FROM employees WHERE emp_id = 8; INSERT INTO employees (emp_id, first_name, last_name, dob, city, salary) VALUES (8, 'Re', 'Born', '2000-01-01', 'Oslo', 1); COMMIT",
    8, (r) => r?.first_name === 'Re');
  for (const [what, ms] of Object.entries(timings)) assert.ok(ms < 1000, `${what} took ${ms} ms to reach the target`);
  t.diagnostic(`source commit to target visible (ms): ${JSON.stringify(timings)}`);

  const status = await runCli(['status', '--json'], env);
  assert.equal(status.code, 0, status.stderr);
  const report = JSON.parse(status.stdout);
  assert.equal(report.phase, 'streaming');
  assert.equal(report.tables[0].snapshot.rowsDone, rows);
  // the position: a source snapshot checkpoint in trigger capture, the slot in logical capture
  if (capture === 'trigger') assert.match(report.tables[0].checkpoint.snapshot, /^\d+:\d+:/);
  else assert.equal(report.tables[0].slot?.active, true, status.stdout);
  assert.equal(report.partitions.length, 3);
  assert.equal(report.lag, 0);
  assert.equal(typeof report.lastApplyLatencyMs, 'number');
  assert.equal((await runCli(['verify'], env)).code, 0);
  assert.equal(await tunnel.stop(), 0);
}

test('changes committed while the snapshot runs are published between its chunks and counted in pgtunnel_changes_captured_total', { timeout: 120_000 }, async (t) => {
  const db = await tunnelDatabases(t);
  await query(db.sourceUrl, "INSERT INTO employees (first_name, salary) SELECT 'f' || i, 0 FROM generate_series(1, 5000) i");
  // 500 chunks of 10 rows: the snapshot is still reading when the changes below commit
  const tunnel = await TunnelProcess.start(t, { ...db.env, PGTUNNEL_SNAPSHOT_CHUNK_SIZE: '10' }, false);
  await tunnel.waitForLog('dashboard at http://', 30_000);
  const url = tunnel.output.match(/dashboard at (http:\/\/[^ )"]+)/)![1]!;
  const progress = async () => (await query<{ phase: string; done: number }>(db.sourceUrl, "SELECT phase, snapshot_rows_done::int AS done FROM pgtunnel.state WHERE table_id = 'public.employees'"))[0]!;
  await waitFor('the snapshot under way', async () => (await progress()).done > 0, 60_000, 10);
  await query(db.sourceUrl, 'UPDATE employees SET salary = 1 WHERE emp_id <= 300');
  await query(db.sourceUrl, "INSERT INTO employees (first_name, salary) SELECT 'n' || i, 2 FROM generate_series(1, 200) i");
  await tunnel.waitForLog('phase: streaming', 60_000);
  const captured = await waitFor('500 captured changes in /metrics', async () => {
    const text = await (await fetch(`${url}metrics`)).text();
    const ops: Record<string, number> = {};
    for (const m of text.matchAll(/^pgtunnel_changes_captured_total\{table="public\.employees",op="(\w+)"\} (\d+)/gm)) ops[m[1]!] = Number(m[2]);
    return Object.values(ops).reduce((a, b) => a + b, 0) >= 500 ? ops : undefined;
  }, 30_000, 200);
  assert.deepEqual(captured, { c: 200, u: 300 });
  await waitFor('the target', async () => (await query<{ n: number }>(db.targetUrl, 'SELECT count(*)::int AS n FROM employees WHERE salary > 0'))[0]!.n === 500, 30_000, 100);
  // every stage of the streamed changes timed, in the producer's and the consumer's threads, seen in the main thread's /metrics
  const stageCounts = await waitFor('every stage counted in pgtunnel_stage_seconds', async () => {
    const text = await (await fetch(`${url}metrics`)).text();
    const counts = Object.fromEntries([...text.matchAll(/^pgtunnel_stage_seconds_count\{stage="(\w+)"\} (\d+)/gm)].map((m) => [m[1]!, Number(m[2])]));
    // `wait` is logical capture's alone (a source commit until its page formed)
    return Object.keys(counts).length === 9 && Object.entries(counts).every(([s, n]) => s === 'wait' || n > 0) ? counts : undefined;
  }, 30_000, 200);
  t.diagnostic(`stage counts: ${JSON.stringify(stageCounts)}`);
  assert.deepEqual(Object.keys(stageCounts).sort(), ['apply', 'checkpoint', 'commit', 'decode', 'poll', 'publish', 'queue', 'read', 'wait']);
  // published between the chunks, judged by what Kafka holds: in some partition a change precedes a snapshot row
  const records = await topicRecords(`${db.topicPrefix}.public.employees`);
  const interleaved = [0, 1, 2].some((p) => {
    const ops = records.filter((r) => r.partition === p && r.value !== null).map((r) => r.value!.op);
    return ops.findIndex((op) => op !== 'r') < ops.lastIndexOf('r') && ops.some((op) => op !== 'r');
  });
  assert.ok(interleaved, 'changes committed during the snapshot were published before its last chunks');
  assert.equal(await tunnel.stop(), 0);
});
