import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import pg from 'pg';
import { rowJson } from '../../src/capture/changeReader.js';
import { LogicalRows, type LogicalChange } from '../../src/capture/logicalRows.js';
import { decodePgOutput, type Relation } from '../../src/capture/pgoutput.js';
import { onCleanup, tunnelDatabases } from '../helpers/services.js';

// Logical capture builds a page's row text itself for types whose row_to_json output is a fixed function of
// their text: generated values of each such type go through a real source and pgoutput, and the row and key
// text must equal the source's own row_to_json (the trigger path's row text) byte for byte.

const columns = ['id', 'i2', 'i4', 'i8', 'num', 'flag', 'txt', 'vc', 'bp', 'nm', 'u', 'o', 'd', 'j', 'jb'] as const;
const ddl = `CREATE TABLE local_types (id int PRIMARY KEY, i2 int2, i4 int4, i8 int8, num numeric, flag bool, txt text, vc varchar(20),
  bp char(6), nm name, u uuid, o oid, d date, j json, jb jsonb)`;

/** Text PostgreSQL accepts (no NUL), with what JSON escapes differently across implementations. */
const text = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 12 }),
  fc.string({ unit: 'grapheme', maxLength: 6 }),
  fc.constantFrom('', '"', '\\', '\u0001\u001f\u007f', '\b\f\n\r\t', '\u2028\u2029', '</script>', 'null', ' padded  '),
).map((s) => s.replaceAll('\u0000', ''));
const digits = fc.bigInt({ min: 0n, max: 10n ** 30n }).map(String);
const numeric = fc.oneof(
  fc.tuple(fc.boolean(), digits, fc.option(digits)).map(([neg, a, b]) => `${neg ? '-' : ''}${a}${b === null ? '' : `.${b}`}`),
  fc.tuple(fc.integer({ min: -1, max: 9 }), fc.integer({ min: -20, max: 20 })).map(([m, e]) => `${m}e${e}`),
  fc.constantFrom('NaN', 'Infinity', '-Infinity', '0.000', '-0'),
);
const date = fc.oneof(
  fc.date({ min: new Date('0001-01-01T00:00:00Z'), max: new Date('9999-12-31T00:00:00Z'), noInvalidDate: true }).map((d) => d.toISOString().slice(0, 10)),
  fc.constantFrom('infinity', '-infinity', '0044-03-15 BC', '12345-06-07', '0001-01-01'),
);
const json = fc.jsonValue({ maxDepth: 2 }).map((v) => JSON.stringify(v));
const row = fc.record({
  i2: fc.integer({ min: -32768, max: 32767 }).map(String),
  i4: fc.integer().map(String),
  i8: fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }).map(String),
  num: numeric,
  flag: fc.boolean().map(String),
  txt: text,
  vc: text.map((s) => [...s].slice(0, 20).join('')),
  bp: text.map((s) => [...s].slice(0, 6).join('')),
  nm: text.map((s) => [...s].slice(0, 10).join('')),
  u: fc.uuid(),
  o: fc.integer({ min: 0, max: 4294967295 }).map(String),
  d: date,
  j: json.map((s) => ` ${s} `),
  jb: json,
}).chain((r) => fc.record(Object.fromEntries(Object.entries(r).map(([k, v]) => [k, fc.option(fc.constant(v))])) as Record<keyof typeof r, fc.Arbitrary<string | null>>));

