import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';
import { loadConfig } from '../config/load.js';
import { exitCodes, type DeadLetterClass } from '../errors.js';
import { withClient } from '../pg.js';
import { sleep } from '../retry.js';
import { Tunnel } from '../pipeline/tunnel.js';
import { prepare } from '../setup/prepare.js';
import { employeesDdl } from '../stack/demo.js';
import { LocalStack } from '../stack/localStack.js';
import { deleteTopics, EnvelopeProducer } from '../transport/kafka.js';
import { cliAction, config, log } from './context.js';
import { formatLetter, loadLetters } from './dlq.js';
import { clientIds, defaultGroupId } from '../names.js';

const rulesFile = fileURLToPath(new URL('../../../examples/employees-rules.yaml', import.meta.url));
const demoDb = 'pgtunnel_demo';

const say = (text: string) => process.stdout.write(`${text}\n`);

/** The bad changes, each with the dead-letter class it must end up as. */
const badChanges: { what: string; expect: DeadLetterClass; sql?: string }[] = [
  { what: 'born in 1990 (rule born-after-2007)', expect: 'rule', sql: "INSERT INTO employees VALUES (1, 'Old', 'Timer', '1990-01-01', 'London', 20000)" },
  { what: 'salary 5000 (rule salary-above-10000)', expect: 'rule', sql: "INSERT INTO employees VALUES (2, 'Low', 'Pay', '2010-01-01', 'Paris', 5000)" },
  { what: 'emp_id -3 (rule no-negative-emp-id)', expect: 'rule', sql: "INSERT INTO employees VALUES (-3, 'Neg', 'Ative', '2010-01-01', 'Rome', 20000)" },
  { what: "a change-table row written by hand with action 'MERGE' (bad action)", expect: 'bad-action', sql: "INSERT INTO emp_cdc (emp_id, first_name, action) VALUES (4, 'Hand', 'MERGE')" },
  { what: 'a message that is not JSON, written to the topic by another producer (poison)', expect: 'poison' },
  { what: 'salary 2,000,000, refused by a CHECK constraint in the target (target error)', expect: 'target', sql: "INSERT INTO employees VALUES (6, 'Too', 'Rich', '2010-01-01', 'Oslo', 2000000)" },
  { what: 'an update of emp 7 after someone deleted it from the target (missing key)', expect: 'missing-key' },
  { what: 'an update of emp 1, whose insert is a dead letter (parked behind it)', expect: 'parked', sql: 'UPDATE employees SET salary = 25000 WHERE emp_id = 1' },
];

