// Transactional apply's pure core: when a transaction is complete, which goes first, and what offset is stored.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { TransactionBuffer, envelopeTail } from '../../src/apply/transactionBuffer.js';
import { parentsFirst } from '../../src/apply/transactionApply.js';

const envelope = (op: string, tx?: { id: string; order: number }) =>
  `{"before":null,"after":{"id":1},"source":{"txId":1},"op":"${op}","ts_ms":5${tx ? `,"transaction":{"id":"${tx.id}","total_order":${tx.order},"data_collection_order":${tx.order}}` : ''}}`;
const rec = (topic: string, partition: number, offset: number, key: string, value?: string) => ({ topic, partition, offset: BigInt(offset), key, value });

test('envelopeTail reads the op and transaction at the end only', () => {
  assert.deepEqual(envelopeTail(envelope('u', { id: '77', order: 2 })), { op: 'u', txId: '77', totalOrder: 2 });
  assert.deepEqual(envelopeTail(envelope('r')), { op: 'r' });
  assert.equal(envelopeTail('{"note":"\\"op\\":\\"c\\""}'), undefined);
});

test('a transaction goes when its END counts are met, after the earlier writer of a shared key', () => {
  const b = new TransactionBuffer(() => 2);
  // tx 10 writes a/k1 (p0) and b/k2 (p1); tx 11 writes a/k1 after it
  b.add(rec('a', 0, 0, 'k1', envelope('u', { id: '10', order: 1 })), 'public.a', envelopeTail(envelope('u', { id: '10', order: 1 })), 'x');
  b.add(rec('a', 0, 1, 'k1', envelope('u', { id: '11', order: 1 })), 'public.a', envelopeTail(envelope('u', { id: '11', order: 1 })), 'y');
  b.end(rec('tx', 0, 0, ''), '11', new Map([['public.a', 1]]));
  assert.deepEqual(b.take(100).map((u) => u.id), [], '11 waits behind 10 on k1');
  b.end(rec('tx', 0, 1, ''), '10', new Map([['public.a', 1], ['public.b', 1]]));
  assert.deepEqual(b.take(100).map((u) => u.id), [], '10 still lacks its part in b');
  assert.deepEqual(b.nextOffsets().find((o) => o.topic === 'a')?.next, 0n);
  b.add(rec('b', 1, 0, 'k2', envelope('u', { id: '10', order: 2 })), 'public.b', envelopeTail(envelope('u', { id: '10', order: 2 })), 'z');
  assert.deepEqual(b.take(100).map((u) => u.id), ['10', '11']);
  assert.deepEqual(b.nextOffsets().map((o) => `${o.topic}/${o.partition}:${o.next}`).sort(), ['a/0:2', 'b/1:1', 'tx/0:2']);
  assert.equal(b.held, 0);
});

test('parentsFirst puts referenced tables before the tables referencing them', () => {
  const order = parentsFirst([{ topic: 'lines', table: 'public.lines' }, { topic: 'orders', table: 'public.orders' }], new Map([['public.lines', new Set(['public.orders'])]]));
  assert.deepEqual(order, ['orders', 'lines']);
});
