import assert from 'node:assert/strict';
import { before, test } from 'node:test';
import { currentTestStack } from '../../testkit/testStack.js';
import { registryAnswers } from '../helpers/wireBytes.js';

// scripts/test.mjs starts the suite's registry beside the first files: wait until it answers
before(registryAnswers);

test('a running stack is reused, never restarted: up() starts nothing and reports every part running', { timeout: 60_000 }, async () => {
  const stack = currentTestStack();
  assert.deepEqual(Object.values(stack.status()).map((s) => s.running), [true, true, true]);
  assert.deepEqual(await stack.up('postgres', 'postgres'), []);
  // test.mjs starts the schema registry for the whole suite (and for tests that need it)
  if (process.env.PGTUNNEL_TEST_REGISTRY_URL) {
    assert.equal(stack.status(true).registry?.running, true);
    assert.deepEqual(await stack.up('postgres', 'postgres', true), []);
  }
});
