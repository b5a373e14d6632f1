import assert from 'node:assert/strict';
import { test } from 'node:test';
import { describeTable } from '../../src/capture/catalog.js';
import { installTarget } from '../../src/capture/install.js';
import type { TableConfig } from '../../src/config/load.js';
import { applySession } from '../../src/apply/session.js';
import { TableStatements, upsertCacheSize } from '../../src/apply/statements.js';
import { TargetWriter, type TableApply } from '../../src/apply/targetWriter.js';
import { createLogger } from '../../src/instruments/log.js';
import { connect } from '../../src/pg.js';
import { dlqTopicOf } from '../../src/names.js';
import { EnvelopeProducer, ensureTopics } from '../../src/transport/kafka.js';
import { DeadLetterWriter, type RawRecord } from '../../src/validate/deadLetters.js';
import { onCleanup, query, services, tunnelDatabases } from '../helpers/services.js';

/** c0…c9 stage through COPY; c10 (an array) sends its subsets down the JSON path, whose statements are cached. */
const columns = Array.from({ length: 11 }, (_, i) => `c${i}`);
const ddl = `CREATE TABLE wide (id int PRIMARY KEY, ${columns.map((c, i) => (i === 10 ? `${c} int[] DEFAULT '{7}'` : `${c} int DEFAULT -1`)).join(', ')})`;
const source = '"source":{"version":"0","connector":"pgtunnel","name":"p","ts_ms":1,"snapshot":"false","db":"d","schema":"public","table":"wide","txId":1,"lsn":1,"schema_version":1},"ts_ms":1';

type Row = Record<string, number | string>;
const valueOf = (c: string, n: number) => (c === 'c10' ? `{${n}}` : n);

function record(topic: string, offset: number, op: 'c' | 'u', row: Row): RawRecord {
  return { topic, partition: 0, offset: BigInt(offset), key: JSON.stringify({ id: row.id }), value: `{"op":"${op}","before":null,"after":${JSON.stringify(row)},${source}}` };
}

test('a forger sending thousands of distinct column subsets makes one staging table per target table; the statement cache stays at its cap; rows stay right', { timeout: 120_000 }, async (t) => {
  const db = await tunnelDatabases(t, { createTables: false });
  await query(db.targetUrl, ddl);
  const target = await connect(db.targetUrl, 'target', 'pgtunnel applyBounds');
  onCleanup(t, () => target.end());
  await installTarget(target);
  await applySession(target, createLogger('applyBounds'));
  const topic = `${db.topicPrefix}.public.wide`;
  await ensureTopics({ kafkaBrokers: [services().brokers] }, [dlqTopicOf(topic)], 1);
  const producer = new EnvelopeProducer({ kafkaBrokers: [services().brokers] }, 'pgtunnel-apply-bounds');
  onCleanup(t, () => producer.close());
  const shape = await describeTable(target, { schema: 'public', name: 'wide', key: ['id'] } as TableConfig, 'target');
  const table: TableApply = { table: 'public.wide', statements: new TableStatements(shape), rules: [], onMissingKey: 'upsert', orderPolicy: 'park' };
  const writer = new TargetWriter(target, new Map([[topic, table]]), async () => 1, new DeadLetterWriter(producer));

  const keys = 50;
  const expected = new Map<number, Row>();
  let offset = 0;
  // Inserts carry only c0: the columns they lack take the target's defaults, as with the per-subset staging.
  const inserts = Array.from({ length: keys }, (_, i) => ({ id: i + 1, c0: 0 }));
  for (const row of inserts) expected.set(row.id, { ...Object.fromEntries(columns.map((c) => [c, c === 'c10' ? '{7}' : -1])), ...row });
  assert.equal((await writer.apply(inserts.map((row) => record(topic, offset++, 'c', row)))).applied, keys);
  // 2,000 updates, each carrying its own subset of the columns: a column a record lacks keeps its value.
  const subsets = 2000;
  for (let start = 1; start <= subsets; start += keys) {
    const set: RawRecord[] = [];
    for (let mask = start; mask < start + keys && mask <= subsets; mask++) {
      const row: Row = { id: (mask % keys) + 1 };
      for (const [bit, c] of columns.entries()) if (mask & (1 << bit)) row[c] = valueOf(c, mask);
      Object.assign(expected.get(row.id as number)!, row);
      set.push(record(topic, offset++, 'u', row));
    }
    const result = await writer.apply(set);
    assert.equal(result.deadLettered, 0);
  }

  const staged = await query<{ n: number }>(db.targetUrl, "SELECT count(*)::int AS n FROM pg_class WHERE relpersistence = 't' AND relname LIKE 'pgtunnel_stage%'");
  assert.equal(staged[0]!.n, 1, 'one staging table for the one target table');
  assert.equal(table.statements.cachedUpserts, upsertCacheSize, 'the upsert cache filled up to its cap and no further');
  const rows = await query<Row>(db.targetUrl, `SELECT id, ${columns.map((c) => (c === 'c10' ? `${c}::text` : c)).join(', ')} FROM wide ORDER BY id`);
  assert.deepEqual(rows, [...expected.values()].sort((a, b) => (a.id as number) - (b.id as number)));
});
