import assert from 'node:assert/strict';
import { test } from 'node:test';
import { classify, TunnelError, unexpectedStack } from '../../src/errors.js';
import { fromWire, toWire } from '../../src/pipeline/threadMessages.js';

/** As a worker's fatal error reaches the main thread: classified there, structured-cloned, rebuilt here. */
const across = (err: unknown) => fromWire(structuredClone(toWire(err)), 'consumer');

test("a side's fatal error crosses threads with its classification, so the process exits as it would on one thread", () => {
  const config = new TunnelError('PGT_PRIVILEGES', 'the apply role lacks INSERT', { errorClass: 'config', hint: 'GRANT INSERT ON ...' });
  const unreachable = classify(Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), { code: 'ECONNREFUSED' }));
  for (const original of [config, unreachable]) {
    const rebuilt = across(original);
    assert.ok(rebuilt instanceof TunnelError);
    assert.deepEqual(
      { code: rebuilt.code, message: rebuilt.message, errorClass: rebuilt.errorClass, decision: rebuilt.decision, hint: rebuilt.hint, unexpected: rebuilt.unexpected },
      { code: original.code, message: original.message, errorClass: original.errorClass, decision: original.decision, hint: original.hint, unexpected: false },
    );
    assert.equal(unexpectedStack(rebuilt), undefined, 'a known error prints no stack');
  }
  // a bug: still unexpected, and its report carries the stack of where it was thrown, in the worker
  const bug = new TypeError('failpoint apply.write: a bug-like error in this code');
  const rebuilt = across(bug);
  assert.equal(rebuilt.unexpected, true);
  assert.equal(rebuilt.errorClass, 'fatal');
  assert.equal(unexpectedStack(rebuilt), unexpectedStack(bug));
  assert.match(unexpectedStack(rebuilt) ?? '', /threadMessages\.test/);
});
