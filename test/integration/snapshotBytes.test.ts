import assert from 'node:assert/strict';
import { test } from 'node:test';
import pg from 'pg';
import { SnapshotReader } from '../../src/capture/snapshotReader.js';
import { fieldText, parseCopyRows, type CopyRows } from '../../src/capture/copyRows.js';
import { frameRows, snapshotFrame } from '../../src/contracts/envelopeBytes.js';
import { changeToMessages, opOf, snapshotRowToMessage, type TableRef } from '../../src/contracts/envelope.js';
import { onCleanup, query, services, tunnelDatabases, uniqueName } from '../helpers/services.js';
import { runCli } from '../helpers/tunnelProcess.js';
import path from 'node:path';
import { writeFileSync } from 'node:fs';
import { ChangeReader } from '../../src/capture/changeReader.js';
import { advance, type Position } from '../../src/capture/position.js';
import { loadConfig } from '../../src/config/load.js';
import { changeFrames, frameChanges } from '../../src/contracts/changeFrames.js';

// The byte path's oracle is the object path: the same chunks read both ways from a real PostgreSQL, every
// envelope and key compared byte for byte, across chunk boundaries and on the snapshot's final row.

const huge = 'x"\\\u2028'.repeat(300_000); // 1.5 MB of what JSON escapes and what it must not
const crafted = [
  `'q"u''o\\te\\"s' || chr(8232) || chr(8233) || E'\\n\\t\\r' || chr(1) || chr(127)`,
  `'back\\slash \\u0000 \\\\ "' || chr(92) || 'n'`,
  `'naïve ☃ 𝄞 emoji 🦄'`,
  `''`,
];

async function bothWays(url: string, reader: SnapshotReader, size: number) {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
    const objects = [];
    const pieces: CopyRows[] = [];
    for (let last: string | null = null; ; ) {
      const rows = await reader.readChunk(client, last, size);
      const bytes = await reader.readChunkBytes(client, last, size);
      assert.equal(bytes.count, rows.length, 'both paths read the same rows');
      objects.push(rows);
      pieces.push(bytes);
      if (rows.length < size) break;
      last = rows.at(-1)!.key;
      assert.equal(fieldText(bytes, bytes.count - 1, 0), last, 'the last key is the same text');
    }
    await client.query('COMMIT');
    return { objects, pieces };
  } finally {
    await client.end();
  }
}

test('snapshot bytes: prefix + row bytes + suffix equal the object path\'s envelopes, crafted values and chunk boundaries included', { timeout: 60_000 }, async (t) => {
  const name = uniqueName('snapbytes');
  await query(`${services().sourceServer}/postgres`, `CREATE DATABASE ${name}`);
  onCleanup(t, () => query(`${services().sourceServer}/postgres`, `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`));
  const url = `${services().sourceServer}/${name}`;
  await query(url, `CREATE TABLE "we""ird" (id int8, part text, t text, b bytea, n numeric, f float8, j jsonb, a text[], m text, PRIMARY KEY (id, part))`);
  const values = crafted.map((c, i) => `(${i}, ${c}, ${c}, '\\x00ff005c22'::bytea, 'NaN', 'Infinity', '{"k": "\\u2028 \\\\ \\"", "n": 1.000000000000000000001}', ARRAY[${c}, NULL], ${c})`);
  await query(url, `INSERT INTO "we""ird" VALUES ${values.join(', ')},
    (9223372036854775807, 'max', 'x', '', 123456789012345678901234567890.123456789, '-Infinity', 'null', '{}', 'm'),
    (-9223372036854775808, 'min', NULL, NULL, '-0.0', 1e-320, '[]', NULL, NULL)`);
  await query(url, `INSERT INTO "we""ird" VALUES (5, 'huge', $1, NULL, NULL, NULL, NULL, NULL, $1)`, [huge]);
  await query(url, `INSERT INTO "we""ird" SELECT g, 'p' || g, repeat('r', g % 50), NULL, g / 7.0, g, NULL, NULL FROM generate_series(100, 160) g`);
  const reader = new SnapshotReader('public', 'we"ird', new Set(['m']), 'a salt of sixteen+');
  reader.use({ columns: ['id', 'part', 't', 'b', 'n', 'f', 'j', 'a', 'm'], key: ['id', 'part'], schemaVersion: 3, json: new Set(['j']) });
  const table: TableRef = { db: name, schema: 'public', name: 'we"ird', key: ['id', 'part'], topic: 'x.public.we"ird', topicPrefix: 'x\u2028"' };
  const now = 1_765_000_000_123;
  const frame = snapshotFrame(table, 3, now);
  for (const size of [1, 7, 1000]) {
    const { objects, pieces } = await bothWays(url, reader, size);
    const total = objects.reduce((n, rows) => n + rows.length, 0);
    assert.equal(total, 68, `every row read in chunks of ${size}`);
    pieces.forEach((rows, p) => {
      const final = p === pieces.length - 1;
      const { values, ends } = frameRows({ data: rows.data, spans: rows.spans, stride: 4, offset: 2, count: rows.count }, frame, final);
      assert.equal(ends.at(-1) ?? 0, values.length, 'the buffer holds exactly the envelopes');
      objects[p]!.forEach((row, i) => {
        const expected = snapshotRowToMessage(table, row, 3, now, final && i === rows.count - 1);
        const got = values.subarray(i === 0 ? 0 : ends[i - 1], ends[i]);
        if (!got.equals(Buffer.from(expected.value!))) assert.equal(got.toString(), expected.value, `envelope of ${row.key} (chunks of ${size})`);
        assert.ok(rows.data.subarray(rows.spans[i * 4], rows.spans[i * 4 + 1]).equals(Buffer.from(expected.key!)), `key of ${row.key}`);
      });
    });
  }
  const last = (await bothWays(url, reader, 1000)).objects[0]!;
  assert.ok(last.some((r) => r.row.length > huge.length), 'the huge row came through whole');
  assert.ok(last.some((r) => r.row.includes('"n":"NaN","f":"Infinity"')), 'NaN and Infinity as row_to_json writes them');
  assert.ok(last.some((r) => r.row.includes('"n":123456789012345678901234567890.123456789')), 'a numeric not rounded');
});

