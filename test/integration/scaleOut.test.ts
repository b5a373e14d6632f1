import assert from 'node:assert/strict';
import { test } from 'node:test';
import { httpGet } from '../helpers/httpGet.js';
import { EventRecorder, InProcessTunnel } from '../helpers/inProcessTunnel.js';
import { onCleanup, query, tunnelDatabases, waitFor } from '../helpers/services.js';
import { TunnelProcess } from '../helpers/tunnelProcess.js';
import { tortureDdl, Workload } from '../../testkit/workload.js';

interface Holding {
  instanceId: string;
  partitions: number[];
  generation: number;
}

const holding = (m: { instanceId: string; assigned: Record<string, number[]> | Map<string, number[]>; generation: number }): Holding => ({
  instanceId: m.instanceId,
  partitions: [...(m.assigned instanceof Map ? m.assigned.values() : Object.values(m.assigned))].flat().sort((a, b) => a - b),
  generation: m.generation,
});

/** What a consumer process holds now, from its /api/status (its newest assignment). */
async function heldBy(p: TunnelProcess): Promise<Holding | undefined> {
  const { membership } = JSON.parse((await httpGet(`${p.url}api/status`)).body) as { membership: Parameters<typeof holding>[0] | null };
  return membership ? holding(membership) : undefined;
}

async function appliedNow(targetUrl: string): Promise<number> {
  return (await query<{ n: number }>(targetUrl, 'SELECT COALESCE(sum(applied), 0)::int AS n FROM pgtunnel.consumer_offsets'))[0]!.n;
}

// The producer runs in this process; the consumers are processes (SIGTERM, SIGKILL, static membership across a
// restart), read through their HTTP status rather than their log.
test('consumers scale 1 → 3 → 1 under the torture workload (one SIGTERM, one SIGKILL, one restart): every record applied exactly once', { timeout: 240_000 }, async (t) => {
  const db = await tunnelDatabases(t, { createTables: false });
  await query(db.sourceUrl, tortureDdl);
  await query(db.targetUrl, tortureDdl);
  const env = { ...db.env, PGTUNNEL_TABLES: 'torture', PGTUNNEL_PARTITIONS: '6', PGTUNNEL_BATCH_SIZE: '500', PGTUNNEL_HTTP_PORT: 'off' };
  const recorder = new EventRecorder();
  onCleanup(t, () => recorder.close());
  const producer = await InProcessTunnel.start(t, env, { role: 'producer', recorder });
  // every consumer is a process: one sharing this process's event loop with the workload missed heartbeats
  const first = await TunnelProcess.spawnServed(t, env, ['run', '--role', 'consumer']);
  const heldByFirst = () => heldBy(first);
  await waitFor('the first consumer to hold all 6 partitions', async () => (await heldByFirst())?.partitions.length === 6, 60_000, 100);

  const workload = new Workload(db.sourceUrl, { writers: 4, maxTxRows: 200, lateChance: 0.03, lateMs: 1500, rollbackChance: 0.1, savepointChance: 0.2 });
  workload.start();
  onCleanup(t, () => workload.stop().catch(() => {}));
  const progress = async (what: string) => {
    const before = await appliedNow(db.targetUrl);
    await waitFor(`records applied ${what}`, async () => (await appliedNow(db.targetUrl)) > before + 500, 60_000, 100);
  };
  await progress('by one consumer');

  // Scale out: two more consumers; the group spreads the 6 partitions, 2 each.
  const second = await TunnelProcess.spawnServed(t, env, ['run', '--role', 'consumer']);
  const third = await TunnelProcess.spawnServed(t, env, ['run', '--role', 'consumer']);
  const spread = await waitFor('2 partitions on each of 3 consumers', async () => {
    const now = [await heldByFirst(), await heldBy(second), await heldBy(third)];
    return now.every((h) => h?.partitions.length === 2) ? (now as Holding[]) : undefined;
  }, 60_000, 200);
  assert.deepEqual(spread.flatMap((h) => h.partitions).sort(), [0, 1, 2, 3, 4, 5], 'each partition has one owner');
  assert.equal(new Set(spread.map((h) => h.instanceId)).size, 3, 'each consumer has its own groupInstanceId');
  await progress('by three consumers');

  // A killed consumer restarted: static membership gives it its partitions back, without a rebalance.
  const before = (await heldBy(third))!;
  const generation = Math.max(...(await Promise.all([heldByFirst(), heldBy(second), heldBy(third)])).map((h) => h!.generation));
  await third.kill('SIGKILL');
  const restartedAt = performance.now();
  const restarted = await TunnelProcess.spawnServed(t, env, ['run', '--role', 'consumer']);
  const back = await waitFor('the restarted consumer to hold its partitions again', async () => {
    const h = await heldBy(restarted);
    return h?.partitions.length === 2 ? h : undefined;
  }, 30_000, 50);
  const resumeMs = Math.round(performance.now() - restartedAt);
  assert.equal(back.instanceId, before.instanceId, 'the restart claims the slot the killed process left');
  assert.deepEqual(back.partitions, before.partitions, 'and gets the same partitions back');
  assert.equal(back.generation, generation, 'without a rebalance: the group generation is unchanged');
  await progress('after the restart');

  // Scale in: one SIGTERM (leaves the group at once), one SIGKILL (the group notices at the session timeout).
  assert.equal(await second.stop(), 0);
  await restarted.kill('SIGKILL');
  const scaledInAt = performance.now();
  await waitFor('the first consumer to hold all 6 partitions again', async () => (await heldByFirst())?.partitions.length === 6, 60_000, 100);
  const takeBackMs = Math.round(performance.now() - scaledInAt);
  await progress('by the one consumer left');

  await workload.stop();
  await producer.waitForEqual(120_000);
  assert.deepEqual(await workload.mismatches(db.targetUrl), [], 'every committed version exactly once, in order');
  // No record applied twice: what the target counted applying equals what the producer published.
  const published = (await query<{ n: number }>(db.sourceUrl, 'SELECT changes_published::int AS n FROM pgtunnel.state'))[0]!.n;
  const counted = (await query<{ applied: number; dead: number }>(db.targetUrl, 'SELECT sum(applied)::int AS applied, sum(dead_lettered + poison)::int AS dead FROM pgtunnel.consumer_offsets'))[0]!;
  const retries = recorder.of('pgtunnel:retried').map((r) => `${r.event.part}: ${r.event.errorClass}`);
  assert.deepEqual(counted, { applied: published, dead: 0 }, `retries of the in-process parts:\n${retries.join('\n')}`);
  t.diagnostic(`scale: ${retries.length} in-process restarts after a retryable error (a group commit meeting a rebalance ends the stream); ${workload.committed} transactions (${workload.changes} row changes), ${published} records applied once each; restarted consumer held its partitions ${resumeMs} ms after its start (no rebalance); after SIGTERM + SIGKILL the last consumer held all partitions in ${takeBackMs} ms`);
  assert.equal(await first.stop(), 0);
  await producer.stop();
});
