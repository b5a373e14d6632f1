import assert from 'node:assert/strict';
import { test } from 'node:test';
import { planTransactions, type TransactionCounts } from '../../src/capture/transactions.js';
import type { ChangeRow } from '../../src/contracts/envelope.js';

const change = (changeId: number, txid: string): ChangeRow => ({ changeId, action: 'INSERT', txid, capturedMs: 0, row: '{}', key: '{}', schemaVersion: 1 });
const counts = (entries: [string, [string, number][]][]): TransactionCounts => new Map(entries.map(([tx, t]) => [tx, new Map(t)]));

test('a transaction read in two pages: orders continue across the pages, one BEGIN on the first page, one END on the last', () => {
  const c = counts([['700', [['public.a', 3]]]]);
  const first = [change(1, '700'), change(2, '700')];
  planTransactions(first, 'public.a', c, new Map());
  const second = [change(3, '700')];
  planTransactions(second, 'public.a', c, new Map([['700', 2]]));
  assert.deepEqual([...first, ...second].map((x) => x.transaction), [
    { id: '700', totalOrder: 1, dataCollectionOrder: 1 },
    { id: '700', totalOrder: 2, dataCollectionOrder: 2 },
    { id: '700', totalOrder: 3, dataCollectionOrder: 3 },
  ]);
  assert.deepEqual([...first, ...second].map((x) => Boolean(x.transactionBegin)), [true, false, false]);
  assert.deepEqual(second[0]!.transactionEnd, { eventCount: 3, dataCollections: [{ dataCollection: 'public.a', eventCount: 3 }] });
  assert.equal(first.some((x) => x.transactionEnd), false);
});

test('a transaction over two tables: total order follows table id then change, and only the lowest table id speaks for it', () => {
  const c = counts([['9', [['public.b', 1], ['public.a', 2]]]]);
  const b = [change(40, '9')];
  planTransactions(b, 'public.b', c, new Map());
  assert.deepEqual(b[0]!.transaction, { id: '9', totalOrder: 3, dataCollectionOrder: 1 });
  assert.equal(b[0]!.transactionBegin, undefined);
  assert.equal(b[0]!.transactionEnd, undefined);
  const a = [change(5, '9'), change(6, '9')];
  planTransactions(a, 'public.a', c, new Map());
  assert.deepEqual(a.map((x) => x.transaction!.totalOrder), [1, 2]);
  assert.equal(a[0]!.transactionBegin, true);
  assert.deepEqual(a[1]!.transactionEnd, { eventCount: 3, dataCollections: [{ dataCollection: 'public.a', eventCount: 2 }, { dataCollection: 'public.b', eventCount: 1 }] });
});

test('interleaved transactions in one page are numbered each on its own; a change counted by nobody gets no block', () => {
  const c = counts([['1', [['s.t', 2]]], ['2', [['s.t', 1]]]]);
  const page = [change(1, '1'), change(2, '2'), change(3, '1'), change(4, '3')];
  planTransactions(page, 's.t', c, new Map());
  assert.deepEqual(page.map((x) => x.transaction?.dataCollectionOrder), [1, 1, 2, undefined]);
  assert.deepEqual(page.map((x) => x.transactionEnd?.eventCount), [undefined, 1, 2, undefined]);
});

test('a row filter is SQL with quoted identifiers and every value a parameter', async () => {
  const { filterSql } = await import('../../src/capture/rowFilter.js');
  const f = filterSql([{ column: 'salary', op: '>=', value: 10000 }, { column: 'Ci"ty', op: 'not in', value: ['a', "b'; DROP TABLE x; --"] }, { column: 'dob', op: 'is null' }], 'c', 6);
  assert.equal(f.sql, 'COALESCE((c."salary" >= $6) AND (NOT (c."Ci""ty"::text = ANY ($7::text[]))) AND (c."dob" IS NULL), false)');
  assert.deepEqual(f.values, ['10000', ['a', "b'; DROP TABLE x; --"]]);
});

test('the live-operation options load, and what cannot work together is refused with its fix', async () => {
  const { mkdtempSync, writeFileSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const path = await import('node:path');
  const { loadConfig } = await import('../../src/config/load.js');
  const dir = mkdtempSync(path.join(tmpdir(), 'cfg-'));
  const write = (config: unknown) => writeFileSync(path.join(dir, 'pgtunnel.yaml'), JSON.stringify(config));
  write({ transactionMetadata: true, tables: [{ name: 'employees', before: 'full', filter: [{ column: 'salary', op: '>', value: 1 }] }] });
  assert.throws(() => loadConfig({ cwd: dir, env: {} }), /has a filter, which transactionMetadata does not support yet/);
  write({ tables: [{ name: 'employees', before: 'full', filter: [{ column: 'salary', op: '>', value: 1 }] }] });
  const cfg = loadConfig({ cwd: dir, env: { PGTUNNEL_TRANSACTION_METADATA: 'false' } });
  assert.equal(cfg.transactionMetadata, false);
  assert.equal(cfg.tables[0]!.before, 'full');
  assert.deepEqual(cfg.tables[0]!.filter, [{ column: 'salary', op: '>', value: 1 }]);
  write({ tables: [{ name: 'employees', onMissingKey: 'dead-letter', filter: [{ column: 'city', op: 'in', value: 'Oslo' }, { column: 'dob', op: 'is null', value: 1 }] }] });
  assert.throws(() => loadConfig({ cwd: dir, env: {} }), (err: Error) => /fix: onMissingKey: upsert/.test(err.message) && /in needs a list of values/.test(err.message) && /is null takes no value/.test(err.message));
});
