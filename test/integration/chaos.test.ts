import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import { runChaos, type Victim } from '../helpers/chaos.js';
import { appliedCountMismatches, changesTwice, installWriteLog, splitTransactions, topicRecords, versionGaps, writeLogRegressions } from '../helpers/oracles.js';
import { query, tunnelDatabases } from '../helpers/services.js';
import { currentTestStack } from '../../testkit/testStack.js';
import { tortureDdl } from '../../testkit/workload.js';

/** Short runs (every mode sits in `npm test`); every kind of victim is killed in the first five rounds. */
async function chaos(t: TestContext, exactlyOnce: boolean, rounds: number, options: { env?: Record<string, string>; victims?: readonly Victim[] } = {}) {
  const db = await tunnelDatabases(t, { createTables: false });
  const logical = options.env?.PGTUNNEL_CAPTURE === 'logical';
  // logical capture: a delete carries its whole row (the version oracle reads it), as trigger capture sends it
  await query(db.sourceUrl, logical ? `${tortureDdl}; ALTER TABLE torture REPLICA IDENTITY FULL` : tortureDdl);
  await query(db.targetUrl, tortureDdl);
  await installWriteLog(db.targetUrl, 'torture', 'id', 'version');
  const stack = currentTestStack();
  const result = await runChaos({ ...db.env, PGTUNNEL_TABLES: 'torture', ...(exactlyOnce ? { PGTUNNEL_EXACTLY_ONCE: 'true' } : {}), ...options.env }, db, stack, {
    rounds,
    victims: options.victims,
    onRound: (round, victim) => t.diagnostic(`round ${round}: kill ${victim}`),
  });
  t.diagnostic(`chaos: ${JSON.stringify(result)}`);
  assert.deepEqual(result.mismatches, [], 'every key at the version that committed last in the source');
  const topic = `${db.topicPrefix}.public.torture`;
  const records = await topicRecords(topic);
  const twice = changesTwice(records);
  t.diagnostic(`topic: ${records.length} records, ${twice.length} changes there more than once`);
  assert.ok(records.length > 0);
  assert.deepEqual(await appliedCountMismatches(db.targetUrl, topic, records), [], 'each Kafka record applied exactly once (target counts = records in the topic)');
  assert.deepEqual(versionGaps(records), [], 'each source change in the topic, per key in version order, none skipped');
  assert.deepEqual(Object.values(stack.status()).map((s) => s.running), [true, true, true], 'the stack is whole again for later tests');
  return { twice, regressions: await writeLogRegressions(db.targetUrl), split: () => splitTransactions(db.targetUrl, records, 'id', 'version') };
}

test('chaos (exactlyOnce): SIGKILL to producer, consumer, tunnel, Kafka and target PostgreSQL; each record applied once, no envelope twice, no version going back', { timeout: 600_000 }, async (t) => {
  // five rounds: the five default victims, each killed once (a sixth, random one proved nothing more)
  const { twice, regressions } = await chaos(t, true, 5);
  assert.deepEqual(twice, [], 'no source change published twice (librdkafka read_committed)');
  assert.deepEqual(regressions, [], 'the target never went back to an older version nor upserted a key twice in one apply');
});

test('chaos (default, at-least-once): the same kills; re-sent changes are distinct records, each applied once, and the target converges', { timeout: 600_000 }, async (t) => {
  const { twice, regressions, split } = await chaos(t, false, 5);
  t.diagnostic(`per-partition apply: ${(await split()).split.length} source transactions applied in parts (the transactional test's oracle, for contrast)`);
  // A re-sent suffix is applied again (the target goes back, then forward): true of this mode, reported, not failed.
  t.diagnostic(`at-least-once: ${twice.length} changes re-sent, ${regressions.length} target writes repeated or went back before converging`);
});

test('chaos (apply: transactional): SIGKILL to producer, consumer and tunnel; each record applied once, whole transactions, no version going back', { timeout: 600_000 }, async (t) => {
  const { twice, regressions, split } = await chaos(t, true, 3, { env: { PGTUNNEL_APPLY: 'transactional', PGTUNNEL_PARTITIONS: '3' }, victims: ['tunnel', 'producer', 'consumer'] });
  assert.deepEqual(twice, [], 'no source change published twice (librdkafka read_committed)');
  const whole = await split();
  t.diagnostic(`${whole.checked} source transactions found in the target's write log`);
  assert.ok(whole.checked > 0, 'the oracle found transactions to judge');
  assert.deepEqual(whole.split.slice(0, 10), [], 'each source transaction in one target transaction');
  // several transactions share one target transaction here, so a key may be written twice in it; never backwards
  assert.deepEqual(regressions.filter((r) => r.includes('went back')), [], 'the target never went back to an older version');
});

// the slot survives the source's crash and restart, and the producer reconnects and resumes from its confirmed position
// (logicalExactlyOnce.test kills the tunnel's processes in exactly-once mode beside other files)
test('chaos (capture: logical): SIGKILL to the source PostgreSQL, the tunnel, its producer and its consumer; the target converges, each record applied once', { timeout: 600_000 }, async (t) => {
  const { twice, regressions } = await chaos(t, false, 4, { env: { PGTUNNEL_CAPTURE: 'logical' }, victims: ['source', 'tunnel', 'producer', 'consumer'] });
  t.diagnostic(`at-least-once: ${twice.length} changes re-sent, ${regressions.length} target writes repeated or went back before converging`);
});
