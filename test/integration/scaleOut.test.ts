import assert from 'node:assert/strict';
import { test } from 'node:test';
import { onCleanup, query, tunnelDatabases, waitFor } from '../helpers/services.js';
import { runCli, TunnelProcess } from '../helpers/tunnelProcess.js';
import { tortureDdl, Workload } from '../../testkit/workload.js';

/** The partitions a consumer process holds now, from its newest assignment log line. */
function holds(p: TunnelProcess): { instanceId: string; partitions: number[]; generation: number; at: number } | undefined {
  let last: { instanceId: string; partitions: string; generation: number; time: number } | undefined;
  for (const line of p.output.split('\n')) {
    if (line.includes('partitions assigned')) last = JSON.parse(line) as typeof last;
  }
  if (!last) return undefined;
  const list = /\[([\d,]*)\]/.exec(last.partitions)?.[1] ?? '';
  return { instanceId: last.instanceId, partitions: list ? list.split(',').map(Number) : [], generation: last.generation, at: last.time };
}

/** When the process logged `text` first. */
function loggedAt(p: TunnelProcess, text: string): number {
  const line = p.output.split('\n').find((l) => l.includes(text));
  return (JSON.parse(line!) as { time: number }).time;
}

async function appliedNow(targetUrl: string): Promise<number> {
  return (await query<{ n: number }>(targetUrl, 'SELECT COALESCE(sum(applied), 0)::int AS n FROM pgtunnel.consumer_offsets'))[0]!.n;
}

test('consumers scale 1 → 3 → 1 under the torture workload (one SIGTERM, one SIGKILL, one restart): every record applied exactly once', { timeout: 240_000 }, async (t) => {
  const db = await tunnelDatabases(t, { createTables: false });
  await query(db.sourceUrl, tortureDdl);
  await query(db.targetUrl, tortureDdl);
  const env = { ...db.env, PGTUNNEL_TABLES: 'torture', PGTUNNEL_PARTITIONS: '6', PGTUNNEL_BATCH_SIZE: '500', PGTUNNEL_HTTP_PORT: 'off' };
  const started: TunnelProcess[] = [];
  const spawn = (role: 'producer' | 'consumer') => {
    const p = new TunnelProcess(env, ['run', '--role', role]);
    started.push(p);
    return p;
  };
  onCleanup(t, () => Promise.all(started.map((p) => p.kill('SIGKILL'))));
  const producer = spawn('producer');
  await producer.waitForLog('phase: streaming', 60_000);
  const first = spawn('consumer');
  await waitFor('the first consumer to hold all 6 partitions', async () => holds(first)?.partitions.length === 6, 60_000, 100);

  const workload = new Workload(db.sourceUrl, { writers: 4, maxTxRows: 200, lateChance: 0.03, lateMs: 1500, rollbackChance: 0.1, savepointChance: 0.2 });
  workload.start();
  onCleanup(t, () => workload.stop().catch(() => {}));
  const progress = async (what: string) => {
    const before = await appliedNow(db.targetUrl);
    await waitFor(`records applied ${what}`, async () => (await appliedNow(db.targetUrl)) > before + 500, 60_000, 100);
  };
  await progress('by one consumer');

  // Scale out: two more consumers; the group spreads the 6 partitions, 2 each.
  const second = spawn('consumer');
  const third = spawn('consumer');
  const consumers = [first, second, third];
  await waitFor('2 partitions on each of 3 consumers', async () => consumers.every((c) => holds(c)?.partitions.length === 2), 60_000, 100);
  const spread = consumers.map((c) => holds(c)!);
  assert.deepEqual(spread.flatMap((h) => h.partitions).sort(), [0, 1, 2, 3, 4, 5], 'each partition has one owner');
  assert.equal(new Set(spread.map((h) => h.instanceId)).size, 3, 'each process has its own groupInstanceId');
  await progress('by three consumers');

  // A killed consumer restarted: static membership gives it its partitions back, without a rebalance.
  const before = holds(third)!;
  const generation = Math.max(...consumers.map((c) => holds(c)!.generation));
  await third.kill('SIGKILL');
  const restarted = spawn('consumer');
  await waitFor('the restarted consumer to hold its partitions again', async () => holds(restarted)?.partitions.length === 2, 30_000, 50);
  const resumeMs = holds(restarted)!.at - loggedAt(restarted, 'tunnel starting');
  assert.equal(holds(restarted)!.instanceId, before.instanceId, 'the restart claims the slot the killed process left');
  assert.deepEqual(holds(restarted)!.partitions, before.partitions, 'and gets the same partitions back');
  assert.equal(holds(restarted)!.generation, generation, 'without a rebalance: the group generation is unchanged');
  await progress('after the restart');

  // Scale in: one SIGTERM (leaves the group at once), one SIGKILL (the group notices at the session timeout).
  assert.equal(await second.stop(), 0);
  await restarted.kill('SIGKILL');
  const scaledInAt = Date.now();
  await waitFor('the first consumer to hold all 6 partitions again', async () => holds(first)?.partitions.length === 6, 60_000, 100);
  const takeBackMs = holds(first)!.at - scaledInAt;
  await progress('by the one consumer left');

  await workload.stop();
  await waitFor('the target equal to the source', async () => (await runCli(['verify', '--limit', '5'], env)).code === 0, 120_000, 500);
  assert.deepEqual(await workload.mismatches(db.targetUrl), [], 'every committed version exactly once, in order');
  // No record applied twice: what the target counted applying equals what the producer published.
  const published = (await query<{ n: number }>(db.sourceUrl, 'SELECT changes_published::int AS n FROM pgtunnel.state'))[0]!.n;
  const counted = (await query<{ applied: number; dead: number }>(db.targetUrl, 'SELECT sum(applied)::int AS applied, sum(dead_lettered + poison)::int AS dead FROM pgtunnel.consumer_offsets'))[0]!;
  const retries = started.flatMap((p) => p.output.split('\n').filter((l) => /waiting|"level":[45]0/.test(l)));
  assert.deepEqual(counted, { applied: published, dead: 0 }, `retries seen:\n${retries.join('\n')}`);
  assert.match(first.output, /revoked: \S+\[/, 'the first consumer logged the partitions it gave up');
  const restarts = started.reduce((n, p) => n + p.output.split('\n').filter((l) => l.includes('consumer waiting')).length, 0);
  t.diagnostic(`scale: ${restarts} consumer restarts after a retryable error (a group commit meeting a rebalance ends the stream); ${workload.committed} transactions (${workload.changes} row changes), ${published} records applied once each; restarted consumer held its partitions ${resumeMs} ms after its start (no rebalance); after SIGTERM + SIGKILL the last consumer held all partitions in ${takeBackMs} ms`);
  assert.equal(await first.stop(), 0);
  await producer.stop();
});