test('capture: logical, a page\'s row and key text built without the source equal the source\'s row_to_json byte for byte (every local type, NULLs, NaN, BC dates, control characters)', { timeout: 180_000 }, async (t) => {
  const db = await tunnelDatabases(t, { createTables: false });
  const client = new pg.Client({ connectionString: db.sourceUrl });
  await client.connect();
  onCleanup(t, () => client.end());
  await client.query(`${ddl}; CREATE PUBLICATION local_types_pub FOR TABLE local_types`);
  await client.query("SELECT pg_create_logical_replication_slot('local_types_slot', 'pgoutput')");
  onCleanup(t, () => client.query("SELECT pg_drop_replication_slot('local_types_slot')").catch(() => {}));
  const json = new Set(['j', 'jb']);
  const reference = `SELECT ${rowJson('t', [...columns], new Set(), 'NULL', json)} AS row, ${rowJson('t', ['id'])} AS key FROM local_types t ORDER BY id`;
  // counts the statements `rows` sends: a page of local types alone must send none
  let sent = 0;
  const query = client.query.bind(client) as (...a: unknown[]) => unknown;
  const counted = new Proxy(client, {
    get: (c, p) => (p === 'query' ? (...a: unknown[]) => { sent += 1; return query(...a); } : Reflect.get(c, p)),
  });
  let id = 0;
  let localPages = 0;

  await fc.assert(fc.asyncProperty(fc.array(row, { minLength: 1, maxLength: 12 }), async (rows) => {
    await client.query('TRUNCATE local_types');
    for (const r of rows) {
      await client.query(`INSERT INTO local_types VALUES (${columns.map((_, i) => `$${i + 1}`).join(', ')})`, [++id, ...columns.slice(1).map((c) => r[c as keyof typeof r])]);
    }
    const changes: LogicalChange[] = [];
    let relation: Relation | undefined;
    const { rows: messages } = await client.query<{ data: Buffer }>("SELECT data FROM pg_logical_slot_get_binary_changes('local_types_slot', NULL, NULL, 'proto_version', '1', 'publication_names', 'local_types_pub')");
    for (const { data } of messages) {
      const m = decodePgOutput(data);
      if (m.tag === 'relation') relation = m.relation;
      if (m.tag === 'insert') changes.push({ action: 'INSERT', lsn: 0n, xid: 0, commitTimeMs: 0, relation: relation!, schemaVersion: 1, values: m.after });
    }
    assert.equal(changes.length, rows.length);
    const before = sent;
    const built = await new LogicalRows(['id'], new Set(), new Set(), '').rows(counted, changes);
    const { rows: expected } = await client.query<{ row: string; key: string }>(reference);
    assert.deepEqual(built.map((r) => ({ row: r.row, key: r.key })), expected);
    // NaN and ±Infinity numerics and dates other than ISO's YYYY-MM-DD are the source's to write
    const sourceOnly = rows.some((r) => (r.num !== null && !/^-?[0-9]/.test(r.num)) || (r.d !== null && /BC|infinity/.test(r.d)));
    if (!sourceOnly) {
      assert.equal(sent, before, 'a page of local types alone asked the source nothing');
      localPages++;
    }
  }), { numRuns: 60 });
  assert.ok(localPages > 0, 'some pages were built without the source');
});

test('capture: logical, masked columns and types outside the local set are still written by the source (the same text as before)', { timeout: 60_000 }, async (t) => {
  const db = await tunnelDatabases(t, { createTables: false });
  const client = new pg.Client({ connectionString: db.sourceUrl });
  await client.connect();
  onCleanup(t, () => client.end());
  await client.query("CREATE TABLE mixed (id int PRIMARY KEY, secret text, f float8); INSERT INTO mixed VALUES (1, 'x', 0.1), (2, NULL, 'NaN')");
  const relation: Relation = { oid: 1, schema: 'public', name: 'mixed', replicaIdentity: 'd', columns: [{ name: 'id', typeOid: 23, typeMod: -1, isKey: true }, { name: 'secret', typeOid: 25, typeMod: -1, isKey: false }, { name: 'f', typeOid: 701, typeMod: -1, isKey: false }] };
  const change = (values: string[]): LogicalChange => ({ action: 'INSERT', lsn: 0n, xid: 0, commitTimeMs: 0, relation, schemaVersion: 1, values });
  const masked = await new LogicalRows(['id'], new Set(['f']), new Set(['secret']), 'salt').rows(client, [change(['1', 'x', '0.1'])]);
  const [hash] = (await client.query<{ h: string }>("SELECT encode(sha256(convert_to('salt' || 'x', 'UTF8')), 'hex') AS h")).rows;
  assert.equal(masked[0]!.row, `{"id":1,"secret":"${hash!.h}"}`);
  const floats = await new LogicalRows(['id'], new Set(), new Set(), '').rows(client, [change(['1', 'x', '0.1']), change(['2', null as unknown as string, 'NaN'])]);
  const { rows: expected } = await client.query<{ row: string }>('SELECT row_to_json(m)::text AS row FROM mixed m ORDER BY id');
  assert.deepEqual(floats.map((r) => r.row), expected.map((r) => r.row));
});
