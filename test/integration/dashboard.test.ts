import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { onCleanup, query, tunnelDatabases, waitFor } from '../helpers/services.js';
import { TunnelProcess } from '../helpers/tunnelProcess.js';
import { chooseThreads, describeThreads } from '../../src/pipeline/threadChoice.js';

const rulesFile = fileURLToPath(new URL('../../../examples/employees-rules.yaml', import.meta.url));
const outputDir = fileURLToPath(new URL('../../../.pgtunnel/test-output/', import.meta.url));

async function dashboardUrl(tunnel: TunnelProcess): Promise<string> {
  await tunnel.waitForLog('dashboard at http://', 30_000);
  return tunnel.output.match(/dashboard at (http:\/\/[^ )"]+)/)![1]!;
}

test('/health, /ready and /metrics answer for orchestrators and Prometheus', { timeout: 60_000 }, async (t) => {
  const db = await tunnelDatabases(t);
  const tunnel = await TunnelProcess.start(t, db.env);
  const url = await dashboardUrl(tunnel);
  const health = await fetch(`${url}health`);
  assert.equal(health.status, 200);
  assert.equal((await health.json()).status, 'alive');
  const ready = await waitFor('ready', async () => {
    const res = await fetch(`${url}ready`);
    return res.status === 200 ? res.json() : undefined;
  }, 20_000, 200);
  assert.equal(ready.status, 'ready');
  await query(db.sourceUrl, "INSERT INTO employees (first_name, salary) VALUES ('m', 1), ('n', 2)");
  const metrics = await waitFor('applied changes in /metrics', async () => {
    const text = await (await fetch(`${url}metrics`)).text();
    return /pgtunnel_changes_applied_total\{table="public.employees",op="c"\} 2/.test(text) ? text : undefined;
  }, 20_000, 200);
  for (const name of ['pgtunnel_changes_captured_total', 'pgtunnel_latency_seconds_bucket', 'pgtunnel_batch_size_bucket', 'pgtunnel_checkpoint_age_seconds', 'pgtunnel_consumer_lag', 'pgtunnel_snapshot_rows', 'pgtunnel_consumer_rebalances_total', 'pgtunnel_consumer_assigned_partitions', 'pgtunnel_process_resident_memory_bytes']) {
    assert.ok(new RegExp(`^${name}`, 'm').test(metrics), `${name} in /metrics`);
  }
  // each side's own heap, from its worker thread, beside the main thread's; the process's series once
  for (const thread of ['main', 'producer', 'consumer']) {
    assert.ok(new RegExp(`^pgtunnel_nodejs_heap_size_used_bytes\\{thread="${thread}"\\} \\d`, 'm').test(metrics), `the ${thread} thread's heap in /metrics`);
  }
  assert.equal(metrics.match(/^pgtunnel_process_start_time_seconds /gm)?.length, 1, 'the process start time once');
  // where the sides run, and why: in the start log line and in status
  assert.match(tunnel.output, /"sides":"two worker threads \(threads: true\)".*"msg":"tunnel starting"/);
  await waitFor('the sides in /api/status', async () => {
    const body = (await (await fetch(`${url}api/status`)).json()) as { status: { processes: { sides?: string }[] } | null };
    return body.status?.processes.some((p) => p.sides === 'two worker threads (threads: true)');
  }, 20_000, 200);
  // The target goes away: readiness drops, liveness stays.
  const admin = db.targetUrl.replace(/\/[^/]+$/, '/postgres');
  await query(admin, `ALTER DATABASE ${db.topicPrefix} WITH ALLOW_CONNECTIONS false`);
  await query(admin, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '${db.topicPrefix}'`);
  await query(db.sourceUrl, "INSERT INTO employees (first_name) VALUES ('while away')");
  const notReady = await waitFor('not ready', async () => {
    const res = await fetch(`${url}ready`);
    return res.status === 503 ? res.json() : undefined;
  }, 20_000, 200);
  assert.equal(notReady.parts.consumer.state, 'waiting');
  assert.equal((await fetch(`${url}health`)).status, 200);
  await query(admin, `ALTER DATABASE ${db.topicPrefix} WITH ALLOW_CONNECTIONS true`);
  await tunnel.stop();
});

test('the dashboard shows a source change, a dead letter and the replication slot live, in a real browser', { timeout: 90_000 }, async (t) => {
  const db = await tunnelDatabases(t);
  // capture: logical, so the slot's lag and retained WAL are on the page too (the rest is the same in both modes)
  // the default threads: auto, whichever way this host's cores decide it (the other test forces the worker threads)
  const tunnel = await TunnelProcess.start(t, { ...db.env, PGTUNNEL_CONFIG: rulesFile, PGTUNNEL_CAPTURE: 'logical', PGTUNNEL_THREADS: 'auto' });
  assert.ok(tunnel.output.includes(`"sides":"${describeThreads(chooseThreads('auto'), 2)}"`), 'the start log line says where auto put the sides');
  const url = await dashboardUrl(tunnel);
  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  onCleanup(t, () => browser.close());
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  await page.goto(url);
  await page.waitForFunction(() => document.getElementById('phase')?.textContent === 'streaming', undefined, { timeout: 20_000 });
  assert.equal(await page.textContent('#applied-total'), '0');
  await page.waitForFunction(() => /consumer \S+-0: partitions \S+\[0,1,2\], \d+ rebalances/.test(document.getElementById('membership')?.textContent ?? ''), undefined, { timeout: 10_000 });

  await query(db.sourceUrl, "INSERT INTO employees VALUES (1, 'Ada', 'Lovelace', '2010-01-01', 'London', 20000)");
  await page.waitForFunction(() => document.getElementById('applied-total')?.textContent === '1', undefined, { timeout: 10_000 });

  await query(db.sourceUrl, "INSERT INTO employees VALUES (2, 'Low', 'Pay', '2010-01-01', 'Paris', 5000)");
  await page.waitForFunction(() => document.getElementById('dlq')?.textContent?.includes('salary-above-10000'), undefined, { timeout: 10_000 });
  assert.match((await page.textContent('#dlq')) ?? '', /rule salary-above-10000 key \{"emp_id":2\}/);
  await page.waitForFunction(() => document.getElementById('dead-total')?.textContent === '1', undefined, { timeout: 10_000 });
  assert.equal(await page.textContent('#state'), 'healthy');
  // per partition: the group offset committed in Kafka, the target's offset, the log end and Kafka's lag (keys 1 and 2 share a partition)
  assert.match((await page.textContent('#partitions thead')) ?? '', /group offset\s*target offset\s*log end\s*lag/);
  await page.waitForFunction(() => [...document.querySelectorAll<HTMLTableRowElement>('#partitions tbody tr')].some((tr) => [...tr.cells].slice(2).map((c) => c.textContent).join(' ') === '2 2 2 0'), undefined, { timeout: 15_000 });
  const slotRow = await page.waitForFunction(() => {
    const cells = [...(document.querySelector<HTMLTableRowElement>('#slots tbody tr')?.cells ?? [])].map((c) => c.textContent);
    return /^public\.employees pgtunnel_source_\w+ active, reserved [\d.]+ (B|kB|MB) [\d.]+ (B|kB|MB) no limit$/.test(cells.join(' ')) && cells.join(' ');
  }, undefined, { timeout: 15_000 });
  t.diagnostic(`slot row: ${String(await slotRow.jsonValue())}`);
  mkdirSync(outputDir, { recursive: true });
  const shot = path.join(outputDir, 'dashboard.png');
  await page.screenshot({ path: shot, fullPage: true });
  t.diagnostic(`screenshot: ${shot}`);
  // The open page polls every second; the tunnel still stops (how fast is bench's to measure: npm run bench -- --operations).
  assert.equal(await tunnel.stop(), 0);
});
