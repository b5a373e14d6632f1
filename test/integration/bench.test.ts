import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const benchPath = fileURLToPath(new URL('../../bench/run.js', import.meta.url));

test('the benchmark harness runs end to end in quick mode (nothing asserted about speed)', { timeout: 120_000 }, async () => {
  const started = Date.now();
  const { code, output } = await new Promise<{ code: number | null; output: string }>((resolve) => {
    const child = spawn(process.execPath, [benchPath, '--quick', '--no-record'], { env: process.env, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    child.once('exit', (c) => resolve({ code: c, output }));
  });
  assert.equal(code, 0, output);
  for (const measure of ['latency p50', 'latency p99', 'keeps up with one-row transactions', 'max throughput', 'snapshot 20000 rows', 'insert tps', 'update tps', 'bulk UPDATE', 'peak RSS']) {
    assert.match(output, new RegExp(`\\| ${measure}`), `${measure} in the table`);
  }
  assert.ok(Date.now() - started < 60_000, `quick mode took ${Date.now() - started} ms`);
});
