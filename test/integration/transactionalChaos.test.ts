// Shares the machine in the suite: it kills only its own tunnel's processes, never the shared stack (chaos.test
// kills Kafka, the target and the source, alone).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { chaosCases } from '../helpers/chaos.js';

test('chaos (apply: transactional): SIGKILL to producer, consumer and tunnel; each record applied once, whole transactions, no version going back', { timeout: 600_000 }, async (t) => {
  const [{ twice, regressions, split }] = await chaosCases(t, [{ name: 'transactional', exactlyOnce: true, env: { PGTUNNEL_APPLY: 'transactional', PGTUNNEL_PARTITIONS: '3' } }], 3, ['tunnel', 'producer', 'consumer']);
  assert.deepEqual(twice, [], 'no source change published twice (librdkafka read_committed)');
  const whole = await split();
  t.diagnostic(`${whole.checked} source transactions found in the target's write log`);
  assert.ok(whole.checked > 0, 'the oracle found transactions to judge');
  assert.deepEqual(whole.split.slice(0, 10), [], 'each source transaction in one target transaction');
  // several transactions share one target transaction here, so a key may be written twice in it; never backwards
  assert.deepEqual(regressions.filter((r) => r.includes('went back')), [], 'the target never went back to an older version');
});
