import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import { query, tunnelDatabases, waitFor } from '../helpers/services.js';
import { runCli, TunnelProcess } from '../helpers/tunnelProcess.js';

const alertsFile = fileURLToPath(new URL('../../../examples/prometheus/alerts.yml', import.meta.url));

async function httpUrl(tunnel: TunnelProcess): Promise<string> {
  await tunnel.waitForLog('dashboard at http://', 30_000);
  return tunnel.output.match(/dashboard at (http:\/\/[^ )"]+)/)![1]!;
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
  const consumer = TunnelProcess.spawn(t, env, ['run', '--role', 'consumer']);
  const url = await httpUrl(consumer);
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

  // Later measures above the thresholds warn no more.
  await consumer.waitForLog('above changeTableWarnSeconds');
  const warnedAt = sample(metrics, 'pgtunnel_oldest_unpublished_change_seconds', 'public.employees')!;
  await waitFor('two more measures', async () => (sample(await (await fetch(`${url}metrics`)).text(), 'pgtunnel_oldest_unpublished_change_seconds', 'public.employees') ?? 0) > warnedAt + 4, 30_000, 500);
  assert.equal(count(consumer.output, 'above changeTableWarnRows'), 1, consumer.output);
  assert.equal(count(consumer.output, 'above changeTableWarnSeconds'), 1, consumer.output);

  // A producer drains it: back below, said once.
  TunnelProcess.spawn(t, env, ['run', '--role', 'producer']);
  await waitFor('the change table drained', async () => {
    const text = await (await fetch(`${url}metrics`)).text();
    return sample(text, 'pgtunnel_change_table_rows', 'public.employees') === 0 && sample(text, 'pgtunnel_oldest_unpublished_change_seconds', 'public.employees') === 0;
  }, 60_000, 200);
  await consumer.waitForLog('back below changeTableWarnRows');
  await consumer.waitForLog('back below changeTableWarnSeconds');
  assert.equal(count(consumer.output, 'back below changeTableWarnRows'), 1);
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
  const leader = await TunnelProcess.start(t, db.env);
  const metrics = await (await fetch(`${await httpUrl(leader)}metrics`)).text();
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

  // A second producer of the same table stands by, and says so.
  const standby = TunnelProcess.spawn(t, { ...db.env, PGTUNNEL_GROUP_ID: `${db.topicPrefix}-other` }, ['run', '--role', 'producer']);
  const standbyUrl = await httpUrl(standby);
  await standby.waitForLog('producer standing by');
  assert.equal(sample(await (await fetch(`${standbyUrl}metrics`)).text(), 'pgtunnel_producer_standby', 'public.employees'), 1);
});
