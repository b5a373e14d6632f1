import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { commandOf, configFileOf, mainHeapArgs, mainOldSpaceMb, mainSemiSpaceMb, oldSpaceBoundOf, oldSpaceMbFor } from '../../src/cli/mainHeap.js';

const node = '/usr/bin/node';
const cli = '/opt/pgtunnel/bin/pgtunnel.js';
const semi = `--max-semi-space-size=${mainSemiSpaceMb}`;

test('run and demo re-execute with the heap bounded; short commands and sizes already given do not', () => {
  assert.deepEqual(mainHeapArgs([node, cli, 'run', '--role', 'consumer'], []), [semi, cli, 'run', '--role', 'consumer']);
  assert.deepEqual(mainHeapArgs([node, cli, 'run'], [], '', 192), [semi, '--max-old-space-size=192', cli, 'run']);
  assert.deepEqual(mainHeapArgs([node, cli, '-c', 'run.yaml', 'demo'], ['--enable-source-maps']), ['--enable-source-maps', semi, cli, '-c', 'run.yaml', 'demo']);
  assert.equal(mainHeapArgs([node, cli, '-c', 'run', 'status'], [], '', 192), undefined, 'a config file named run is not the command');
  assert.equal(mainHeapArgs([node, cli, 'status'], []), undefined);
  assert.equal(mainHeapArgs([node, cli], []), undefined);
  assert.equal(mainHeapArgs([node, cli, 'run'], ['--max-semi-space-size=16']), undefined);
  assert.equal(mainHeapArgs([node, cli, 'run'], [], '--inspect --max_semi_space_size=64'), undefined);
  // each flag the user gave stands on its own; the other is still added
  assert.deepEqual(mainHeapArgs([node, cli, 'run'], ['--max-semi-space-size=16'], '', 192), ['--max-semi-space-size=16', '--max-old-space-size=192', cli, 'run']);
  assert.deepEqual(mainHeapArgs([node, cli, 'run'], [], '--max-old-space-size=4096', 192), [semi, cli, 'run']);
  assert.deepEqual(mainHeapArgs([node, cli, 'run'], [], '--max-heap-size=512', 192), [semi, cli, 'run']);
  assert.equal(mainHeapArgs([node, cli, 'run'], ['--max-semi-space-size=16', '--max_old_space_size=300'], '', 192), undefined);
  assert.equal(commandOf([node, cli, '--config=x.yaml', 'run']), 'run');
  assert.equal(configFileOf([node, cli, '--config=x.yaml', 'run']), 'x.yaml');
  assert.equal(configFileOf([node, cli, '-c', 'y.yaml', 'run']), 'y.yaml');
  assert.equal(configFileOf([node, cli, 'run', '-c', 'late.yaml']), undefined, 'the global option comes before the command');
  assert.equal(oldSpaceBoundOf(['--max-old-space-size=300'], '--max-old-space-size=100'), 300, 'the command line over NODE_OPTIONS');
  assert.equal(oldSpaceBoundOf([], '--inspect --max_old_space_size=100'), 100);
  assert.equal(oldSpaceBoundOf(['--max-semi-space-size=2']), undefined);
});

test('the old-space bound grows by the transactional apply\'s held bytes, and only for it', () => {
  assert.equal(oldSpaceMbFor({ apply: 'per-partition', transactionBufferBytes: 64 * 2 ** 20 }), mainOldSpaceMb);
  assert.equal(oldSpaceMbFor({ apply: 'transactional', transactionBufferBytes: 64 * 2 ** 20 }), mainOldSpaceMb + 192);
});

