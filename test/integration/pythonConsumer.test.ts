// A Python team reads pgtunnel's Avro topic with its usual tools: confluent-kafka's Consumer and
// AvroDeserializer through the registry (test/python/consume_avro.py, in a venv scripts/python.sh makes).
// Replaying what it read — snapshot reads, inserts, updates, deletes and tombstones — gives the source's rows.
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import path from 'node:path';
import { before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { query, services, tunnelDatabases } from '../helpers/services.js';
import { InProcessTunnel } from '../helpers/inProcessTunnel.js';
import { registryAnswers } from '../helpers/wireBytes.js';

// scripts/test.mjs starts the suite's registry beside the first files: wait until it answers
before(registryAnswers);

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const home = path.resolve(process.env.PGTUNNEL_HOME ?? path.join(root, '.pgtunnel'));

const ddl = `CREATE TABLE py_types (id bigint PRIMARY KEY, amount numeric(12,2), ratio double precision, active boolean,
  born date, note text, ref uuid, small smallint)`;
const insert = `INSERT INTO py_types SELECT i, (i * 1.25 - 7)::numeric(12,2), i / 3.0, i % 3 = 0, DATE '1969-12-25' + i * 40,
  'note ' || i || ' ünïcødé "quoted"', ('00000000-0000-4000-8000-' || lpad(i::text, 12, '0'))::uuid, i - 50 FROM generate_series($1::int, $2::int) i`;

interface Message {
  partition: number;
  offset: number;
  key: Record<string, unknown> | null;
  value: { op: string; before: Record<string, unknown> | null; after: Record<string, unknown> | null; source: Record<string, unknown> } | null;
}

/** The venv with confluent-kafka (setup --python makes it; made here when missing, ~1–2 min once). */
function python(): string {
  execFileSync('bash', [path.join(root, 'scripts/python.sh')], { stdio: 'inherit', env: { ...process.env, PGTUNNEL_HOME: home }, timeout: 600_000 });
  return path.join(home, 'python', 'bin', 'python');
}

function consume(args: string[], timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(python(), [path.join(root, 'test/python/consume_avro.py'), ...args], { timeout: timeoutMs, maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`the Python consumer failed: ${err.message}\n${stderr}`));
      else resolve(stdout);
    });
  });
}

const isoDate = (days: number) => new Date(days * 86_400_000).toISOString().slice(0, 10);

test('a Python consumer (confluent-kafka AvroDeserializer through the registry) reads the Avro topic back to the source\'s rows', { timeout: 300_000 }, async (t) => {
  const registry = process.env.PGTUNNEL_TEST_REGISTRY_URL;
  if (!registry) throw new Error('this test needs the test stack\'s schema registry: run it through scripts/test.mjs (it starts one for files named *python*)');
  const pythonBin = python();
  assert.ok(pythonBin);
  const db = await tunnelDatabases(t, { createTables: false });
  for (const url of [db.sourceUrl, db.targetUrl]) await query(url, ddl);
  await query(db.sourceUrl, insert, [1, 30]);
  const env = { ...db.env, PGTUNNEL_TABLES: 'py_types', PGTUNNEL_REGISTRY_URL: registry, PGTUNNEL_FORMAT: 'avro' };
  const tunnel = await InProcessTunnel.start(t, env);
  await query(db.sourceUrl, insert, [31, 40]);
  await query(db.sourceUrl, "UPDATE py_types SET amount = -amount, note = NULL, active = NOT active WHERE id % 4 = 0");
  await query(db.sourceUrl, 'DELETE FROM py_types WHERE id IN (5, 33)');
  // every change has been published (and applied) once the target is equal
  await tunnel.waitForEqual(60_000);

  const out = await consume(['--brokers', services().brokers, '--registry', registry, '--topic', `${db.topicPrefix}.public.py_types`, '--min', '40', '--timeout', '90'], 120_000);
  const messages = out.trim().split('\n').map((l) => JSON.parse(l) as Message);

  // replay per key in partition order, as a consumer materialising the table would
  const rows = new Map<string, Record<string, unknown>>();
  const ops = new Set<string>();
  for (const m of messages.sort((a, b) => a.partition - b.partition || a.offset - b.offset)) {
    const key = JSON.stringify(m.key);
    if (m.value === null) continue; // tombstone after a delete
    ops.add(m.value.op);
    assert.equal(m.value.source.connector, 'pgtunnel');
    assert.equal(m.value.source.table, 'py_types');
    if (m.value.op === 'd') rows.delete(key);
    else rows.set(key, m.value.after!);
  }
  assert.deepEqual([...ops].sort(), ['c', 'd', 'r', 'u']);
  assert.ok(messages.some((m) => m.value === null), 'a delete is followed by a tombstone');

  const source = await query<Record<string, string | null>>(db.sourceUrl,
    'SELECT id::text, amount::text, ratio::text, active::text, born::text, note, ref::text, small::text FROM py_types ORDER BY py_types.id');
  const read = [...rows.values()].sort((a, b) => Number(a.id) - Number(b.id)).map((r) => ({
    id: String(r.id), amount: r.amount, ratio: r.ratio, active: r.active, born: r.born === null ? null : isoDate(r.born as number), note: r.note, ref: r.ref, small: r.small,
  }));
  const expected = source.map((r) => ({
    id: r.id, amount: r.amount, ratio: r.ratio === null ? null : Number(r.ratio), active: r.active === null ? null : r.active === 'true',
    born: r.born, note: r.note, ref: r.ref, small: r.small === null ? null : Number(r.small),
  }));
  assert.equal(read.length, 38);
  assert.deepEqual(read, expected);
});
