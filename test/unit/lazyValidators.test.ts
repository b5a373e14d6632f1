import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Admin, ajv } from '../../src/transport/kafkaLib.js';

// transport/kafkaLib.ts makes the client's option validators compile on first use: they must still judge.
test('the Kafka client loaded through kafkaLib compiles its validators on first use, and they still refuse bad options', async () => {
  assert.equal((Object.getPrototypeOf(ajv).compile as { lazy?: boolean }).lazy, true, 'the client\'s own ajv is the one patched');
  assert.throws(
    () => new Admin({ clientId: 'lazy-validators', bootstrapBrokers: ['127.0.0.1:1'], strict: true, retries: -5 }),
    (err: Error) => /retries/.test(err.message),
  );
  const admin = new Admin({ clientId: 'lazy-validators', bootstrapBrokers: ['127.0.0.1:1'], strict: true, retries: 0 });
  await admin.close();
});
