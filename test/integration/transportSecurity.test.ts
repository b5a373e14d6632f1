import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { parse, stringify } from 'yaml';
import { employeesDdl } from '../../src/stack/demo.js';
import { existingTopics } from '../../src/transport/kafka.js';
import { onCleanup, query, waitFor } from '../helpers/services.js';
import { startTestStack } from '../../testkit/testStack.js';
import { runCli, TunnelProcess } from '../helpers/tunnelProcess.js';

/**
 * Its own stack in secure mode on free ports (the shared test stack has passwords on plain TCP): PostgreSQL
 * accepting only TLS with scram-sha-256 passwords, Kafka with one SASL_SSL listener requiring a client
 * certificate, all from a CA made at start-up.
 */
test('the tunnel runs through PostgreSQL with TLS and scram passwords and Kafka over SASL_SSL', { timeout: 180_000 }, async (t) => {
  const home = path.resolve(process.env.PGTUNNEL_TEST_STACK_ROOT!, '..');
  const started = Date.now();
  const { stack } = await startTestStack(home, 'secure-test-stack', { secure: true });
  onCleanup(t, () => stack.down());
  t.diagnostic(`secure stack up in ${Date.now() - started} ms`);
  const security = stack.security!;
  const secrets = [security.postgresPassword, security.kafkaPassword, security.keystorePassword];
  const sourceUrl = stack.source.connectUrl('postgres');
  const targetUrl = stack.target.connectUrl('postgres');
  await query(sourceUrl, employeesDdl);
  await query(targetUrl, employeesDdl);
  await query(sourceUrl, "INSERT INTO employees (first_name, last_name, dob, city, salary) SELECT 'f' || i, 'l' || i, DATE '1980-01-01' + i, 'Oslo', i FROM generate_series(1, 200) i");

  const configFile = stack.writeClientConfig('postgres', 'postgres');
  const runHome = mkdtempSync(path.join(tmpdir(), 'pgtunnel-secure-'));
  onCleanup(t, () => rmSync(runHome, { recursive: true, force: true }));
  const env = { PGTUNNEL_CONFIG: configFile, PGTUNNEL_HOME: runHome, PGTUNNEL_LOG_FORMAT: 'json', PGTUNNEL_HTTP_PORT: '0' };

  // Snapshot, then a streamed change, then verify, all through TLS and SASL.
  const running = Date.now();
  const tunnel = await TunnelProcess.start(t, env);
  const count = async () => (await query<{ n: number }>(targetUrl, 'SELECT count(*)::int AS n FROM employees'))[0]!.n;
  await waitFor('the snapshot in the target', async () => (await count()) === 200, 60_000);
  await query(sourceUrl, "INSERT INTO employees (emp_id, first_name, last_name, dob, city, salary) VALUES (5000, 'Ada', 'Lovelace', '1990-12-10', 'London', 20000)");
  await waitFor('the streamed row in the target', async () => (await query(targetUrl, 'SELECT 1 FROM employees WHERE emp_id = 5000')).length === 1, 20_000);
  const tls = await query<{ plain: number; tls: number }>(sourceUrl,
    "SELECT count(*) FILTER (WHERE NOT s.ssl)::int AS plain, count(*) FILTER (WHERE s.ssl)::int AS tls FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) WHERE a.datname = current_database() AND a.application_name LIKE 'pgtunnel%'");
  assert.equal(tls[0]!.plain, 0, 'no connection of the tunnel to the source is without TLS');
  assert.ok(tls[0]!.tls > 0, 'the tunnel holds TLS connections to the source');
  const verified = await runCli(['verify'], env);
  assert.equal(verified.code, 0, verified.stdout + verified.stderr);
  assert.match(verified.stdout, /equal \(201 rows\)/);
  const status = await runCli(['status', '--json'], env);
  assert.equal(status.code, 0, status.stderr);
  assert.equal(await tunnel.stop(), 0);
  for (const out of [tunnel.output, verified.stdout + verified.stderr, status.stdout + status.stderr]) {
    for (const secret of secrets) assert.ok(!out.includes(secret), 'no password of the secure stack is printed');
  }

  // PLAIN and SCRAM-SHA-256 log in too.
  const kafka = { kafkaBrokers: [stack.kafka.bootstrap], kafkaSecurity: security.kafkaClient() };
  for (const mechanism of ['PLAIN', 'SCRAM-SHA-256'] as const) {
    const topics = await existingTopics({ ...kafka, kafkaSecurity: { ...kafka.kafkaSecurity, sasl: { ...kafka.kafkaSecurity.sasl!, mechanism } } }, ['pgtunnel.public.employees']);
    assert.deepEqual(topics, ['pgtunnel.public.employees'], mechanism);
  }

  // What a user gets wrong is a config error (exit 2) naming the fix, and never prints a password.
  const written = parse(readFileSync(configFile, 'utf8'));
  const variant = (name: string, change: (c: Record<string, any>) => void) => {
    const c = structuredClone(written);
    change(c);
    const file = path.join(runHome, `${name}.yaml`);
    writeFileSync(file, stringify(c));
    return { ...env, PGTUNNEL_CONFIG: file };
  };
  const cases: [string, Record<string, string>, RegExp][] = [
    ['wrong Kafka password', { ...env, PGTUNNEL_KAFKA_SASL_PASSWORD: 'not-the-password' }, /refused the SASL login[\s\S]*fix: fix kafkaSasl/],
    ['no client certificate', variant('nocert', (c) => { delete c.kafkaTls.cert; delete c.kafkaTls.key; }), /Kafka server refused the TLS handshake[\s\S]*kafkaTls\.cert and kafkaTls\.key/],
    ['Kafka CA unknown', variant('noca', (c) => { delete c.kafkaTls.ca; }), /Kafka server's TLS certificate was not accepted[\s\S]*kafkaTls\.ca/],
    ['PostgreSQL CA unknown', variant('pgnoca', (c) => { c.sourceUrl = c.sourceUrl.replace(/&sslrootcert=[^&]*/, ''); }), /PostgreSQL server's TLS certificate was not accepted[\s\S]*sslrootcert=/],
    ['PostgreSQL without TLS', variant('pgplain', (c) => { c.sourceUrl = c.sourceUrl.replace(/\?.*/, ''); }), /no encryption[\s\S]*sslmode=verify-full/],
  ];
  const mistakes = Date.now();
  const results = await Promise.all(cases.map(async ([what, caseEnv]) => {
    const result = await runCli(['install'], caseEnv);
    t.diagnostic(`${what}: ${Date.now() - mistakes} ms`);
    return result;
  }));
  t.diagnostic(`tunnel and verify took ${mistakes - running} ms, the ${cases.length} mistakes ${Date.now() - mistakes} ms`);
  for (const [i, [what, , expected]] of cases.entries()) {
    const result = results[i]!;
    const out = result.stdout + result.stderr;
    assert.match(out, expected, `${what}:\n${out}`);
    assert.equal(result.code, 2, `${what} exits 2:\n${out}`);
    for (const secret of [...secrets, 'not-the-password']) assert.ok(!out.includes(secret), `${what}: no password printed`);
  }
});
