import assert from 'node:assert/strict';
import { test } from 'node:test';
import pg from 'pg';
import { onCleanup, query, tunnelDatabases, waitFor as waitForCondition, type UnderTest } from '../helpers/services.js';
import { TunnelProcess } from '../helpers/tunnelProcess.js';

const accounts = 100;
const opening = 1000;
const tables = ['accounts_a', 'accounts_b'];
const ddl = tables.map((t) => `CREATE TABLE ${t} (id int PRIMARY KEY, balance bigint NOT NULL)`).join(';');
const total = tables.length * accounts * opening;
const sumSql = `SELECT (${tables.map((t) => `(SELECT COALESCE(sum(balance), 0) FROM ${t})`).join(' + ')})::text AS s`;

let current: TunnelProcess | undefined;

/** A wait that shows the tunnel's output when it gives up. */
async function waitFor<T>(what: string, check: () => Promise<T | undefined | false>, timeoutMs: number, everyMs: number, also: UnderTest[]): Promise<T> {
  return waitForCondition(what, check, timeoutMs, everyMs, also).catch((err: Error) => {
    throw new Error(`${err.message}; the tunnel's output ends:\n${current?.output.split('\n').filter((l) => !l.includes('COORDINATOR')).join('\n').slice(-6000)}`);
  });
}

/** Moves money between random accounts of random tables, each transfer one source transaction. */
async function transfers(url: string, until: () => boolean): Promise<number> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  let done = 0;
  try {
    while (!until()) {
      // rows locked in one order: two writers never deadlock
      const picks = [0, 1].map(() => ({ table: tables[Math.floor(Math.random() * tables.length)]!, id: 1 + Math.floor(Math.random() * accounts) }));
      picks.sort((a, b) => (a.table + a.id < b.table + b.id ? -1 : 1));
      if (picks[0]!.table === picks[1]!.table && picks[0]!.id === picks[1]!.id) continue;
      const amount = 1 + Math.floor(Math.random() * 50);
      const sign = Math.random() < 0.5 ? 1 : -1;
      await client.query('BEGIN');
      await client.query(`UPDATE ${picks[0]!.table} SET balance = balance + $1 WHERE id = $2`, [sign * amount, picks[0]!.id]);
      await client.query(`UPDATE ${picks[1]!.table} SET balance = balance - $1 WHERE id = $2`, [sign * amount, picks[1]!.id]);
      await client.query('COMMIT');
      done++;
    }
  } finally {
    await client.end();
  }
  return done;
}

test('apply: transactional under kill -9: a reader on the target never sees a broken sum of balances; target = source at the end', { timeout: 300_000 }, async (t) => {
  const db = await tunnelDatabases(t, { createTables: false });
  for (const url of [db.sourceUrl, db.targetUrl]) await query(url, ddl);
  for (const table of tables) await query(db.sourceUrl, `INSERT INTO ${table} SELECT g, ${opening} FROM generate_series(1, ${accounts}) g`);
  const env = { ...db.env, PGTUNNEL_TABLES: tables.join(','), PGTUNNEL_APPLY: 'transactional', PGTUNNEL_PARTITIONS: '3', PGTUNNEL_HTTP_PORT: 'off' };
  // the first Kafka transaction of a fresh broker waits for its coordinator: the snapshot can take a while
  let tunnel = TunnelProcess.spawn(t, env);
  current = tunnel;
  await waitFor('the opening balances on the target', async () => (await query<{ s: string }>(db.targetUrl, sumSql))[0]!.s === String(total), 150_000, 100, [tunnel]);

  // the reader: one statement, one snapshot of both tables
  let reading = true;
  const broken: string[] = [];
  let reads = 0;
  const reader = (async () => {
    const client = new pg.Client({ connectionString: db.targetUrl });
    await client.connect();
    try {
      while (reading) {
        const s = (await client.query<{ s: string }>(sumSql)).rows[0]!.s;
        reads++;
        if (s !== String(total)) broken.push(s);
      }
    } finally {
      await client.end();
    }
  })();
  onCleanup(t, () => { reading = false; });

  let writing = true;
  const writers = Promise.all([1, 2, 3].map(() => transfers(db.sourceUrl, () => !writing)));
  const applied = async () => (await query<{ n: string }>(db.targetUrl, 'SELECT COALESCE(sum(applied), 0)::text AS n FROM pgtunnel.consumer_offsets'))[0]!.n;
  const before = Number(await applied());
  await waitFor('the applier applying transfers', async () => Number(await applied()) > before + 300, 60_000, 100, [tunnel]);
  await tunnel.kill('SIGKILL');
  tunnel = TunnelProcess.spawn(t, env);
  current = tunnel;
  const restarted = Number(await applied());
  await waitFor('the restarted tunnel applying transfers', async () => Number(await applied()) > restarted + 300, 120_000, 100, [tunnel]);
  writing = false;
  const count = (await writers).reduce((a, b) => a + b, 0);

  const dump = (url: string) => Promise.all(tables.map((table) => query<{ id: number; balance: string }>(url, `SELECT id, balance::text FROM ${table} ORDER BY id`)));
  const source = await dump(db.sourceUrl);
  await waitFor('the target equal to the source', async () => JSON.stringify(await dump(db.targetUrl)) === JSON.stringify(source), 60_000, 200, [tunnel]);
  reading = false;
  await reader;
  t.diagnostic(`${count} transfers, ${reads} reads of the target's sum, ${broken.length} broken`);
  assert.ok(reads > 100, `the reader read the sum often (${reads} reads)`);
  assert.deepEqual(broken.slice(0, 10), [], `no read saw a sum other than ${total}`);
  await tunnel.stop();
});
