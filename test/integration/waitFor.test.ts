import assert from 'node:assert/strict';
import { test } from 'node:test';
import { waitFor } from '../helpers/services.js';
import { TunnelProcess } from '../helpers/tunnelProcess.js';

// The test's timeout is below the waits' deadlines: only a wait that gives up at once passes.
test('a wait gives up at once when the process under test exits, with its exit code and output', { timeout: 30_000 }, async () => {
  const tunnel = new TunnelProcess({}, ['no-such-command']);
  await assert.rejects(waitFor('a condition the process would have made true', async () => false, 120_000, 20, [tunnel]), (err: Error) => {
    assert.match(err.message, /gave up waiting for a condition the process would have made true: the tunnel \(pgtunnel no-such-command\) exited with [1-9]/);
    assert.match(err.message, /its output ends:\n.*unknown command 'no-such-command'/);
    return true;
  });
});

test('a check that reads the exit itself gets its answer, and a later wait is not failed by that expected exit', { timeout: 30_000 }, async () => {
  const tunnel = new TunnelProcess({}, ['no-such-command']);
  const code = await waitFor('the exit code', async () => tunnel.child.exitCode ?? undefined, 120_000, 20, [tunnel]);
  assert.notEqual(code, 0);
  let checks = 0;
  assert.equal(await waitFor('something else', async () => ++checks >= 3 && 'held', 120_000, 20, [tunnel]), 'held');
});

test("a check's errors are retried, and the last one is reported with its stack at the deadline", { timeout: 30_000 }, async () => {
  let calls = 0;
  await assert.rejects(waitFor('a table that never appears', async () => {
    calls++;
    throw new Error(`relation does not exist (${calls})`);
  }, 200, 10), (err: Error) => {
    assert.match(err.message, /timed out after 200 ms waiting for a table that never appears \(last error: Error: relation does not exist \((\d+)\)\n\s+at /);
    assert.ok(calls > 1, 'retried');
    assert.match(String((err.cause as Error).message), new RegExp(`\\(${calls}\\)`));
    return true;
  });
});
