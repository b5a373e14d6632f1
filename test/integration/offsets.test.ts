import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';
import { run } from '../helpers/airflow.js';
import { query, services, tunnelDatabases, waitFor } from '../helpers/services.js';
import { InProcessTunnel } from '../helpers/inProcessTunnel.js';
import { runCli } from '../helpers/tunnelProcess.js';

const libs = path.resolve(process.env.PGTUNNEL_TEST_STACK_ROOT ?? '.pgtunnel/test-stack', '..', 'kafka', 'libs');

interface Row { topic: string; partition: number; groupOffset: number | null; targetOffset: number | null; logEndOffset: number; lag: number | null }

/** Kafka's own consumer-group tool, as an operator runs it: CURRENT-OFFSET, LOG-END-OFFSET and LAG per partition. */
async function describeGroup(group: string): Promise<Map<string, { current: string; end: string; lag: string }>> {
  const result = await run('java', ['-cp', `${libs}/*`, 'org.apache.kafka.tools.consumer.group.ConsumerGroupCommand', '--bootstrap-server', services().brokers, '--describe', '--group', group], process.env, 120_000);
  assert.equal(result.code, 0, result.output);
  const lines = result.output.split('\n').map((l) => l.trim().split(/\s+/));
  const header = lines.find((l) => l.includes('CURRENT-OFFSET'));
  assert.ok(header, result.output);
  const col = (name: string) => header.indexOf(name);
  const out = new Map<string, { current: string; end: string; lag: string }>();
  for (const l of lines) {
    if (l[col('GROUP')] !== group) continue;
    out.set(`${l[col('TOPIC')]}[${l[col('PARTITION')]}]`, { current: l[col('CURRENT-OFFSET')]!, end: l[col('LOG-END-OFFSET')]!, lag: l[col('LAG')]! });
  }
  return out;
}

test("pgtunnel offsets shows the group offset, the target's offset, the log end and the lag exactly as Kafka's consumer-group tool does", { timeout: 240_000 }, async (t) => {
  const db = await tunnelDatabases(t);
  await query(db.sourceUrl, `INSERT INTO employees (first_name, last_name, dob, city, salary)
    SELECT 'f' || i, 'l' || i, DATE '1970-01-01' + i, 'c', i FROM generate_series(1, 1500) i`);
  // The tunnels run in this process; `offsets` and `status` are the CLI under test.
  const tunnel = await InProcessTunnel.start(t, db.env);
  await tunnel.waitForEqual(120_000);
  await tunnel.stop();
  // published after the consumer stopped: Kafka's tool and pgtunnel both show it as lag
  await query(db.sourceUrl, 'UPDATE employees SET salary = salary + 1 WHERE emp_id <= 40');
  const producer = await InProcessTunnel.start(t, db.env, { role: 'producer' });
  await producer.waitForEvents('pgtunnel:produced', 'the 40 updates published', (events) => events.reduce((n, e) => n + e.n, 0) >= 40, 60_000);
  await producer.stop();

  const offsets = async (): Promise<Row[]> => {
    const r = await runCli(['offsets', '--json'], db.env);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    return (JSON.parse(r.stdout) as { partitions: Row[] }).partitions;
  };
  // the consumer is gone: its last group commits landed at its clean stop
  const rows = await waitFor('group offsets equal to the target offsets', async () => {
    const rows = await offsets();
    return rows.length === 3 && rows.every((r) => r.groupOffset === r.targetOffset) ? rows : undefined;
  });
  assert.equal(rows.reduce((a, r) => a + (r.lag ?? 0), 0), 40, 'the 40 updates published after the consumer stopped are the lag');
  const kafka = await describeGroup(`${db.topicPrefix}-apply`);
  assert.equal(kafka.size, 3, JSON.stringify([...kafka]));
  for (const r of rows) {
    const k = kafka.get(`${r.topic}[${r.partition}]`);
    assert.deepEqual({ current: String(r.groupOffset), end: String(r.logEndOffset), lag: String(r.lag) }, k, `${r.topic}[${r.partition}]`);
  }
  const text = await runCli(['offsets'], db.env);
  assert.match(text.stdout, /GROUP-OFFSET\s+TARGET-OFFSET\s+LOG-END-OFFSET\s+LAG/);

  // status and the dashboard carry the same group offsets
  const status = JSON.parse((await runCli(['status', '--json'], db.env)).stdout) as { partitions: { partition: number; groupOffset: number; groupLag: number }[] };
  for (const r of rows) {
    const s = status.partitions.find((p) => p.partition === r.partition)!;
    assert.deepEqual([s.groupOffset, s.groupLag], [r.groupOffset, r.lag]);
  }
});

test('pgtunnel offsets before anything is installed: no partitions yet, not an outage', { timeout: 60_000 }, async (t) => {
  const db = await tunnelDatabases(t);
  const r = await runCli(['offsets', '--json'], db.env);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.deepEqual(JSON.parse(r.stdout), { group: `${db.topicPrefix}-apply`, partitions: [], errors: [] });
});
