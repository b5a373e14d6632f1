import assert from 'node:assert/strict';
import { test } from 'node:test';
import { classify } from '../../src/errors.js';

test('errors are classified into retry, unreachable and fatal', () => {
  assert.equal(classify(Object.assign(new Error('could not serialize access'), { code: '40001' })).errorClass, 'retryable');
  assert.equal(classify(Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), { code: 'ECONNREFUSED' })).errorClass, 'unreachable');
  assert.equal(classify(Object.assign(new Error('terminating connection due to administrator command'), { code: '57P01' })).errorClass, 'retryable');
  const missing = classify(Object.assign(new Error('relation "x" does not exist'), { code: '42P01' }));
  assert.equal(missing.errorClass, 'fatal');
  assert.match(missing.hint!, /create the table/);
  assert.equal(classify(new Error('boom')).retryable, false);
});
