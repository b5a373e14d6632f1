import assert from 'node:assert/strict';
import pg from 'pg';
import { test } from 'node:test';
import { classify, decide, isRefusedChange, isTableLevel, TunnelError, unexpectedStack, type Decision } from '../../src/errors.js';
import { MultipleErrors, NetworkError, ProtocolError, ResponseError, TimeoutError } from '@platformatic/kafka';

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

/** An error as node-postgres raises it from the server's ErrorResponse. */
const pgError = (code: string, message = 'from the server') => Object.assign(new pg.DatabaseError(message, message.length, 'error'), { code });

/** Code → decision, over the error policy tables of src/errors.ts. */
const cases: [string, unknown, Decision][] = [
  ['connection exception class 08', pgError('08006'), 'retry'],
  ['serialization failure', pgError('40001'), 'retry'],
  ['deadlock', pgError('40P01'), 'retry'],
  ['lock not available', pgError('55P03'), 'retry'],
  ['admin shutdown', pgError('57P01'), 'retry'],
  ['crash shutdown', pgError('57P02'), 'retry'],
  ['cannot connect now', pgError('57P03'), 'retry'],
  ['too many connections', pgError('53300'), 'retry'],
  ['socket refused', Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), { code: 'ECONNREFUSED' }), 'retry'],
  ['invalid text for a type (class 22)', pgError('22P02'), 'dead-letter'],
  ['numeric out of range', pgError('22003'), 'dead-letter'],
  ['unique violation (class 23)', pgError('23505'), 'dead-letter'],
  ['check violation', pgError('23514'), 'dead-letter'],
  ['datatype mismatch', pgError('42804'), 'dead-letter'],
  ['a refused change wrapped by another layer', new Error('copy failed', { cause: pgError('22P02') }), 'dead-letter'],
  ['a retryable code wrapped', new Error('write failed', { cause: pgError('40P01') }), 'retry'],
  ['undefined table', pgError('42P01'), 'stop-table'],
  ['undefined column', pgError('42703'), 'stop-table'],
  ['no privilege', pgError('42501', 'permission denied for table employees'), 'stop-table'],
  ['no unique key for ON CONFLICT', pgError('42P10'), 'stop-table'],
  ['undefined function', pgError('42883'), 'stop-table'],
  ['missing database', pgError('3D000'), 'stop-table'],
  ['password refused', pgError('28P01'), 'stop-process'],
  ['syntax error (our SQL: a bug)', pgError('42601'), 'stop-process'],
  ['internal error', pgError('XX000'), 'stop-process'],
  ['a TypeError in the write path (a bug)', new TypeError("Cannot read properties of undefined (reading 'key')"), 'stop-process'],
  ['a plain Error', new Error('boom'), 'stop-process'],
  ['a thrown string', 'boom', 'stop-process'],
  ['poison', new TunnelError('PGT_POISON', 'not an envelope', { errorClass: 'poison' }), 'dead-letter'],
  ['Kafka rebalance', new ProtocolError('REBALANCE_IN_PROGRESS'), 'retry'],
  ['Kafka fenced static member', new ProtocolError('FENCED_INSTANCE_ID'), 'retry'],
  ['Kafka broker restarting', new ProtocolError('BROKER_NOT_AVAILABLE'), 'retry'],
  ['Kafka lost the producer session', new ProtocolError('UNKNOWN_PRODUCER_ID'), 'retry'],
  ['Kafka sequence gap (a send failed before it)', new ProtocolError('OUT_OF_ORDER_SEQUENCE_NUMBER'), 'retry'],
  ['Kafka retriable protocol error', new ProtocolError('NOT_LEADER_OR_FOLLOWER'), 'retry'],
  ['Kafka network error', new NetworkError('Connection closed'), 'retry'],
  ['Kafka request timeout', new TimeoutError('Request timed out'), 'retry'],
  ['Kafka too large', new ProtocolError('MESSAGE_TOO_LARGE'), 'stop-process'],
  ['Kafka ACL', new ProtocolError('TOPIC_AUTHORIZATION_FAILED'), 'stop-process'],
  ['Kafka invalid group id', new ProtocolError('INVALID_GROUP_ID'), 'stop-process'],
  // an aggregate's own canRetry is unset: what its members say decides
  ['Kafka response of a non-retriable error', new ResponseError(11, 2, { '/groups/0': [24, null] }, {}), 'stop-process'],
  ['Kafka response of a retriable error', new ResponseError(0, 9, { '/topics/0/partitions/0': [6, null] }, {}), 'retry'],
  ['Kafka aggregate of a retriable and a refused error', new MultipleErrors('two', [new NetworkError('closed'), new ProtocolError('INVALID_REQUEST')]), 'stop-process'],
];

for (const [what, err, decision] of cases) {
  test(`error policy: ${what} → ${decision}`, () => {
    assert.equal(decide(err), decision);
    assert.equal(classify(err).retryable, decision === 'retry');
  });
}

test('only the refused-change codes are record-level; an unexpected error keeps its stack for the report', () => {
  assert.equal(isRefusedChange(pgError('23502')), true);
  assert.equal(isRefusedChange(pgError('42P01')), false);
  assert.equal(isTableLevel(pgError('42703')), true);
  const bug = new TypeError('x is not a function');
  assert.equal(classify(bug).unexpected, true);
  assert.match(unexpectedStack(bug)!, /TypeError: x is not a function\n\s+at /);
  assert.equal(unexpectedStack(pgError('23505')), undefined);
  assert.equal(classify(pgError('23505')).unexpected, false);
});
