import assert from 'node:assert/strict';
import { test } from 'node:test';
import { appliedCountMismatches, sameRows, topicRecords } from '../helpers/oracles.js';
import { query, tunnelDatabases, waitFor } from '../helpers/services.js';
import { runCli, TunnelProcess } from '../helpers/tunnelProcess.js';
import { killMidStream } from '../helpers/crashWorkload.js';

const slotOf = async (sourceUrl: string) =>
  (await query<{ slot_name: string; confirmed: string; active: boolean }>(sourceUrl,
    "SELECT slot_name, (confirmed_flush_lsn - '0/0')::text AS confirmed, active FROM pg_replication_slots WHERE database = current_database()"))[0];

const state = async (sourceUrl: string) =>
  (await query<{ phase: string; done: number }>(sourceUrl, 'SELECT phase, snapshot_rows_done::int AS done FROM pgtunnel.state'))[0]!;

test('capture: logical — install says so, every kind of change arrives exact with a real LSN, uninstall drops slot and publication', { timeout: 180_000 }, async (t) => {
  const db = await tunnelDatabases(t);
  const env = { ...db.env, PGTUNNEL_CAPTURE: 'logical', PGTUNNEL_SNAPSHOT_CHUNK_SIZE: '700' };
  await query(db.sourceUrl, "INSERT INTO employees (first_name, last_name, dob, city, salary) SELECT 'f' || i, 'l' || i, DATE '1970-01-01' + i, 'c' || i % 7, i FROM generate_series(1, 2000) i");
  const installed = await runCli(['install'], env);
  assert.equal(installed.code, 0, installed.stderr);
  assert.match(installed.stdout, /capture logical \(capture: logical, from the source's one slot, and the source has wal_level = logical\), publication pgtunnel_source_[0-9a-f]{16} and slot pgtunnel_source_[0-9a-f]{16},/);
  assert.equal((await query(db.sourceUrl, "SELECT 1 FROM pg_class WHERE relname = 'emp_cdc'")).length, 0, 'no change table in logical mode');
  assert.equal((await query(db.sourceUrl, 'SELECT 1 FROM pg_publication')).length, 1);

  const tunnel = await TunnelProcess.start(t, env);
  await sameRows(db.sourceUrl, db.targetUrl, 'employees', 60_000);
  await query(db.sourceUrl, "INSERT INTO employees (emp_id, first_name, last_name, dob, city, salary) VALUES (5001, 'Ada', 'Lovelace', '1815-12-10', 'London', 123456789.5)");
  await query(db.sourceUrl, "UPDATE employees SET salary = 25000.25, city = 'Zürich ☃' WHERE emp_id = 5001");
  await query(db.sourceUrl, 'DELETE FROM employees WHERE emp_id = 3');
  await query(db.sourceUrl, 'UPDATE employees SET emp_id = 6000 WHERE emp_id = 7');
  await query(db.sourceUrl, "BEGIN; DELETE FROM employees WHERE emp_id = 8; INSERT INTO employees (emp_id, first_name, salary) VALUES (8, 'Re', 1); COMMIT");
  await sameRows(db.sourceUrl, db.targetUrl, 'employees', 30_000);
  assert.equal((await query(db.targetUrl, 'SELECT 1 FROM employees WHERE emp_id = 7')).length, 0, 'the old key of a key-changing update is gone');

  const topic = `${db.topicPrefix}.public.employees`;
  const records = await topicRecords(topic);
  const streamed = records.filter((r) => r.value && r.value.op !== 'r').map((r) => r.value!);
  assert.deepEqual(streamed.map((v) => v.op).sort(), ['c', 'c', 'd', 'd', 'd', 'u', 'u'].sort());
  for (const v of streamed) {
    const source = v.source as { lsn: unknown; txId: unknown; snapshot: string };
    assert.match(String(source.lsn), /^\d+$/);
    assert.ok(BigInt(String(source.lsn)) > BigInt(2 ** 24), `source.lsn ${source.lsn} is a real LSN, not a change id`);
    assert.match(String(source.txId), /^\d+$/);
    assert.equal(source.snapshot, 'false');
  }
  const ada = streamed.find((v) => v.op === 'u' && (v.after as { emp_id: number }).emp_id === 5001)!;
  assert.equal(JSON.stringify(ada.after).includes('"city":"Zürich ☃"'), true, 'text exact');
  assert.equal(records.filter((r) => r.value?.op === 'r').length, 2000, 'each row read once by the snapshot');

  // the slot's position moves only after Kafka's ack; it reaches the source's WAL of the last commit
  const lsnNow = (await query<{ lsn: string }>(db.sourceUrl, "SELECT (pg_current_wal_lsn() - '0/0')::text AS lsn"))[0]!.lsn;
  await query(db.sourceUrl, 'UPDATE employees SET salary = salary + 1 WHERE emp_id = 10');
  await waitFor('the slot confirmed past the last commit', async () => BigInt((await slotOf(db.sourceUrl))!.confirmed) > BigInt(lsnNow), 30_000, 100);

  // slot safety in status: the slot, its retained WAL and its lag (logical capture has no change table)
  const status = await runCli(['status', '--json'], env);
  const table = (JSON.parse(status.stdout) as { tables: { slot?: { name: string; active: boolean; walStatus: string; retainedWalBytes: number; lagBytes: number } }[] }).tables[0]!;
  assert.match(table.slot?.name ?? '', /^pgtunnel_source_[0-9a-f]{16}$/, status.stdout);
  assert.equal(table.slot!.active, true);
  assert.equal(table.slot!.walStatus, 'reserved');
  assert.ok(table.slot!.retainedWalBytes > 0 && table.slot!.lagBytes >= 0, status.stdout);
  assert.match((await runCli(['status'], env)).stdout, /slot pgtunnel_source_\w+ active, lag .*, retains .* of WAL/);

  const signal = await runCli(['snapshot', '--table', 'employees'], env);
  assert.equal(signal.code, 2, 'an incremental snapshot is refused, not left pending: only trigger capture reads signals');
  assert.match(signal.stderr, /captured by logical decoding: incremental snapshots are built for trigger capture only/);

  await query(db.sourceUrl, 'TRUNCATE employees');
  await waitFor('the truncate in the target', async () => (await query(db.targetUrl, 'SELECT 1 FROM employees')).length === 0, 30_000, 100);
  assert.equal(await tunnel.stop(), 0);

  const removed = await runCli(['uninstall'], env);
  assert.equal(removed.code, 0, removed.stderr);
  assert.equal(await slotOf(db.sourceUrl), undefined, 'the slot is dropped');
  assert.equal((await query(db.sourceUrl, 'SELECT 1 FROM pg_publication')).length, 0, 'the publication is dropped');
});

test('capture: logical, kill -9 while streaming and changes while down: the restart resumes from the slot, nothing lost, each record applied once', { timeout: 180_000 }, async (t) => {
  const db = await tunnelDatabases(t);
  const env = { ...db.env, PGTUNNEL_CAPTURE: 'logical', PGTUNNEL_BATCH_SIZE: '100' };
  await query(db.sourceUrl, "INSERT INTO employees (first_name, salary) SELECT 'n' || i, i FROM generate_series(1, 2000) i");
  const first = await TunnelProcess.start(t, env);
  await sameRows(db.sourceUrl, db.targetUrl, 'employees', 60_000);
  await killMidStream(db.sourceUrl, db.targetUrl, first);
  const before = await state(db.sourceUrl);
  assert.equal(before.phase, 'streaming');

  const second = await TunnelProcess.start(t, env);
  await sameRows(db.sourceUrl, db.targetUrl, 'employees', 60_000);
  assert.doesNotMatch(second.output, /snapshot published|slot created/, 'a finished snapshot is not run again');
  const topic = `${db.topicPrefix}.public.employees`;
  const records = await topicRecords(topic);
  assert.deepEqual(await appliedCountMismatches(db.targetUrl, topic, records), [], 'each Kafka record applied exactly once');
  // resumed from the slot's confirmed position: at most the pages in flight at the kill are sent twice
  const changes = records.filter((r) => r.value && r.value.op !== 'r');
  const distinct = new Set(changes.map((r) => `${String(r.value!.source.lsn)}/${r.value!.op}/${r.key}`));
  t.diagnostic(`${changes.length} change records, ${changes.length - distinct.size} sent again after the kill`);
  assert.ok(changes.length - distinct.size <= 4 * 100, 'only what was in flight at the kill is sent again');
  assert.equal((await state(db.sourceUrl)).done, before.done);
  await second.stop();
});

test('capture: logical, an unchanged TOASTed value is never written as NULL: a 1 MB column survives an update of another column', { timeout: 120_000 }, async (t) => {
  const db = await tunnelDatabases(t, { createTables: false });
  for (const url of [db.sourceUrl, db.targetUrl]) await query(url, 'CREATE TABLE docs (id int PRIMARY KEY, n int NOT NULL, body text)');
  const env = { ...db.env, PGTUNNEL_CAPTURE: 'logical', PGTUNNEL_TABLES: 'docs' };
  const tunnel = await TunnelProcess.start(t, env);
  // hex digests barely compress: the value is stored out of line, so pgoutput sends it only when it changed
  await query(db.sourceUrl, "INSERT INTO docs SELECT 1, 0, string_agg(md5(i::text), '') FROM generate_series(1, 32000) i");
  await sameRows(db.sourceUrl, db.targetUrl, 'docs', 30_000);
  await query(db.sourceUrl, 'UPDATE docs SET n = n + 1 WHERE id = 1');
  await waitFor('the update in the target', async () => (await query<{ n: number }>(db.targetUrl, 'SELECT n FROM docs'))[0]?.n === 1, 30_000, 50);
  const body = await query<{ len: number; same: boolean }>(db.targetUrl, "SELECT length(body) AS len, md5(body) = $1 AS same FROM docs", [(await query<{ m: string }>(db.sourceUrl, 'SELECT md5(body) AS m FROM docs'))[0]!.m]);
  assert.deepEqual(body, [{ len: 1_024_000, same: true }], 'the target keeps the 1 MB value');
  const update = (await topicRecords(`${db.topicPrefix}.public.docs`)).find((r) => r.value?.op === 'u')!;
  assert.deepEqual(Object.keys(update.value!.after!).sort(), ['id', 'n'], 'the unchanged column is left out of the row, not sent as null');
  assert.equal(await tunnel.stop(), 0);
});
