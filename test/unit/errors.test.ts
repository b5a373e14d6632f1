import assert from 'node:assert/strict';
import { test } from 'node:test';
import { classify, maskUrl } from '../../src/errors.js';

test('passwords in URLs are masked', () => {
  assert.equal(maskUrl('connect to postgres://app:s3cret@db:5432/x failed'), 'connect to postgres://app:***@db:5432/x failed');
  assert.equal(maskUrl('postgres://postgres@127.0.0.1:5433/db1'), 'postgres://postgres@127.0.0.1:5433/db1');
});

test('errors are classified into retry, unreachable and fatal', () => {
  assert.equal(classify(Object.assign(new Error('could not serialize access'), { code: '40001' })).errorClass, 'retryable');
  assert.equal(classify(Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), { code: 'ECONNREFUSED' })).errorClass, 'unreachable');
  assert.equal(classify(Object.assign(new Error('terminating connection due to administrator command'), { code: '57P01' })).errorClass, 'retryable');
  const missing = classify(Object.assign(new Error('relation "x" does not exist'), { code: '42P01' }));
  assert.equal(missing.errorClass, 'fatal');
  assert.match(missing.hint!, /create the table/);
  assert.equal(classify(new Error('boom')).retryable, false);
});
