import assert from 'node:assert/strict';
import { test } from 'node:test';
import { runChaos } from '../helpers/chaos.js';
import { publishedChanges } from '../helpers/published.js';
import { query, services, tunnelDatabases } from '../helpers/services.js';
import { currentTestStack } from '../helpers/testStack.js';
import { tortureDdl } from '../helpers/workload.js';

test('chaos: 10 rounds of SIGKILL to producer, consumer, tunnel, Kafka and target PostgreSQL; exact convergence, no envelope published twice (exactlyOnce)', { timeout: 600_000 }, async (t) => {
  const db = await tunnelDatabases(t, { createTables: false });
  await query(db.sourceUrl, tortureDdl);
  await query(db.targetUrl, tortureDdl);
  const stack = currentTestStack();
  const result = await runChaos({ ...db.env, PGTUNNEL_TABLES: 'torture', PGTUNNEL_EXACTLY_ONCE: 'true' }, db, stack, {
    rounds: 10,
    onRound: (round, victim) => t.diagnostic(`round ${round}: kill ${victim}`),
  });
  t.diagnostic(`chaos: ${JSON.stringify(result)}`);
  assert.deepEqual(result.mismatches, [], 'exact versions after convergence');
  const published = await publishedChanges(services().brokers, `${db.topicPrefix}.public.torture`);
  t.diagnostic(`published: ${published.changes} changes, ${published.snapshotRows} snapshot rows`);
  assert.ok(published.changes > 0);
  assert.deepEqual(published.duplicates, [], 'no source change published twice (read_committed)');
  assert.deepEqual(Object.values(stack.status()).map((s) => s.running), [true, true, true], 'the stack is whole again for later tests');
});
