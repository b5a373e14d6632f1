import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import { freePort } from '../../testkit/testStack.js';
import { InProcessTunnel } from '../helpers/inProcessTunnel.js';
import { query, tunnelDatabases, waitFor } from '../helpers/services.js';
import { runCli, TunnelProcess } from '../helpers/tunnelProcess.js';

const alertsFile = fileURLToPath(new URL('../../../examples/prometheus/alerts.yml', import.meta.url));

/** PGTUNNEL_* variables serving HTTP on a port chosen here, and that port's address. */
async function served(env: Record<string, string>): Promise<{ env: Record<string, string>; url: string }> {
  const port = await freePort();
  return { env: { ...env, PGTUNNEL_HTTP_HOST: '127.0.0.1', PGTUNNEL_HTTP_PORT: String(port) }, url: `http://127.0.0.1:${port}/` };
}

/** One sample of /metrics, e.g. gauge(text, 'pgtunnel_change_table_rows', 'public.employees'). */
function sample(metrics: string, name: string, table: string): number | undefined {
  const line = metrics.split('\n').find((l) => l.startsWith(`${name}{table="${table}"} `));
  return line === undefined ? undefined : Number(line.split(' ')[1]);
}

const count = (text: string, what: string) => text.split(what).length - 1;

test('a change table filling while no producer publishes shows in /metrics, status and the dashboard, and warns once per crossing', { timeout: 180_000 }, async (t) => {
  const db = await tunnelDatabases(t);
  const env = { ...db.env, PGTUNNEL_CHANGE_TABLE_WARN_ROWS: '10', PGTUNNEL_CHANGE_TABLE_WARN_SECONDS: '2' };
  const install = await runCli(['install'], env);
  assert.equal(install.code, 0, install.stderr);
  const { env: consumerEnv, url } = await served(env);
  const consumer = await InProcessTunnel.start(t, consumerEnv, { role: 'consumer' });
  const log = () => consumer.logLines.join('\n');
  await query(db.sourceUrl, "INSERT INTO employees (first_name, salary) SELECT 'g' || i, i FROM generate_series(1, 30) i");

  // Each /metrics request keeps the status poller measuring.
  const metrics = await waitFor('the backlog in /metrics', async () => {
    const text = await (await fetch(`${url}metrics`)).text();
    return sample(text, 'pgtunnel_change_table_rows', 'public.employees') === 30 && (sample(text, 'pgtunnel_oldest_unpublished_change_seconds', 'public.employees') ?? 0) > 2 ? text : undefined;
  }, 30_000, 200);
  assert.ok(sample(metrics, 'pgtunnel_change_table_bytes', 'public.employees')! > 0);

  type Api = { status: { tables: { changeTableRows: number; changeTableBytes: number; oldestUnpublishedSeconds: number }[] }; problems: string[] };
  // the gauges may come from the 30 s watch: the dashboard's report catches up at its next poll
  const api = await waitFor('the backlog in /api/status', async () => {
    const body = (await (await fetch(`${url}api/status`)).json()) as Api;
    return body.status?.tables[0]?.oldestUnpublishedSeconds > 2 ? body : undefined;
  }, 30_000, 200);
  assert.equal(api.status.tables[0]!.changeTableRows, 30);
  assert.ok(api.status.tables[0]!.changeTableBytes > 0);
  assert.ok(api.problems.some((p) => p.includes('30 unpublished changes')), api.problems.join('\n'));
  const status = await runCli(['status', '--json'], env);
  const table = JSON.parse(status.stdout).tables[0];
  assert.equal(table.changeTableRows, 30);
  assert.ok(table.oldestUnpublishedSeconds > 2 && table.changeTableBytes > 0);
  assert.match((await runCli(['status'], env)).stdout, /change table 30 rows, [\d.]+ kB, oldest unpublished \d+ s ago/);

  // The guard judges each measure as it is published (the log line is written before the event returns):
  // two more measures above the thresholds after the warning, and it has warned once, not per measure.
  const measures = consumer.events.recorded.length;
  await waitFor('two more measures above the thresholds', async () => {
    await fetch(`${url}metrics`); // keeps the status poller measuring
    return consumer.events.of('pgtunnel:change-table', measures).filter(({ event: m }) => m.table === 'public.employees' && m.rows > 10 && (m.oldestSeconds ?? 0) > 2).length >= 2;
  }, 30_000, 500);
  assert.equal(count(log(), 'above changeTableWarnRows'), 1, log());
  assert.equal(count(log(), 'above changeTableWarnSeconds'), 1, log());

  // A producer drains it: back below, said once.
  const drained = consumer.events.recorded.length;
  await InProcessTunnel.start(t, env, { role: 'producer' });
  await waitFor('the change table drained', async () => {
    const text = await (await fetch(`${url}metrics`)).text();
    return sample(text, 'pgtunnel_change_table_rows', 'public.employees') === 0 && sample(text, 'pgtunnel_oldest_unpublished_change_seconds', 'public.employees') === 0;
  }, 60_000, 200);
  await consumer.waitForEvents('pgtunnel:change-table', 'a measure of the drained table', (e) => e.some((m) => m.table === 'public.employees' && m.rows === 0), 30_000, drained);
  assert.equal(count(log(), 'back below changeTableWarnRows'), 1, log());
  assert.equal(count(log(), 'back below changeTableWarnSeconds'), 1, log());
});