test('snapshot chunks: a chunk after a last key walks the key index from it on, both paths (no row before it is fetched)', { timeout: 60_000 }, async (t) => {
  const name = uniqueName('snapindex');
  await query(`${services().sourceServer}/postgres`, `CREATE DATABASE ${name}`);
  onCleanup(t, () => query(`${services().sourceServer}/postgres`, `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`));
  const url = `${services().sourceServer}/${name}`;
  await query(url, 'CREATE TABLE chunked (id int8 PRIMARY KEY, v text)');
  await query(url, "INSERT INTO chunked SELECT g, 'v' || g FROM generate_series(1, 20000) g");
  await query(url, 'ANALYZE chunked');
  const reader = new SnapshotReader('public', 'chunked');
  reader.use({ columns: ['id', 'v'], key: ['id'], schemaVersion: 1, json: new Set() });
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  onCleanup(t, () => client.end());
  // this transaction's own counts: heap rows fetched through an index, filtered or not
  const fetched = async () => Number((await client.query<{ n: string }>("SELECT idx_tup_fetch::text AS n FROM pg_stat_xact_user_tables WHERE relname = 'chunked'")).rows[0]?.n ?? 0);
  for (const way of ['objects', 'bytes'] as const) {
    await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
    const before = await fetched();
    const count = way === 'objects' ? (await reader.readChunk(client, '{"id":15000}', 10)).length : (await reader.readChunkBytes(client, '{"id":15000}', 10)).count;
    const rows = (await fetched()) - before;
    await client.query('COMMIT');
    assert.equal(count, 10, `${way}: ten rows after the last key`);
    // the quadratic plan (the last key as a filter, not an index condition) fetched all 15,010
    assert.ok(rows <= 20, `${way}: ${rows} rows fetched for a chunk of 10 after key 15000`);
  }
});

test('binary COPY parsing refuses what is not binary COPY and keeps NULL fields apart from empty ones', () => {
  const header = Buffer.concat([Buffer.from('PGCOPY\n\xff\r\n\0', 'latin1'), Buffer.alloc(8)]);
  const field = (b: Buffer | null) => (b === null ? Buffer.from([0xff, 0xff, 0xff, 0xff]) : Buffer.concat([Buffer.from([0, 0, 0, b.length]), b]));
  const row = Buffer.concat([Buffer.from([0, 2]), field(Buffer.from('{"a":1}')), field(null), Buffer.from([0, 2]), field(Buffer.alloc(0)), field(Buffer.from('\0'))]);
  const rows = parseCopyRows(Buffer.concat([header, row, Buffer.from([0xff, 0xff])]), 2);
  assert.equal(rows.count, 2);
  assert.deepEqual([fieldText(rows, 0, 0), fieldText(rows, 0, 1), fieldText(rows, 1, 0), fieldText(rows, 1, 1)], ['{"a":1}', null, '', '\0']);
  assert.throws(() => parseCopyRows(Buffer.concat([header, row]), 2), /ends inside a row/);
  assert.throws(() => parseCopyRows(Buffer.concat([header, row, Buffer.from([0xff, 0xff])]), 3), /2 fields, 3 expected/);
  assert.throws(() => parseCopyRows(Buffer.from('COPY text'), 2), /no PGCOPY signature/);
});

