import assert from 'node:assert/strict';
import { test } from 'node:test';
import { runChaos } from '../helpers/chaos.js';
import { query, tunnelDatabases } from '../helpers/services.js';
import { currentTestStack } from '../helpers/testStack.js';
import { tortureDdl } from '../helpers/workload.js';

test('chaos: 10 rounds of SIGKILL to producer, consumer, tunnel, Kafka and target PostgreSQL; exact convergence', { timeout: 600_000 }, async (t) => {
  const db = await tunnelDatabases(t, { createTables: false });
  await query(db.sourceUrl, tortureDdl);
  await query(db.targetUrl, tortureDdl);
  const stack = currentTestStack();
  const result = await runChaos({ ...db.env, PGTUNNEL_TABLES: 'torture' }, db, stack, {
    rounds: 10,
    onRound: (round, victim) => t.diagnostic(`round ${round}: kill ${victim}`),
  });
  t.diagnostic(`chaos: ${JSON.stringify(result)}`);
  assert.deepEqual(result.mismatches, [], 'exact versions after convergence');
  assert.deepEqual(Object.values(stack.status()).map((s) => s.running), [true, true, true], 'the stack is whole again for later tests');
});
