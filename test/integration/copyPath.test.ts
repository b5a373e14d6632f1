import assert from 'node:assert/strict';
import { test } from 'node:test';
import { describeTable } from '../../src/capture/catalog.js';
import { installTarget } from '../../src/capture/install.js';
import type { TableConfig } from '../../src/config/load.js';
import { applySession } from '../../src/apply/session.js';
import { TableStatements } from '../../src/apply/statements.js';
import { TargetWriter, type TableApply } from '../../src/apply/targetWriter.js';
import { snapshotRowToMessage, type TableRef } from '../../src/contracts/envelope.js';
import { createLogger } from '../../src/instruments/log.js';
import { connect } from '../../src/pg.js';
import { dlqTopicOf } from '../../src/names.js';
import { EnvelopeProducer, ensureTopics } from '../../src/transport/kafka.js';
import { DeadLetterWriter, type RawRecord } from '../../src/validate/deadLetters.js';
import { onCleanup, query, services, tunnelDatabases } from '../helpers/services.js';

/**
 * The byte path against the real target: a snapshot set of new keys goes by COPY straight into the table
 * (the session makes no staging table), values exact; a set holding a key the target has rolls its COPY
 * back and is upserted by the general path in the same transaction.
 */
const ddl = `CREATE TABLE things (id bigint PRIMARY KEY, name text, doc jsonb, price numeric(12,2), at timestamptz, raw bytea,
  made bigint GENERATED ALWAYS AS IDENTITY, twice numeric GENERATED ALWAYS AS (price * 2) STORED)`;
const names = ['plain', 'tab\there', 'back\\slash', 'new\nline', 'é ü 漢', 'quote"d', '\\N', ''];

function row(id: number, suffix = ''): Record<string, unknown> {
  return { id, name: `${names[id % names.length]}${suffix}`, doc: id % 3 === 0 ? null : JSON.stringify({ a: id, s: 'x\ty' }), price: id % 5 === 0 ? null : `${id}.25`, at: '2024-02-29T12:34:56.789+00:00', raw: `\\x${id.toString(16).padStart(4, '0')}`, made: id };
}

/** A row as row_to_json writes it: jsonb as its text in a JSON string (the capture's form), numbers bare. */
function rowText(r: Record<string, unknown>): string {
  return `{"id":${r.id},"name":${JSON.stringify(r.name)},"doc":${r.doc === null ? 'null' : JSON.stringify(r.doc)},"price":${r.price ?? 'null'},"at":${JSON.stringify(r.at)},"raw":${JSON.stringify(r.raw)},"made":${r.made},"twice":null}`;
}

test('a snapshot set of new keys goes by COPY into the table, exact; a set with a key the target has is upserted instead', { timeout: 120_000 }, async (t) => {
  const db = await tunnelDatabases(t, { createTables: false });
  await query(db.targetUrl, ddl);
  const target = await connect(db.targetUrl, 'target', 'pgtunnel copyPath test');
  onCleanup(t, () => target.end());
  await installTarget(target);
  await applySession(target, createLogger('copyPath'));
  const topic = `${db.topicPrefix}.public.things`;
  await ensureTopics({ kafkaBrokers: [services().brokers] }, [dlqTopicOf(topic)], 1);
  const producer = new EnvelopeProducer({ kafkaBrokers: [services().brokers] }, 'pgtunnel-copy-path');
  onCleanup(t, () => producer.close());
  const shape = await describeTable(target, { schema: 'public', name: 'things', key: ['id'] } as TableConfig, 'target');
  const table: TableApply = { table: 'public.things', statements: new TableStatements(shape), rules: [], onMissingKey: 'upsert', orderPolicy: 'park' };
  const writer = new TargetWriter(target, new Map([[topic, table]]), async () => 1, new DeadLetterWriter(producer));
  const ref: TableRef = { db: 'db1', schema: 'public', name: 'things', key: ['id'], topic, topicPrefix: db.topicPrefix };
  let offset = 0;
  const records = (rows: Record<string, unknown>[]): RawRecord[] => rows.map((r) => {
    const m = snapshotRowToMessage(ref, { row: rowText(r), key: `{"id":${r.id}}` }, 1, Date.now());
    return { topic, partition: 0, offset: BigInt(offset++), key: m.key, value: m.value, valueBytes: Buffer.from(m.value!) };
  });
  const staged = async () => Number((await target.query<{ n: string }>("SELECT count(*) AS n FROM pg_class WHERE relname LIKE 'pgtunnel_stage_%' AND pg_table_is_visible(oid)")).rows[0]!.n);
  const stored = async () => (await query<Record<string, unknown>>(db.targetUrl, "SELECT id::int, name, doc::text, price::text, to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS') AS at, raw::text, made::int, twice::text FROM things ORDER BY id"));
  const expected = (rows: Record<string, unknown>[]) => rows.map((r) => ({
    id: r.id, name: r.name, doc: r.doc === null ? null : JSON.stringify(JSON.parse(r.doc as string)).replace(/":/g, '": ').replace(/,"/g, ', "'),
    price: r.price, at: '2024-02-29T12:34:56.789', raw: r.raw, made: r.made, twice: r.price === null ? null : (Number(r.price) * 2).toFixed(2),
  }));

  const first = Array.from({ length: 300 }, (_, i) => row(i + 1));
  assert.equal((await writer.apply(records(first))).applied, 300);
  assert.equal(await staged(), 0, 'the set of new keys went by COPY, without a staging table');
  assert.deepEqual(await stored(), expected(first));

  // a re-snapshot of 10 keys the target has, beside 10 new ones: the COPY's unique violation hands the set to the upsert
  const second = Array.from({ length: 20 }, (_, i) => row(i + 291, ' again'));
  assert.equal((await writer.apply(records(second))).applied, 20);
  assert.equal(await staged(), 1, 'the set with existing keys went through the staging table');
  const all = [...first.slice(0, 290), ...second];
  assert.deepEqual(await stored(), expected(all));
});