test('change pages as bytes: the same page read as COPY bytes and as objects gives the same changes and byte-equal envelopes (before-images, masking, crafted values)', { timeout: 90_000 }, async (t) => {
  const db = await tunnelDatabases(t);
  await query(db.sourceUrl, 'ALTER TABLE employees ADD COLUMN t text, ADD COLUMN n numeric, ADD COLUMN f float8, ADD COLUMN j jsonb, ADD COLUMN a text[]');
  const configFile = path.join(db.home, 'pages.json');
  writeFileSync(configFile, JSON.stringify({ tables: [{ name: 'employees', before: 'full', mask: { city: 'sha256' } }], maskSalt: 'a-salt-of-sixteen-chars' }));
  const env = { ...db.env, PGTUNNEL_CONFIG: configFile };
  assert.equal((await runCli(['install'], env)).code, 0);
  const config = loadConfig({ env });
  const table = config.tables[0]!;
  // the batch after this snapshot: every change below
  const prev = (await query<{ s: string }>(db.sourceUrl, 'SELECT pg_current_snapshot()::text AS s'))[0]!.s;
  await query(db.sourceUrl, `INSERT INTO employees (emp_id, first_name, city, t, n, f, j, a) VALUES
    ${crafted.map((c, i) => `(${i + 1}, ${c}, ${c}, ${c}, 123456789012345678901234567890.123456789, 1e-320, '{"k": "\\u2028 \\\\ \\"", "n": 1.000000000000000000001}', ARRAY[${c}, NULL])`).join(', ')}`);
  await query(db.sourceUrl, "UPDATE employees SET n = 'NaN', f = '-Infinity', t = t || chr(8232) WHERE emp_id IN (1, 2)");
  await query(db.sourceUrl, 'UPDATE employees SET emp_id = 40 WHERE emp_id = 3');
  await query(db.sourceUrl, 'DELETE FROM employees WHERE emp_id = 4');
  await query(db.sourceUrl, `INSERT INTO employees (emp_id, t) VALUES (5, $1)`, [huge]);

  const client = new pg.Client({ connectionString: db.sourceUrl });
  await client.connect();
  onCleanup(t, () => client.end());
  const readers = [true, false].map((bytes) => new ChangeReader(table, new Set(['city']), config.maskSalt, false, bytes));
  for (const r of readers) await r.refresh(client, ['emp_id']);
  assert.deepEqual(readers.map((r) => r.path.bytes), [true, false]);
  const ref: TableRef = { db: 'db', schema: 'public', name: 'employees', key: ['emp_id'], topic: table.topic, topicPrefix: config.topicPrefix };
  const now = 1_765_000_000_123;
  for (const size of [3, 1000]) {
    let position: Position = { prev, cur: null, lastChangeId: 0 };
    let seen = 0;
    let withBefore = 0;
    for (;;) {
      const objects = await readers[1]!.readPage(client, position, size);
      const bytes = await readers[0]!.readPage(client, position, size, objects.cur);
      assert.equal(bytes.count, objects.count, 'both paths read the same changes');
      assert.equal(bytes.lastChangeId, objects.lastChangeId);
      if (objects.count === 0) break;
      const { values, starts, ends, ops } = frameChanges(bytes.bytes!, changeFrames(ref, now)!, bytes.schemaVersion, 8 * 1024 * 1024);
      objects.changes.forEach((change, i) => {
        assert.deepEqual(ChangeReader.changeAt(bytes.bytes!, i, bytes.schemaVersion), change, `change ${change.changeId} read back the same`);
        const op = opOf(change.action)!;
        assert.equal(ops[i], op);
        const expected = changeToMessages(ref, change, op, now)[0]!.value!;
        const got = values.subarray(starts[i], ends[i]);
        if (!got.equals(Buffer.from(expected))) assert.equal(got.toString(), expected, `envelope of change ${change.changeId}`);
      });
      seen += objects.count;
      withBefore += objects.changes.filter((c) => c.before !== undefined).length;
      position = advance(position, objects.cur, objects.count, objects.lastChangeId, size);
      if (position.cur === null) break;
    }
    assert.equal(seen, crafted.length + 2 + 2 + 1 + 1, `every change read in pages of ${size}`);
    assert.equal(withBefore, 2, 'the two updates carry their old rows (the key change is a delete and an insert)');
  }
});