/** Names a PromQL expression reads as series: label matchers, ranges, strings, grouping labels and functions left out. */
function seriesNames(expr: string): string[] {
  const functions = new Set(['sum', 'min', 'max', 'avg', 'count', 'rate', 'irate', 'increase', 'absent', 'and', 'or', 'unless', 'bool', 'offset',
    'max_over_time', 'min_over_time', 'avg_over_time', 'histogram_quantile', 'delta', 'deriv', 'changes', 'time', 'vector', 'scalar']);
  const bare = expr.replace(/"[^"]*"/g, '').replace(/\{[^}]*\}/g, '').replace(/\[[^\]]*\]/g, '').replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, '');
  return [...bare.matchAll(/[A-Za-z_:][A-Za-z0-9_:]*/g)].map((m) => m[0]).filter((n) => !functions.has(n));
}

test('every series the example Prometheus alerts read exists in a running tunnel\'s /metrics, the standby gauge included', { timeout: 120_000 }, async (t) => {
  const db = await tunnelDatabases(t);
  const leader = await served(db.env);
  await InProcessTunnel.start(t, leader.env);
  const metrics = await (await fetch(`${leader.url}metrics`)).text();
  const exposed = new Set([...metrics.matchAll(/^# TYPE (\S+) /gm)].map((m) => m[1]!));
  const rules = (parse(readFileSync(alertsFile, 'utf8')) as { groups: { rules: { alert: string; expr: string }[] }[] }).groups.flatMap((g) => g.rules);
  const read = new Set<string>();
  for (const rule of rules) {
    for (const name of seriesNames(rule.expr)) {
      read.add(name);
      // `up` is the series Prometheus itself records for every scrape
      assert.ok(name === 'up' || exposed.has(name), `${rule.alert} reads ${name}, which the tunnel's /metrics does not have`);
    }
  }
  for (const needed of ['up', 'pgtunnel_consumer_lag', 'pgtunnel_oldest_unpublished_change_seconds', 'pgtunnel_changes_dead_lettered_total', 'pgtunnel_producer_standby']) {
    assert.ok(read.has(needed), `an alert reads ${needed}`);
  }
  assert.equal(sample(metrics, 'pgtunnel_producer_standby', 'public.employees'), 0, 'the leader is not standing by');

  // A second producer of the same table stands by, and its gauge says so: a process, for /metrics of its own.
  const standby = await TunnelProcess.spawnServed(t, { ...db.env, PGTUNNEL_GROUP_ID: `${db.topicPrefix}-other` }, ['run', '--role', 'producer']);
  await waitFor('the standby\'s gauge at 1', async () => sample(await (await fetch(`${standby.url}metrics`)).text(), 'pgtunnel_producer_standby', 'public.employees') === 1, 60_000, 200);
});
