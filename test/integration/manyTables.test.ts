import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { test } from 'node:test';
import pg from 'pg';
import { query, tunnelDatabases, waitFor } from '../helpers/services.js';
import { InProcessTunnel } from '../helpers/inProcessTunnel.js';
import { runCli } from '../helpers/tunnelProcess.js';

const sourceDdl = `
  CREATE SCHEMA shop;
  CREATE TABLE shop.customers (id serial PRIMARY KEY, name text NOT NULL);
  CREATE TABLE shop.orders (id serial PRIMARY KEY, customer_id int NOT NULL REFERENCES shop.customers, total numeric(12,2));
  CREATE TABLE public.order_lines (order_id int, line_no int, sku text, qty int, PRIMARY KEY (order_id, line_no));
  CREATE TABLE public.order_notes (note_id bigint NOT NULL, body text);
  CREATE TABLE public.unrelated (id int PRIMARY KEY)`;

// The target keeps the foreign key; the other tables are created from the source catalog (autoCreate).
const targetDdl = `
  CREATE SCHEMA shop;
  CREATE TABLE shop.customers (id int PRIMARY KEY, name text NOT NULL);
  CREATE TABLE shop.orders (id int PRIMARY KEY, customer_id int NOT NULL REFERENCES shop.customers, total numeric(12,2))`;

const config = `tables:
  - employees
  - shop.*
  - { name: order_notes, key: [note_id] }
  - public.order_*
`;

const tables = ['public.employees', 'shop.customers', 'shop.orders', 'public.order_lines', 'public.order_notes'];

async function writeFor(url: string, ms: number, writer: number): Promise<number> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  let n = 0;
  try {
    for (const end = Date.now() + ms; Date.now() < end; n++) {
      await client.query('BEGIN');
      const { rows } = await client.query<{ id: number }>("INSERT INTO shop.customers (name) VALUES ('c') RETURNING id");
      const customer = rows[0]!.id;
      const order = (await client.query<{ id: number }>('INSERT INTO shop.orders (customer_id, total) VALUES ($1, $2) RETURNING id', [customer, n % 100])).rows[0]!.id;
      await client.query('INSERT INTO order_lines VALUES ($1, 1, $2, 1), ($1, 2, $2, 2)', [order, `sku${n}`]);
      await client.query('INSERT INTO order_notes VALUES ($1, $2)', [writer * 1_000_000 + n, `note ${n}`]);
      await client.query("INSERT INTO employees (first_name, salary) VALUES ('w', $1)", [n]);
      if (n % 3 === 0) await client.query('UPDATE order_lines SET qty = qty + 1 WHERE order_id = $1', [order]);
      if (n % 5 === 0) await client.query('UPDATE order_notes SET body = body || $2 WHERE note_id = $1', [writer * 1_000_000 + n, '!']);
      if (n % 7 === 0) await client.query('DELETE FROM order_lines WHERE order_id = $1 AND line_no = 2', [order]);
      await client.query('COMMIT');
    }
  } finally {
    await client.end();
  }
  return n;
}

test('five tables named by patterns, one tunnel, concurrent writers: every table equal; a child applied before its parent is not a dead letter', { timeout: 180_000 }, async (t) => {
  const db = await tunnelDatabases(t);
  await query(db.sourceUrl, sourceDdl);
  await query(db.targetUrl, targetDdl);
  const file = `${db.home}/pgtunnel.yaml`;
  writeFileSync(file, config);
  const env = { ...db.env, PGTUNNEL_CONFIG: file };

  // Children first: only the producer runs, then a consumer of the orders topic alone applies orders whose
  // customers the target does not have yet.
  await query(db.sourceUrl, "INSERT INTO shop.customers (id, name) VALUES (1000001, 'parent'); INSERT INTO shop.orders (customer_id, total) VALUES (1000001, 9.99)");
  const ordersOnly = `${db.home}/orders.yaml`;
  writeFileSync(ordersOnly, 'tables: [shop.orders]\n');
  const installed = await runCli(['install'], env);
  assert.equal(installed.code, 0, installed.stderr);
  assert.match(installed.stdout, /shop\.customers[\s\S]*shop\.orders[\s\S]*order_notes[\s\S]*order_lines/);
  assert.doesNotMatch(installed.stdout, /installed (public\.unrelated|\S+_cdc):/, 'a pattern matches neither unlisted tables nor change tables');
  const producer = await InProcessTunnel.start(t, { ...env, PGTUNNEL_HTTP_PORT: 'off' }, { role: 'producer' });
  await producer.stop();
  const consumer = await InProcessTunnel.start(t, { ...env, PGTUNNEL_CONFIG: ordersOnly, PGTUNNEL_HTTP_PORT: 'off' }, { role: 'consumer' });
  await waitFor('the child order in the target before its parent', async () => (await query(db.targetUrl, 'SELECT 1 FROM shop.orders WHERE customer_id = 1000001')).length === 1);
  assert.equal((await query(db.targetUrl, 'SELECT 1 FROM shop.customers WHERE id = 1000001')).length, 0);
  await consumer.stop();

  const tunnel = await InProcessTunnel.start(t, env);
  const written = await Promise.all([0, 1, 2].map((w) => writeFor(db.sourceUrl, 5000, w)));
  assert.ok(written.every((n) => n > 10));
  assert.deepEqual(tunnel.tableIds.sort(), [...tables].sort(), 'the patterns matched these tables');
  await tunnel.waitForEqual();
  assert.deepEqual(tunnel.events.of('pgtunnel:dead-lettered'), [], 'no dead letters');
  const pk = await query<{ cols: string }>(db.targetUrl, "SELECT string_agg(a.attname, ',' ORDER BY a.attnum) AS cols FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey) WHERE i.indrelid = 'order_notes'::regclass AND i.indisprimary");
  assert.equal(pk[0]!.cols, 'note_id', 'the configured key became the created table\'s primary key');
});
