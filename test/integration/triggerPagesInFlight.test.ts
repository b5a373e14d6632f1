import assert from 'node:assert/strict';
import { test } from 'node:test';
import pg from 'pg';
import { appliedCountMismatches, changesTwice, sameRows, topicRecords, versionGaps } from '../helpers/oracles.js';
import { query, tunnelDatabases, waitFor } from '../helpers/services.js';
import { TunnelProcess } from '../helpers/tunnelProcess.js';

// Issue 21: a stream page is sent while the previous page's ack is outstanding, and checkpoints commit in page
// order. Killed when a page's ack arrives while the page after it is already sent (its ack outstanding, no
// checkpoint of either written), the restart reads both again from the stored position: no change is lost, and
// on the topic each key's changes stay in order (a re-sent page repeats a run of them, never one before another).

const keys = 40;

/** Single-row salary bumps from four connections, each on keys of its own, until `stop` says so. */
async function bumpUntil(sourceUrl: string, stop: () => boolean, minRounds: number): Promise<number> {
  let commits = 0;
  const worker = async (w: number) => {
    const client = new pg.Client({ connectionString: sourceUrl });
    await client.connect();
    try {
      for (let round = 0; round < minRounds || !stop(); round++) {
        if (round >= 2_000) throw new Error('the failpoint never fired: no page\'s ack came while the next page was in flight');
        for (let k = 1 + w; k <= keys; k += 4) {
          await client.query('UPDATE employees SET salary = salary + 1 WHERE emp_id = $1', [k]);
          commits++;
        }
      }
    } finally {
      await client.end();
    }
  };
  await Promise.all([0, 1, 2, 3].map(worker));
  return commits;
}

test('killed between two pages\' acks: both pages are read again, no change lost, each key\'s changes in order on the topic', { timeout: 180_000 }, async (t) => {
  const db = await tunnelDatabases(t);
  await query(db.sourceUrl, `INSERT INTO employees (first_name, salary) SELECT 'n' || i, 0 FROM generate_series(1, ${keys}) i`);
  const crashing = await TunnelProcess.start(t, { ...db.env, PGTUNNEL_FAILPOINTS: 'producer.between-acks:20' });
  const killed = () => crashing.child.signalCode !== null;
  await bumpUntil(db.sourceUrl, killed, 5);
  const signal = await waitFor('the producer.between-acks failpoint to kill the process', async () => crashing.child.signalCode ?? undefined, 30_000);
  // the exit is the proof (the failpoint's line, written from a worker thread, may not reach the output before it)
  assert.equal(signal, 'SIGKILL', `the process died of the failpoint's SIGKILL:\n${crashing.output.slice(-3000)}`);
  // more changes while no tunnel runs, on the same keys
  await bumpUntil(db.sourceUrl, () => true, 3);

  const restarted = await TunnelProcess.start(t, db.env);
  await sameRows(db.sourceUrl, db.targetUrl, 'employees', 90_000);
  await waitFor('the change table emptied by the checkpoints', async () => (await query<{ n: number }>(db.sourceUrl, 'SELECT count(*)::int AS n FROM emp_cdc'))[0]!.n === 0, 30_000, 100);
  const topic = `${db.topicPrefix}.public.employees`;
  const records = await topicRecords(topic);
  assert.notDeepEqual(changesTwice(records), [], 'the acknowledged page whose checkpoint the kill prevented is in the topic twice (read again)');
  assert.deepEqual(versionGaps(records, 'salary'), [], 'every bump of every key in the topic, in order, none skipped');
  assert.deepEqual(await appliedCountMismatches(db.targetUrl, topic, records), [], 'each Kafka record applied exactly once');
  await restarted.stop();
});
