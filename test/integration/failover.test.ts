import assert from 'node:assert/strict';
import { test } from 'node:test';
import { onCleanup, query, tunnelDatabases, waitFor } from '../helpers/services.js';
import { runCli, TunnelProcess } from '../helpers/tunnelProcess.js';
import { tortureDdl, Workload } from '../helpers/workload.js';

/** The time of the first log line of `p` holding `text` and logged at or after `since`. */
function firstLogAfter(p: TunnelProcess, text: string, since: number): number | undefined {
  for (const line of p.output.split('\n')) {
    if (!line.includes(text)) continue;
    const { time } = JSON.parse(line) as { time: number };
    if (time >= since) return time;
  }
  return undefined;
}

const promiseMs = 2000;

test('producer failover under load: SIGKILL the active producer, the standby publishes within 2 s; nothing lost, per-key order kept', { timeout: 180_000 }, async (t) => {
  const db = await tunnelDatabases(t, { createTables: false });
  await query(db.sourceUrl, tortureDdl);
  await query(db.targetUrl, tortureDdl);
  const env = { ...db.env, PGTUNNEL_TABLES: 'torture', PGTUNNEL_BATCH_SIZE: '500', PGTUNNEL_HTTP_PORT: 'off' };
  const started: TunnelProcess[] = [];
  const spawn = (role: string, extra: Record<string, string> = {}) => {
    const p = new TunnelProcess({ ...env, ...extra }, ['run', '--role', role]);
    started.push(p);
    return p;
  };
  onCleanup(t, () => Promise.all(started.map((p) => p.kill('SIGKILL'))));
  // debug: a producer logs each page it publishes, with its time, for the takeover figure
  let active = spawn('producer', { PGTUNNEL_LOG_LEVEL: 'debug' });
  await active.waitForLog('phase: streaming', 60_000);
  const consumer = spawn('consumer');
  await consumer.waitForLog('consumer started', 60_000);

  const workload = new Workload(db.sourceUrl, { writers: 4, maxTxRows: 200, lateChance: 0.03, lateMs: 1500, rollbackChance: 0.1, savepointChance: 0.2 });
  workload.start();
  onCleanup(t, () => workload.stop().catch(() => {}));
  const published = async () => (await query<{ n: number }>(db.sourceUrl, 'SELECT changes_published::int AS n FROM pgtunnel.state'))[0]!.n;
  const figures: string[] = [];
  // Twice: the killed producer comes back as the standby of the one that took over.
  for (let round = 1; round <= 2; round++) {
    const standby = spawn('producer', { PGTUNNEL_LOG_LEVEL: 'debug' });
    await standby.waitForLog('producer standing by', 60_000);
    const before = await published();
    await waitFor('the active producer publishing under load', async () => (await published()) > before + 2000, 60_000, 50);
    const killedAt = Date.now();
    await active.kill('SIGKILL');
    const publishedAt = await waitFor('the standby to publish', async () => firstLogAfter(standby, 'page published', killedAt), 30_000, 20);
    const ledAt = firstLogAfter(standby, 'producer taking over', killedAt)!;
    const takeoverMs = publishedAt - killedAt;
    figures.push(`round ${round}: lock taken ${ledAt - killedAt} ms, first page published ${takeoverMs} ms after the kill`);
    assert.ok(takeoverMs <= promiseMs, `the standby published ${takeoverMs} ms after the kill (promise: ${promiseMs} ms)`);
    active = standby;
  }
  t.diagnostic(`failover: ${figures.join('; ')}`);
  const after = await published();
  await waitFor('the last leader publishing on', async () => (await published()) > after + 2000, 60_000, 50);
  await workload.stop();
  await waitFor('the target equal to the source', async () => (await runCli(['verify', '--limit', '5'], env)).code === 0, 120_000, 500);
  assert.deepEqual(await workload.mismatches(db.targetUrl), [], 'every committed version, in order');
  await active.stop();
  await consumer.stop();
});

test('producers of two tables in two processes publish side by side; one consumer applies both', { timeout: 120_000 }, async (t) => {
  const db = await tunnelDatabases(t, { createTables: false });
  const ddl = 'CREATE TABLE a (id int PRIMARY KEY, v int); CREATE TABLE b (id int PRIMARY KEY, v int)';
  await query(db.sourceUrl, ddl);
  await query(db.targetUrl, ddl);
  const env = { ...db.env, PGTUNNEL_HTTP_PORT: 'off' };
  const processes = [
    new TunnelProcess({ ...env, PGTUNNEL_TABLES: 'a' }, ['run', '--role', 'producer']),
    new TunnelProcess({ ...env, PGTUNNEL_TABLES: 'b' }, ['run', '--role', 'producer']),
    new TunnelProcess({ ...env, PGTUNNEL_TABLES: 'a,b' }, ['run', '--role', 'consumer']),
  ];
  onCleanup(t, () => Promise.all(processes.map((p) => p.kill('SIGKILL'))));
  for (const p of processes.slice(0, 2)) await p.waitForLog('phase: streaming', 60_000);
  for (const table of ['a', 'b']) {
    await query(db.sourceUrl, `INSERT INTO ${table} SELECT i, 1 FROM generate_series(1, 500) i`);
    await query(db.sourceUrl, `UPDATE ${table} SET v = v + 1 WHERE id % 2 = 0`);
    await query(db.sourceUrl, `DELETE FROM ${table} WHERE id % 5 = 0`);
  }
  const verify = await waitFor('both tables equal', async () => {
    const r = await runCli(['verify'], { ...env, PGTUNNEL_TABLES: 'a,b' });
    return r.code === 0 ? r.stdout : undefined;
  }, 60_000, 500);
  assert.match(verify, /public\.a: equal/);
  assert.match(verify, /public\.b: equal/);
  for (const p of processes.slice(0, 2)) assert.doesNotMatch(p.output, /standing by/, 'neither producer waits for the other');
  for (const p of processes) assert.equal(await p.stop(), 0);
});