async function waitUntil(what: string, check: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

export function registerDemo(program: Command): void {
  program
    .command('demo')
    .argument('<scenario>', 'bad: write intentionally bad changes of every dead-letter class and show where each went')
    .description('demonstrations on the embedded stack (own databases pgtunnel_demo, topics pgtunnel-demo.*)')
    .addHelpText('after', '\nExample:\n  pgtunnel demo bad')
    .action((scenario: string, _options: object, command: Command) =>
      cliAction(async (name: string, globals) => {
        const scenario = name;
        if (scenario !== 'bad') {
          process.stderr.write(`pgtunnel: unknown demo ${JSON.stringify(scenario)}; try: pgtunnel demo bad\n`);
          return exitCodes.usage;
        }
        const home = config(globals).home;
        const stack = new LocalStack(home, log);
        const started = await stack.up();
        try {
          return await demoBad(stack, home);
        } finally {
          await stack.down(started);
        }
      })(scenario, command),
    );
}

async function demoBad(stack: LocalStack, home: string): Promise<number> {
  for (const cluster of [stack.source, stack.target]) {
    await withClient(cluster.url('postgres'), 'admin', async (c) => {
      await c.query(`DROP DATABASE IF EXISTS ${demoDb} WITH (FORCE)`);
      await c.query(`CREATE DATABASE ${demoDb}`);
    });
    await withClient(cluster.url(demoDb), 'admin', (c) => c.query(employeesDdl));
  }
  await withClient(stack.target.url(demoDb), 'target', (c) => c.query('ALTER TABLE employees ADD CONSTRAINT salary_below_1000000 CHECK (salary < 1000000)'));
  const cfg = loadConfig({
    configFile: rulesFile,
    env: {
      PGTUNNEL_SOURCE_URL: stack.source.url(demoDb),
      PGTUNNEL_TARGET_URL: stack.target.url(demoDb),
      PGTUNNEL_KAFKA_BROKERS: stack.kafka.bootstrap,
      PGTUNNEL_TOPIC_PREFIX: 'pgtunnel-demo',
      PGTUNNEL_GROUP_ID: defaultGroupId('pgtunnel-demo'),
      PGTUNNEL_HOME: home,
      PGTUNNEL_HTTP_PORT: 'off',
    },
  });
  const table = cfg.tables[0]!;
  await deleteTopics(cfg, [table.topic, table.dlqTopic]);
  say(`demo: rules from ${rulesFile}; source ${cfg.sourceUrl}, target ${cfg.targetUrl}, topic ${table.topic}`);
  const tables = await prepare(cfg, log);
  const stop = new AbortController();
  let streaming!: () => void;
  const ready = new Promise<void>((resolve) => (streaming = resolve));
  const quiet = log.child({}, { level: 'error' });
  const running = new Tunnel(cfg, tables, quiet, (phase) => phase === 'streaming' && streaming()).run(stop.signal);
  running.catch(() => stop.abort());
  const source = (sql: string) => withClient(cfg.sourceUrl, 'source', (c) => c.query(sql));
  const target = (sql: string) => withClient(cfg.targetUrl, 'target', (c) => c.query(sql));
  try {
    await ready;
    // emp 7 must exist in the target before it is deleted there behind the tunnel's back
    await source("INSERT INTO employees VALUES (7, 'Gone', 'Missing', '2009-01-01', 'Vienna', 30000)");
    await waitUntil('emp 7 in the target', async () => ((await target('SELECT 1 FROM employees WHERE emp_id = 7')).rowCount ?? 0) > 0, 10_000);
    for (const [i, change] of badChanges.entries()) {
      say(`bad change ${i + 1}: ${change.what}`);
      if (change.expect === 'poison') {
        const producer = new EnvelopeProducer(cfg, clientIds.demoPoisoner);
        await producer.publish([{ topic: table.topic, key: '{"emp_id":5}', value: 'this is not json' }]).finally(() => producer.close());
      } else if (change.expect === 'missing-key') {
        await target('DELETE FROM employees WHERE emp_id = 7');
        await source('UPDATE employees SET salary = 31000 WHERE emp_id = 7');
      } else {
        await source(change.sql!);
      }
    }
    const committed = Date.now();
    await source("INSERT INTO employees VALUES (8, 'Good', 'Change', '2012-05-05', 'Lisbon', 50000)");
    await waitUntil('the good change in the target', async () => ((await target('SELECT 1 FROM employees WHERE emp_id = 8')).rowCount ?? 0) > 0, 10_000);
    const goodMs = Date.now() - committed;
    say(`good change after the bad ones: in the target after ${goodMs} ms`);
    let letters = await loadLetters(cfg, {});
    const deadline = Date.now() + 30_000;
    while (letters.length < badChanges.length && Date.now() < deadline) {
      await sleep(250);
      letters = await loadLetters(cfg, {});
    }
    say(`\nwhere each went (pgtunnel dlq list on ${table.dlqTopic}):`);
    for (const l of letters) say(formatLetter(l));
    const missing = [...new Set(badChanges.map((c) => c.expect))].filter((cls) => !letters.some((l) => l.errorClass === cls));
    say(missing.length === 0 ? `\nevery class is in the DLQ (${letters.length} dead letters) and the tunnel kept streaming` : `\nMISSING classes: ${missing.join(', ')}`);
    return missing.length === 0 && goodMs < 1000 ? exitCodes.ok : exitCodes.failure;
  } finally {
    stop.abort();
    await running.catch(() => {});
  }
}
