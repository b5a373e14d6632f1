import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseFailpoints } from '../../src/pipeline/failpoints.js';

test('failpoints: name[:n[:kill|throw]] arms the n-th pass; a bad count, mode or name is refused with the fix', () => {
  assert.deepEqual([...parseFailpoints('apply.after-commit:3,producer.after-publish,apply.write:1:throw')], [
    ['apply.after-commit', { left: 3, mode: 'kill' }], ['producer.after-publish', { left: 1, mode: 'kill' }], ['apply.write', { left: 1, mode: 'throw' }],
  ]);
  assert.deepEqual([...parseFailpoints('')], []);
  for (const bad of ['apply.after-commit:x', 'apply.after-commit:0', 'apply.after-commit:-2', 'apply.after-commit:1.5', 'apply.after-commit:', 'apply.after-comit:2', 'apply.write:1:explode', 'apply.write:1:throw:2']) {
    assert.throws(() => parseFailpoints(bad), (err: Error & { hint?: string }) => {
      assert.match(err.message, /PGTUNNEL_FAILPOINTS: ".*" is not <failpoint>\[:<n ≥ 1>\[:kill\|throw\]\]/, bad);
      assert.match(err.hint ?? '', /use one of producer\.after-publish, producer\.after-kafka-commit, apply\.after-commit, apply\.write, producer\.between-acks/);
      return true;
    }, `${bad} must be refused`);
  }
});
