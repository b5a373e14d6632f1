import assert from 'node:assert/strict';
import diagnostics from 'node:diagnostics_channel';
import { test } from 'node:test';
import { LiveHistory } from '../../src/instruments/liveHistory.js';
import { Metrics } from '../../src/instruments/metrics.js';
import { telemetry } from '../../src/instruments/telemetry.js';

const value = async (m: Metrics, name: string, labels: Record<string, string> = {}) =>
  (await m.registry.getSingleMetric(name)!.get()).values.find((v) => Object.entries(labels).every(([k, l]) => v.labels[k] === l))?.value ?? 0;

test('telemetry is published on named diagnostics channels any code in the process can subscribe to', () => {
  const seen: unknown[] = [];
  const listener = (m: unknown) => seen.push(m);
  diagnostics.subscribe('pgtunnel:applied', listener);
  try {
    telemetry.applied('public.employees', 'c', 3);
  } finally {
    diagnostics.unsubscribe('pgtunnel:applied', listener);
  }
  telemetry.applied('public.employees', 'c', 4);
  assert.deepEqual(seen, [{ table: 'public.employees', op: 'c', n: 3 }]);
});

test('with nobody subscribed a call publishes nothing: it only asks the channel', () => {
  const channel = diagnostics.channel('pgtunnel:captured') as diagnostics.Channel & { publish: unknown };
  assert.equal(channel.hasSubscribers, false);
  let published = 0;
  channel.publish = () => published++;
  try {
    telemetry.captured('public.employees', { c: 1 });
    assert.equal(published, 0);
    const unsubscribe = () => diagnostics.unsubscribe('pgtunnel:captured', noop);
    const noop = () => {};
    diagnostics.subscribe('pgtunnel:captured', noop);
    telemetry.captured('public.employees', { c: 1 });
    unsubscribe();
    assert.equal(published, 1, 'the same call publishes once someone listens');
  } finally {
    delete (channel as { publish?: unknown }).publish;
  }
});

test('the Prometheus metrics count what is published while they are subscribed', async () => {
  const metrics = new Metrics();
  try {
    telemetry.captured('public.employees', { c: 2, u: 1 });
    telemetry.applied('public.employees', 'u', 5);
    telemetry.retried('consumer', 'unreachable');
    telemetry.groupCommitFailed();
    telemetry.deadLettered({ time: 't', table: 'public.employees', errorClass: 'rule', message: 'm' });
    telemetry.observeLatencies([4, 40]);
    telemetry.assigned('i1', new Map([['t', [0, 1, 2]]]), 1);
    assert.equal(await value(metrics, 'pgtunnel_changes_captured_total', { op: 'c' }), 2);
    assert.equal(await value(metrics, 'pgtunnel_changes_captured_total', { op: 'u' }), 1);
    assert.equal(await value(metrics, 'pgtunnel_changes_applied_total', { op: 'u' }), 5);
    assert.equal(await value(metrics, 'pgtunnel_retries_total', { part: 'consumer' }), 1);
    assert.equal(await value(metrics, 'pgtunnel_group_commit_failures_total'), 1);
    assert.equal(await value(metrics, 'pgtunnel_changes_dead_lettered_total', { class: 'rule' }), 1);
    assert.equal(await value(metrics, 'pgtunnel_consumer_assigned_partitions', { topic: 't' }), 3);
    assert.match(await metrics.registry.metrics(), /pgtunnel_latency_seconds_count 2/);
  } finally {
    metrics.close();
  }
  telemetry.applied('public.employees', 'u', 5);
  assert.equal(await value(metrics, 'pgtunnel_changes_applied_total', { op: 'u' }), 5, 'closed metrics count no more');
});

test('the live history sums each second and keeps the 20 newest dead letters while started', () => {
  const live = new LiveHistory();
  telemetry.applied('t', 'c', 100);
  live.start();
  try {
    telemetry.captured('t', { c: 3, d: 4 });
    telemetry.applied('t', 'c', 6);
    telemetry.observeLatencies([30, 10, 20]);
    for (let i = 0; i < 25; i++) telemetry.deadLettered({ time: String(i), table: 't', errorClass: 'rule', message: `m${i}` });
    telemetry.assigned('i1', new Map([['t', [1]]]), 2);
    live.tick();
  } finally {
    live.stop();
  }
  telemetry.applied('t', 'c', 100);
  live.tick();
  assert.deepEqual(live.history.map(({ captured, applied, p50, p99 }) => ({ captured, applied, p50, p99 })), [{ captured: 7, applied: 6, p50: 20, p99: 30 }, { captured: 0, applied: 0, p50: null, p99: null }]);
  assert.equal(live.deadLetters.length, 20);
  assert.equal(live.deadLetters[0]!.message, 'm24');
  assert.deepEqual(live.membership?.assigned, { t: [1] });
  assert.equal(live.membership?.generation, 2, 'the group generation, so a restart without a rebalance shows');
});