// The cap only counts if V8 applies it: a flag set after the isolate started is ignored (v8.setFlagsFromString).
test('the re-executed process keeps its pid and its young generation stays within the cap under allocation', (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'pgtunnel-main-heap-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'churn.mjs');
  const script = `
    import v8 from 'node:v8';
    import { capMainHeap } from ${JSON.stringify(new URL('../../src/cli/mainHeap.js', import.meta.url).href)};
    const pid = process.env.FIRST_PID ?? String(process.pid);
    process.env.FIRST_PID = pid;
    await capMainHeap([...process.argv, 'run']);
    const live = [];
    for (let i = 0; i < 2e6; i++) { live.push({ i, s: 'x' + i }); if (live.length > 50000) live.length = 0; }
    const young = v8.getHeapSpaceStatistics().find((s) => s.space_name === 'new_space').space_size;
    console.log(JSON.stringify({ first: pid, now: String(process.pid), young, limit: v8.getHeapStatistics().heap_size_limit, execArgv: process.execArgv }));`;
  writeFileSync(file, script);
  // the default config (no PGTUNNEL_* variables, no pgtunnel.yaml in the directory): the shipped bound
  const plain = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('PGTUNNEL_')));
  const run = (env: Record<string, string>) => {
    const r = spawnSync(process.execPath, [file], { env: { ...plain, ...env }, cwd: dir, encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    return JSON.parse(r.stdout) as { first: string; now: string; young: number; limit: number; execArgv: string[] };
  };
  const capped = run({ NODE_OPTIONS: '' });
  assert.equal(capped.now, capped.first, 'execve: the same process, no parent left resident');
  assert.ok(capped.execArgv.includes(`--max-semi-space-size=${mainSemiSpaceMb}`), JSON.stringify(capped.execArgv));
  // Two semi-spaces of the cap, plus the few 256 kB pages V8 may hold beyond them for a moment (seen under load in
  // CI: 4 MB + 3 and + 4 pages); V8's default on this size of machine is 32 MB.
  const bound = 4 * mainSemiSpaceMb * 2 ** 20;
  assert.ok(capped.young <= bound, `new space ${capped.young} B`);
  // V8's heap limit is the old-space bound plus the young generation (three semi-spaces' worth); its default here is GBs
  assert.ok(capped.execArgv.includes(`--max-old-space-size=${mainOldSpaceMb}`), JSON.stringify(capped.execArgv));
  assert.ok(capped.limit <= (mainOldSpaceMb + 8 * mainSemiSpaceMb) * 2 ** 20, `heap limit ${capped.limit} B`);
  const chosen = run({ NODE_OPTIONS: '--max-semi-space-size=16 --max-old-space-size=2048' });
  assert.ok(chosen.young > bound, `the user's size stands: new space ${chosen.young} B`);
  assert.ok(chosen.limit > 2048 * 2 ** 20, `the user's old space stands: heap limit ${chosen.limit} B`);
});

// Past the bound V8 aborts the process: the guard must see the live set coming and say so, classified, first.
test('a live set growing toward the bound is named by the guard before V8 would abort', (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'pgtunnel-heap-guard-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'grow.mjs');
  writeFileSync(file, `
    import { HeapGuard } from ${JSON.stringify(new URL('../../src/cli/mainHeap.js', import.meta.url).href)};
    const guard = new HeapGuard().start();
    const live = [];
    // 1 MB of live objects a turn: the guard's observer runs between turns, as between a tunnel's awaits
    while (!guard.signal.aborted) {
      live.push(Array.from({ length: 2 ** 14 }, (_, i) => ({ i })));
      await new Promise((r) => setImmediate(r));
    }
    console.log(JSON.stringify({ code: guard.outgrown.code, message: guard.outgrown.message, hint: guard.outgrown.hint, held: live.length }));`);
  const r = spawnSync(process.execPath, ['--max-old-space-size=48', file], { encoding: 'utf8', timeout: 120_000 });
  assert.equal(r.status, 0, `V8 ended the process: ${r.signal ?? ''} ${r.stderr.slice(-400)}`);
  const out = JSON.parse(r.stdout) as { code: string; message: string; hint: string };
  assert.equal(out.code, 'PGT_THREAD_MEMORY');
  assert.match(out.message, /main thread's live heap reached \d+ MB of its 48 MB old-space bound/);
  assert.match(out.hint, /max-old-space-size/);
});
