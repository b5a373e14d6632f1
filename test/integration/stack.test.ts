import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';
import { createLogger } from '../../src/observe/log.js';
import { LocalStack } from '../../src/stack/localStack.js';

test('a running stack is reused, never restarted: up() starts nothing and reports every part running', { timeout: 60_000 }, async () => {
  const portOf = (url: string) => Number(new URL(url).port);
  const root = process.env.PGTUNNEL_TEST_STACK_ROOT!;
  const ports = {
    sourcePort: portOf(process.env.PGTUNNEL_TEST_SOURCE_SERVER!),
    targetPort: portOf(process.env.PGTUNNEL_TEST_TARGET_SERVER!),
    kafkaPort: Number(process.env.PGTUNNEL_TEST_BROKERS!.split(':')[1]),
    controllerPort: 0,
  };
  const stack = new LocalStack(path.resolve(root, '..'), createLogger('stack-test'), ports, root);
  const status = stack.status();
  assert.deepEqual(Object.values(status).map((s) => s.running), [true, true, true]);
  assert.deepEqual(await stack.up('postgres', 'postgres'), []);
});
