import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { commandOf, mainHeapArgs, mainSemiSpaceMb } from '../../src/cli/mainHeap.js';

const node = '/usr/bin/node';
const cli = '/opt/pgtunnel/bin/pgtunnel.js';

test('run and demo re-execute with the semi-space capped; short commands and a size already given do not', () => {
  assert.deepEqual(mainHeapArgs([node, cli, 'run', '--role', 'consumer'], []), [`--max-semi-space-size=${mainSemiSpaceMb}`, cli, 'run', '--role', 'consumer']);
  assert.deepEqual(mainHeapArgs([node, cli, '-c', 'run.yaml', 'demo'], ['--enable-source-maps']), ['--enable-source-maps', `--max-semi-space-size=${mainSemiSpaceMb}`, cli, '-c', 'run.yaml', 'demo']);
  assert.equal(mainHeapArgs([node, cli, '-c', 'run', 'status'], []), undefined, 'a config file named run is not the command');
  assert.equal(mainHeapArgs([node, cli, 'status'], []), undefined);
  assert.equal(mainHeapArgs([node, cli], []), undefined);
  assert.equal(mainHeapArgs([node, cli, 'run'], ['--max-semi-space-size=16']), undefined);
  assert.equal(mainHeapArgs([node, cli, 'run'], [], '--inspect --max_semi_space_size=64'), undefined);
  assert.equal(commandOf([node, cli, '--config=x.yaml', 'run']), 'run');
});

// The cap only counts if V8 applies it: a flag set after the isolate started is ignored (v8.setFlagsFromString).
test('the re-executed process keeps its pid and its young generation stays within the cap under allocation', (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'pgtunnel-main-heap-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'churn.mjs');
  const script = `
    import v8 from 'node:v8';
    import { capMainYoungGeneration } from ${JSON.stringify(new URL('../../src/cli/mainHeap.js', import.meta.url).href)};
    const pid = process.env.FIRST_PID ?? String(process.pid);
    process.env.FIRST_PID = pid;
    capMainYoungGeneration([...process.argv, 'run']);
    const live = [];
    for (let i = 0; i < 2e6; i++) { live.push({ i, s: 'x' + i }); if (live.length > 50000) live.length = 0; }
    const young = v8.getHeapSpaceStatistics().find((s) => s.space_name === 'new_space').space_size;
    console.log(JSON.stringify({ first: pid, now: String(process.pid), young, execArgv: process.execArgv }));`;
  writeFileSync(file, script);
  const run = (env: Record<string, string>) => {
    const r = spawnSync(process.execPath, [file], { env: { ...process.env, ...env }, encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    return JSON.parse(r.stdout) as { first: string; now: string; young: number; execArgv: string[] };
  };
  const capped = run({ NODE_OPTIONS: '' });
  assert.equal(capped.now, capped.first, 'execve: the same process, no parent left resident');
  assert.ok(capped.execArgv.includes(`--max-semi-space-size=${mainSemiSpaceMb}`), JSON.stringify(capped.execArgv));
  // Two semi-spaces of the cap, plus the few 256 kB pages V8 may hold beyond them for a moment (seen under load in
  // CI: 4 MB + 3 and + 4 pages); V8's default on this size of machine is 32 MB.
  const bound = 4 * mainSemiSpaceMb * 2 ** 20;
  assert.ok(capped.young <= bound, `new space ${capped.young} B`);
  const chosen = run({ NODE_OPTIONS: '--max-semi-space-size=16' });
  assert.ok(chosen.young > bound, `the user's size stands: new space ${chosen.young} B`);
});
