// Strict source commit order's pure core: progress marks, the ends they wait for, and the release condition.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CommitWatermark, parseSnapshot, stallMs, visibleIn } from '../../src/apply/commitWatermark.js';
import { TransactionBuffer } from '../../src/apply/transactionBuffer.js';
import { envelopeTail } from '../../src/apply/envelopeTail.js';
import { progressMessage, progressOf } from '../../src/contracts/transaction.js';

test('a pg_snapshot sees what committed below xmin and below xmax outside its in-progress list', () => {
  const s = parseSnapshot('100:105:101,103')!;
  assert.deepEqual([99n, 100n, 101n, 102n, 103n, 104n, 105n].map((x) => visibleIn(x, s)), [true, true, false, true, false, true, false]);
  assert.equal(parseSnapshot('100:105:')?.xip.size, 0);
  assert.equal(parseSnapshot('not a snapshot'), undefined);
});

test('a PROGRESS record round-trips; END and BEGIN are not progress', () => {
  const m = progressMessage('p.transaction', 'public.a', '7:9:8', 123);
  assert.deepEqual(progressOf(m.value), { table: 'public.a', snapshot: '7:9:8' });
  assert.equal(progressOf('{"status":"END","id":"5","ts_ms":1,"event_count":1,"data_collections":[]}'), undefined);
  const withEnds = progressMessage('p.transaction', 'public.a', '7:9:8', 123, [40n, 0n]);
  assert.deepEqual(progressOf(withEnds.value), { table: 'public.a', snapshot: '7:9:8', ends: [40n, 0n] });
});

test('a mark carrying its producer\'s ends counts once the topic is read that far, however far the topic reaches now', () => {
  const w = new CommitWatermark(new Map([['public.a', 'ta']]));
  // behind a backlog: the marks were sent when the topic ended at 100 and 200; it is read up to 150
  w.progress('public.a', '10:10:', Date.now(), [100n]);
  w.progress('public.a', '20:20:', Date.now(), [200n]);
  assert.deepEqual(w.wantsEnds(), [], 'no end offsets to ask the broker for');
  w.readTo('ta', 0, 150n);
  w.settle();
  assert.deepEqual([w.passes('9'), w.passes('15')], [true, false]);
  w.readTo('ta', 0, 200n);
  w.settle();
  assert.equal(w.passes('15'), true);
});

test('a transaction passes once every table\'s mark is read up to the ends taken after it', () => {
  const w = new CommitWatermark(new Map([['public.a', 'ta'], ['public.b', 'tb']]));
  w.progress('public.b', '200:200:');
  w.progress('public.other', '900:900:'); // another tunnel's table: not waited for
  assert.deepEqual(w.wantsEnds(), ['tb']);
  w.ends('tb', [5n, 3n]);
  w.readTo('tb', 0, 5n);
  w.readTo('tb', 1, 3n);
  assert.equal(w.settle(), true);
  assert.equal(w.passes('150'), false, 'table a has reported nothing: 150 may have a predecessor in a');
  w.progress('public.a', '160:170:');
  w.ends('ta', [10n]);
  w.settle();
  assert.equal(w.passes('150'), false, 'a\'s topic is not read up to its end yet');
  w.readTo('ta', 0, 10n);
  w.settle();
  assert.equal(w.passes('150'), true);
  assert.equal(w.passes('175'), false, 'not visible in a\'s snapshot: something of a committed before it may come');
  assert.equal(w.passes('tb/0@4'), true, 'a record of no transaction is not held');
});

test('marks are counted in order: a later mark with later ends does not starve an earlier one', () => {
  const w = new CommitWatermark(new Map([['public.a', 'ta']]));
  w.progress('public.a', '10:10:');
  w.ends('ta', [4n]);
  w.progress('public.a', '20:20:');
  w.ends('ta', [9n]);
  w.readTo('ta', 0, 4n);
  w.settle();
  assert.deepEqual([w.passes('9'), w.passes('15')], [true, false]);
  w.readTo('ta', 0, 9n);
  w.settle();
  assert.equal(w.passes('15'), true);
});

test('a transaction held longer than the stall time says which table\'s progress it waits for', () => {
  const w = new CommitWatermark(new Map([['public.a', 'ta'], ['public.b', 'tb']]), Date.now());
  w.progress('public.b', '50:50:');
  w.ends('tb', [0n]);
  w.settle();
  assert.equal(w.passes('40'), false);
  assert.equal(w.stalled(), undefined, 'not yet long');
  assert.equal(w.passes('40'), false);
  const said = w.stalled(Date.now() + stallMs + 1);
  assert.match(said ?? '', /source transaction 40 .*public\.a \(no progress/);
  assert.doesNotMatch(said ?? '', /public\.b/);
  assert.equal(w.stalled(Date.now() + stallMs + 2), undefined, 'nothing held in the last round: no stall');
});

/** An envelope as pgtunnel writes it, with its source commit time. */
const committed = (id: string, ms: number) =>
  `{"before":null,"after":{"id":1},"source":{"version":"1","connector":"pgtunnel","name":"p","ts_ms":${ms},"snapshot":"false","db":"d","schema":"public","table":"a","txId":${id},"lsn":1,"schema_version":1},"op":"u","ts_ms":9,"transaction":{"id":"${id}","total_order":1,"data_collection_order":1}}`;

test('the buffer hands out only what the gate lets go, and in one millisecond the lower txid first', () => {
  const b = new TransactionBuffer(() => 1);
  const add = (topic: string, offset: number, id: string, ms: number) => {
    b.add({ topic, partition: 0, offset: BigInt(offset), key: `k${id}`, value: committed(id, ms) }, `public.${topic}`, envelopeTail(committed(id, ms)), 'x');
    b.end({ topic: 'tx', partition: 0, offset: BigInt(offset + 100), key: '', value: undefined }, id, new Map([[`public.${topic}`, 1]]));
  };
  add('b', 0, '12', 500); // committed after 11 in the same millisecond, arrived first
  add('a', 0, '11', 500);
  assert.deepEqual(b.take(100, () => false).map((u) => u.id), [], 'complete and first on their keys, but the gate is shut');
  assert.equal(b.held, 2);
  assert.deepEqual(b.take(100, () => true).map((u) => u.id), ['11', '12']);
});
