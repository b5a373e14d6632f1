// Transactional apply's pure core: when a transaction is complete, which goes first, and what offset is stored.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { TransactionBuffer } from '../../src/apply/transactionBuffer.js';
import { envelopeTail } from '../../src/apply/envelopeTail.js';
import { parentsFirst } from '../../src/apply/foreignKeys.js';

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

/** An envelope as pgtunnel writes it, with its source commit time. */
const committed = (id: string, order: number, ms: number) =>
  `{"before":null,"after":{"id":1},"source":{"version":"1","connector":"pgtunnel","name":"p\\"x","ts_ms":${ms},"snapshot":"false","db":"d","schema":"public","table":"a","txId":${id},"lsn":1,"schema_version":1},"op":"u","ts_ms":9,"transaction":{"id":"${id}","total_order":${order},"data_collection_order":${order}}}`;

test('transactions that share no row go in source commit order; none after one still waiting for its parts', () => {
  assert.equal(envelopeTail(committed('5', 1, 1234))?.sourceMs, 1234);
  const b = new TransactionBuffer(() => 2);
  const add = (topic: string, partition: number, offset: number, key: string, id: string, ms: number) =>
    b.add(rec(topic, partition, offset, key, committed(id, 1, ms)), `public.${topic}`, envelopeTail(committed(id, 1, ms)), 'x');
  // 21 committed after 20 and arrives first; 22 (committed between them) arrives without its END
  add('b', 1, 0, 'k2', '21', 300);
  b.end(rec('tx', 0, 0, ''), '21', new Map([['public.b', 1]]));
  add('c', 0, 0, 'k3', '22', 200);
  add('a', 0, 0, 'k1', '20', 100);
  b.end(rec('tx', 0, 1, ''), '20', new Map([['public.a', 1]]));
  assert.deepEqual(b.take(100).map((u) => u.id), ['20'], '21 waits for 22, which committed before it');
  b.end(rec('tx', 0, 2, ''), '22', new Map([['public.c', 1]]));
  assert.deepEqual(b.take(100).map((u) => u.id), ['22', '21']);
});

test('a table of another tunnel named in END does not keep a transaction waiting', () => {
  const b = new TransactionBuffer(() => 1, new Map(), (table) => table === 'public.a');
  b.add(rec('a', 0, 0, 'k1', committed('30', 1, 5)), 'public.a', envelopeTail(committed('30', 1, 5)), 'x');
  b.end(rec('tx', 0, 0, ''), '30', new Map([['public.a', 1], ['public.elsewhere', 4]]));
  assert.deepEqual(b.take(100).map((u) => u.id), ['30']);
});

test('over budget the buffer spills what cannot go now: an incomplete transaction first, then the last committed', () => {
  const b = new TransactionBuffer(() => 1);
  const add = (offset: number, key: string, id: string, ms: number) =>
    b.add(rec('a', 0, offset, key, committed(id, 1, ms)), 'public.a', envelopeTail(committed(id, 1, ms)), 'x');
  // 30 and 31 are complete and held by the gate; 32 (the smallest) still waits for its END
  add(0, 'k1', '30', 100);
  b.end(rec('tx', 0, 0, ''), '30', new Map([['public.a', 1]]));
  add(1, 'k2', '31', 200);
  b.end(rec('tx', 0, 1, ''), '31', new Map([['public.a', 1]]));
  b.add(rec('a', 0, 2, 'k', committed('32', 1, 150)), 'public.a', envelopeTail(committed('32', 1, 150)), 'x');
  assert.equal(b.spillCandidate()?.id, '32', 'the incomplete one, though it holds fewer bytes');
  b.spilled(b.spillCandidate()!, 1);
  assert.equal(b.spillCandidate()?.id, '31', 'then the complete one committed last: it goes last');
  b.spilled(b.spillCandidate()!, 1);
  assert.equal(b.spillCandidate()?.id, '30');
});
