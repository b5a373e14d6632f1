import assert from 'node:assert/strict';
import { test } from 'node:test';
import { classify } from '../../src/errors.js';
import { ProtocolError, ResponseError } from '@platformatic/kafka';

test('errors are classified into retry, unreachable and fatal', () => {
  assert.equal(classify(Object.assign(new Error('could not serialize access'), { code: '40001' })).errorClass, 'retryable');
  assert.equal(classify(Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), { code: 'ECONNREFUSED' })).errorClass, 'unreachable');
  assert.equal(classify(Object.assign(new Error('terminating connection due to administrator command'), { code: '57P01' })).errorClass, 'retryable');
  const missing = classify(Object.assign(new Error('relation "x" does not exist'), { code: '42P01' }));
  assert.equal(missing.errorClass, 'fatal');
  assert.match(missing.hint!, /create the table/);
  assert.equal(classify(new Error('boom')).retryable, false);
});

test('a commit that meets a group rebalance is retried, not fatal (the 2.x client ends the stream with it)', () => {
  // The client's own error classes, as its commit path raises them (canRetry is false for these ids).
  const rebalance = new ProtocolError('REBALANCE_IN_PROGRESS');
  assert.equal(rebalance.canRetry, false);
  assert.equal(classify(rebalance).errorClass, 'retryable');
  assert.equal(classify(new ResponseError(28, 8, { '/topics/0/partitions/0': [22, null] }, {})).errorClass, 'retryable');
  assert.equal(classify(new ProtocolError('INVALID_GROUP_ID')).errorClass, 'fatal');
});
