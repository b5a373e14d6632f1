import assert from 'node:assert/strict';
import { test } from 'node:test';
import { runChaos } from '../helpers/chaos.js';
import { appliedCountMismatches, changesTwice, installWriteLog, sameRows, snapshotReadsPerKey, topicRecords, versionGaps, writeLogRegressions } from '../helpers/oracles.js';
import { query, tunnelDatabases, waitFor } from '../helpers/services.js';
import { TunnelProcess } from '../helpers/tunnelProcess.js';
import { currentTestStack } from '../../testkit/testStack.js';
import { tortureDdl } from '../../testkit/workload.js';

test('capture: logical, exactlyOnce: killed between the Kafka commit and the slot acknowledgement inside a large transaction: the restart resumes after what Kafka has, no change twice', { timeout: 180_000 }, async (t) => {
  const db = await tunnelDatabases(t);
  const env = { ...db.env, PGTUNNEL_CAPTURE: 'logical', PGTUNNEL_EXACTLY_ONCE: 'true', PGTUNNEL_BATCH_SIZE: '100', PGTUNNEL_SNAPSHOT_CHUNK_SIZE: '5000' };
  await query(db.sourceUrl, "INSERT INTO employees (first_name, salary) SELECT 'n' || i, 0 FROM generate_series(1, 2000) i");
  // the snapshot is the first Kafka transaction; the second is the first page of the 2000-row UPDATE (a
  // page takes at most 400 messages): the slot can confirm only the commit before that transaction
  const crashing = await TunnelProcess.start(t, { ...env, PGTUNNEL_FAILPOINTS: 'producer.after-kafka-commit:2' });
  await waitFor('the snapshot in the target', async () => (await query<{ n: number }>(db.targetUrl, 'SELECT count(*)::int AS n FROM employees'))[0]!.n === 2000, 60_000, 100);
  await query(db.sourceUrl, 'UPDATE employees SET salary = salary + 1');
  const signal = await waitFor('the failpoint to kill the tunnel', async () => crashing.child.signalCode ?? undefined, 30_000, 50);
  assert.equal(signal, 'SIGKILL', crashing.output.slice(-3000));
  await query(db.sourceUrl, 'UPDATE employees SET salary = salary + 1 WHERE emp_id % 10 = 0');
  await query(db.sourceUrl, 'DELETE FROM employees WHERE emp_id % 100 = 1');

  const restarted = TunnelProcess.spawn(t, env);
  await restarted.waitForLog('adopted the position Kafka committed last', 60_000).catch((err: Error) => {
    throw new Error(`${err.message}\n--- restarted tunnel ---\n${restarted.output.slice(-5000)}`);
  });
  const adopted = restarted.output.split('\n').filter((l) => l.includes('adopted the position'));
  assert.match(adopted.join('\n'), /"inTransaction":\{"finalLsn":"\d+","messages":\d+\}/, `the crash fell inside the transaction: ${adopted.join('\n')}`);
  await sameRows(db.sourceUrl, db.targetUrl, 'employees', 60_000);
  const topic = `${db.topicPrefix}.public.employees`;
  const records = await topicRecords(topic);
  assert.deepEqual(changesTwice(records), [], 'no source change published twice (librdkafka read_committed)');
  const reads = snapshotReadsPerKey(records);
  assert.deepEqual([reads.size, [...reads.values()].filter((n) => n !== 1)], [2000, []], 'every key read by the snapshot once');
  const ops = records.filter((r) => r.value !== null && r.value.op !== 'r').map((r) => r.value!.op);
  assert.deepEqual([ops.filter((o) => o === 'u').length, ops.filter((o) => o === 'd').length], [2000 + 200, 20], 'every change published once');
  assert.deepEqual(await appliedCountMismatches(db.targetUrl, topic, records), [], 'each Kafka record applied exactly once');
  await restarted.stop();
});

test('capture: logical, exactlyOnce: SIGKILL to producer, consumer and tunnel under the torture workload; no change twice, none skipped, each record applied once', { timeout: 300_000 }, async (t) => {
  const db = await tunnelDatabases(t, { createTables: false });
  // a delete carries its whole row (the version oracle reads it), as trigger capture sends it
  await query(db.sourceUrl, `${tortureDdl}; ALTER TABLE torture REPLICA IDENTITY FULL`);
  await query(db.targetUrl, tortureDdl);
  await installWriteLog(db.targetUrl, 'torture', 'id', 'version');
  const env = { ...db.env, PGTUNNEL_TABLES: 'torture', PGTUNNEL_CAPTURE: 'logical', PGTUNNEL_EXACTLY_ONCE: 'true' };
  // the shared stack stays up: this file runs beside others (chaos.test kills Kafka and the target, alone)
  const result = await runChaos(env, db, currentTestStack(), {
    rounds: 4,
    victims: ['producer', 'consumer', 'tunnel'],
    workload: { maxTxRows: 100 },
    onRound: (round, victim) => t.diagnostic(`round ${round}: kill ${victim}`),
  });
  t.diagnostic(`chaos: ${JSON.stringify(result)}`);
  assert.deepEqual(result.mismatches, [], 'every key at the version that committed last in the source');
  const topic = `${db.topicPrefix}.public.torture`;
  const records = await topicRecords(topic);
  assert.ok(records.length > 0);
  assert.deepEqual(changesTwice(records), [], 'no source change published twice (librdkafka read_committed)');
  assert.deepEqual(await appliedCountMismatches(db.targetUrl, topic, records), [], 'each Kafka record applied exactly once');
  assert.deepEqual(versionGaps(records), [], 'each source change in the topic, per key in version order, none skipped');
  assert.deepEqual(await writeLogRegressions(db.targetUrl), [], 'the target never went back to an older version');
});
