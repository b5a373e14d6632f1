import assert from 'node:assert/strict';
import { test } from 'node:test';
import { query, tunnelDatabases, waitFor } from '../helpers/services.js';
import { InProcessTunnel } from '../helpers/inProcessTunnel.js';

const changeTable = async (url: string) =>
  (await query<{ rows: number; bytes: number }>(url, "SELECT count(*)::int AS rows, pg_total_relation_size('emp_cdc')::int AS bytes FROM emp_cdc"))[0]!;

test('the change table stays bounded: rows are cleaned after each checkpoint and its size stops growing', { timeout: 180_000 }, async (t) => {
  const db = await tunnelDatabases(t);
  const tunnel = await InProcessTunnel.start(t, db.env);
  await query(db.sourceUrl, "INSERT INTO employees (first_name, salary) SELECT 'n' || i, 0 FROM generate_series(1, 10000) i");
  await waitFor('the inserts published and cleaned', async () => (await changeTable(db.sourceUrl)).rows === 0, 60_000, 50);
  // From here on one 10,000-row transaction at a time: the change table should never hold more than it.
  const sizes: number[] = [];
  let maxRows = 0;
  for (let round = 1; round <= 21; round++) {
    await query(db.sourceUrl, 'UPDATE employees SET salary = salary + 1');
    await waitFor('the round applied', async () => {
      const seen = await changeTable(db.sourceUrl);
      maxRows = Math.max(maxRows, seen.rows);
      return seen.rows === 0;
    }, 60_000, 50);
    sizes.push((await changeTable(db.sourceUrl)).bytes);
  }
  // Vacuum makes the size a saw-tooth whose teeth vary with timing (a vacuum racing the next round cannot
  // truncate); bounded means the last third's teeth stay near the first third's. Without the vacuum the
  // size grows with every round and the last third is about three times the first.
  const early = Math.max(...sizes.slice(0, 7));
  const late = Math.max(...sizes.slice(14));
  t.diagnostic(`220,000 changes: change table at most ${maxRows} rows; largest size in rounds 1-7 ${early} B, in rounds 15-21 ${late} B`);
  assert.ok(maxRows <= 10_000 + 2000, `the change table never held more than the largest transaction plus a batch (${maxRows})`);
  assert.ok(late <= early * 2.5, `size stops growing: ${sizes.join(', ')}`);
  await tunnel.waitForEqual(30_000);
  await tunnel.stop();
});
