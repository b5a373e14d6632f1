import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { test, type TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';

/** A process's children, grandchildren and so on (from /proc), deepest first. */
function descendants(pid: number): number[] {
  const children = new Map<number, number[]>();
  for (const entry of readdirSync('/proc').filter((e) => /^\d+$/.test(e))) {
    try {
      const ppid = Number(readFileSync(`/proc/${entry}/stat`, 'utf8').replace(/^.*\) /, '').split(' ')[1]);
      children.set(ppid, [...(children.get(ppid) ?? []), Number(entry)]);
    } catch {
      // ended while listed
    }
  }
  const walk = (p: number): number[] => (children.get(p) ?? []).flatMap((c) => [...walk(c), c]);
  return walk(pid);
}

/**
 * Runs a bench script to its end. Stopped with the test (its timeout), the script and the tunnels it started
 * are killed and the failure shows how far it got.
 */
function runScript(t: TestContext, script: string, args: string[]): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [fileURLToPath(new URL(`../../bench/${script}`, import.meta.url)), ...args], { env: process.env, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    const stop = () => {
      for (const pid of [...descendants(child.pid!), child.pid!]) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // already gone
        }
      }
      reject(new Error(`bench/${script} stopped with the test; its output:\n${output.slice(-4000)}`));
    };
    t.signal.addEventListener('abort', stop, { once: true });
    child.once('exit', (c) => {
      t.signal.removeEventListener('abort', stop);
      resolve({ code: c, output });
    });
  });
}

test('the benchmark harness runs every phase end to end at its smallest size (nothing asserted about speed)', { timeout: 600_000 }, async (t) => {
  const { code, output } = await runScript(t, 'run.js', ['--smoke', '--no-record']);
  assert.equal(code, 0, output);
  for (const measure of ['latency p50', 'latency p99', 'keeps up with one-row transactions', 'max throughput', 'apply throughput, 1 consumer process', 'apply throughput, 3 consumer processes', 'snapshot \\d+ rows', 'insert tps', 'update tps', 'bulk UPDATE', 'peak RSS']) {
    assert.match(output, new RegExp(`\\| ${measure}`), `${measure} in the table`);
  }
});

test('the capture-mode comparison runs end to end: each variant in its mode and capturing (nothing asserted about speed)', { timeout: 240_000 }, async (t) => {
  const { code, output } = await runScript(t, 'captureModes.js', ['--rounds', '1', '--seconds', '1', '--rows', '2000']);
  assert.equal(code, 0, output);
  for (const variant of ['no trigger', 'old capture', 'new capture, direct mode', 'new capture, by-name json mode']) {
    assert.match(output, new RegExp(`^\\| ${variant}[^|]*\\| \\d+ \\| [\\d.]+ `, 'm'), `${variant} in the table`);
  }
});

test('the soak runs, stops by itself and says whether RSS stayed flat (nothing asserted about memory)', { timeout: 180_000 }, async (t) => {
  const { output } = await runScript(t, 'soak.js', ['--minutes', '0.2', '--every', '3', '--warmup', '0.05']);
  assert.match(output, /\| 0\.2 min \| 5\/s \| \d+, all in the target \|.*\| (yes|\*\*no\*\*) \|/, output.slice(-3000));
});
