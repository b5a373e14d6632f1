import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const benchPath = fileURLToPath(new URL('../../bench/run.js', import.meta.url));

test('the benchmark harness runs every phase end to end at its smallest size (nothing asserted about speed)', { timeout: 600_000 }, async () => {
  const { code, output } = await new Promise<{ code: number | null; output: string }>((resolve) => {
    const child = spawn(process.execPath, [benchPath, '--smoke', '--no-record'], { env: process.env, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    child.once('exit', (c) => resolve({ code: c, output }));
  });
  assert.equal(code, 0, output);
  for (const measure of ['latency p50', 'latency p99', 'keeps up with one-row transactions', 'max throughput', 'apply throughput, 1 consumer process', 'apply throughput, 3 consumer processes', 'snapshot \\d+ rows', 'insert tps', 'update tps', 'bulk UPDATE', 'peak RSS']) {
    assert.match(output, new RegExp(`\\| ${measure}`), `${measure} in the table`);
  }
});

function runScript(script: string, args: string[]): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [fileURLToPath(new URL(`../../bench/${script}`, import.meta.url)), ...args], { env: process.env, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    child.once('exit', (c) => resolve({ code: c, output }));
  });
}

test('the capture-mode comparison runs end to end: each variant in its mode and capturing (nothing asserted about speed)', { timeout: 240_000 }, async () => {
  const { code, output } = await runScript('captureModes.js', ['--rounds', '1', '--seconds', '1', '--rows', '2000']);
  assert.equal(code, 0, output);
  for (const variant of ['no trigger', 'old capture', 'new capture, direct mode', 'new capture, by-name json mode']) {
    assert.match(output, new RegExp(`^\\| ${variant}[^|]*\\| \\d+ \\| [\\d.]+ `, 'm'), `${variant} in the table`);
  }
});

test('the soak runs, stops by itself and says whether RSS stayed flat (nothing asserted about memory)', { timeout: 180_000 }, async () => {
  const { output } = await runScript('soak.js', ['--minutes', '0.2', '--every', '3', '--warmup', '0.05']);
  assert.match(output, /\| 0\.2 min \| 5\/s \| \d+, all in the target \|.*\| (yes|\*\*no\*\*) \|/, output.slice(-3000));
});
