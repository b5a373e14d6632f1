import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import pino from 'pino';
import { Health } from '../../src/instruments/health.js';
import { processMetrics } from '../../src/instruments/metrics.js';
import { GroupOffsets, warnAfterFailures } from '../../src/pipeline/groupOffsets.js';
import { waitFor } from '../helpers/services.js';

function logger() {
  const lines: { level: number; msg: string }[] = [];
  const sink = new Writable({ write(chunk, _enc, done) { lines.push(JSON.parse(String(chunk))); done(); } });
  return { log: pino({ level: 'info' }, sink), lines };
}

/** A message whose commit fails `failures` times, then succeeds; counts its attempts. */
function message(partition: number, failures: number) {
  const m = { topic: 't', partition, attempts: 0, commit: async () => {
    m.attempts++;
    if (m.attempts <= failures) throw Object.assign(new Error('NOT_COORDINATOR'), { code: 'PLT_KFK_PROTOCOL' });
  } };
  return m;
}

const failuresCounted = async () => (await processMetrics().registry.getSingleMetric('pgtunnel_group_commit_failures_total')!.get()).values[0]?.value ?? 0;
const until = (what: string, check: () => boolean) => waitFor(what, async () => check(), 20_000, 10);

test('a failed group commit of an idle partition is retried on its own until it succeeds; a run of failures warns, counts and degrades health, then recovers', async () => {
  const { log, lines } = logger();
  const health = new Health(undefined, 'test');
  const offsets = new GroupOffsets(log);
  const before = await failuresCounted();
  const m = message(0, warnAfterFailures);
  offsets.note([m], health);
  await until('the commit to succeed after its failures', () => m.attempts === warnAfterFailures + 1);
  assert.equal((await failuresCounted()) - before, warnAfterFailures);
  assert.equal(lines.filter((l) => l.level === 40 && /group offset commits failed in a row/.test(l.msg)).length, 1);
  await until('health to recover', () => health.parts['group offsets']?.state === 'ok');
  assert.ok(lines.some((l) => /succeed again/.test(l.msg)));
  await offsets.settle(100);
});

test('a newer commit of a partition supersedes an older failed one, which is not retried', async () => {
  const { log } = logger();
  const offsets = new GroupOffsets(log);
  const old = message(1, 100);
  offsets.note([old]);
  await until('the first failure', () => old.attempts === 1);
  const newer = message(1, 0);
  offsets.note([newer]);
  await until('the newer commit', () => newer.attempts === 1);
  // settling retries every failed commit still wanted at once: the superseded one is not among them
  await offsets.settle(1000);
  assert.equal(old.attempts, 1);
  assert.equal(newer.attempts, 1);
});
