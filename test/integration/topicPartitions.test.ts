import assert from 'node:assert/strict';
import { test } from 'node:test';
import { endOffsets } from '../../src/transport/kafka.js';
import { query, services, tunnelDatabases, waitFor } from '../helpers/services.js';
import { InProcessTunnel } from '../helpers/inProcessTunnel.js';
import { runCli } from '../helpers/tunnelProcess.js';

// The tunnels run in this process; `install` and `topic partitions` are the CLI under test (their exit codes and fixes).
test('a changed partition count is refused at start with the procedure; `pgtunnel topic partitions` adds them only once producers and consumers stopped and the target applied everything', { timeout: 240_000 }, async (t) => {
  const db = await tunnelDatabases(t);
  const env = { ...db.env, PGTUNNEL_HTTP_PORT: 'off' };
  const topic = `${db.topicPrefix}.public.employees`;
  const count = async () => (await query<{ n: number }>(db.targetUrl, 'SELECT count(*)::int AS n FROM employees'))[0]!.n;
  await query(db.sourceUrl, "INSERT INTO employees (first_name, salary) SELECT 'e' || i, i FROM generate_series(1, 300) i");
  const tunnel = await InProcessTunnel.start(t, env);
  await waitFor('300 rows in the target', async () => (await count()) === 300, 30_000, 100);

  const refused = await runCli(['install'], { ...env, PGTUNNEL_PARTITIONS: '6' });
  assert.equal(refused.code, 2, refused.stderr);
  assert.match(refused.stderr, new RegExp(`topic ${topic.replace(/\./g, '\\.')} has 3 partitions, the configuration says 6`));
  assert.match(refused.stderr, /lag 0[\s\S]*pgtunnel topic partitions public\.employees 6/);

  const whileRunning = await runCli(['topic', 'partitions', 'public.employees', '6'], env);
  assert.equal(whileRunning.code, 4, whileRunning.stderr);
  assert.match(whileRunning.stderr, /a producer of public\.employees is running/);
  await tunnel.stop();

  // Published but not applied: refused, nothing changed.
  await query(db.sourceUrl, 'UPDATE employees SET salary = salary + 1 WHERE emp_id % 3 = 0');
  const producer = await InProcessTunnel.start(t, env, { role: 'producer' });
  await producer.waitForEvents('pgtunnel:produced', 'the 100 updates published', (events) => events.reduce((n, e) => n + e.n, 0) >= 100);
  await producer.stop();
  const undrained = await runCli(['topic', 'partitions', 'public.employees', '6'], env);
  assert.equal(undrained.code, 4, undrained.stderr);
  assert.match(undrained.stderr, /has not applied every record/);
  assert.deepEqual([...(await endOffsets({ kafkaBrokers: [services().brokers] }, [topic])).get(topic)!].length, 3);

  // Drained by a consumer, which then stops: the partitions are added.
  const consumer = await InProcessTunnel.start(t, env, { role: 'consumer' });
  await consumer.waitForEqual();
  await consumer.stop();
  const changed = await runCli(['topic', 'partitions', 'public.employees', '6'], env);
  assert.equal(changed.code, 0, changed.stderr);
  assert.match(changed.stdout, /3 -> 6 partitions/);

  // With the new count configured, keys land in all 6 partitions and every key's changes stay in order.
  const six = { ...env, PGTUNNEL_PARTITIONS: '6' };
  const again = await InProcessTunnel.start(t, six);
  for (let round = 0; round < 5; round++) await query(db.sourceUrl, 'UPDATE employees SET salary = salary * 2 WHERE emp_id % 2 = $1', [round % 2]);
  await query(db.sourceUrl, "INSERT INTO employees (first_name, salary) SELECT 'n' || i, i FROM generate_series(1, 300) i");
  await again.waitForEqual();
  const ends = (await endOffsets({ kafkaBrokers: [services().brokers] }, [topic])).get(topic)!;
  assert.equal(ends.length, 6);
  assert.ok(ends.slice(3).every((end) => end > 0n), `the new partitions carry records (${ends.join(', ')})`);
  await again.stop();
});
