// verify is the equality oracle of many tests; here it is judged itself. For every type family (composite
// keys and NULLs included) the target starts as an exact copy of the source, then each value of each row is
// changed alone (to NULL, from NULL, to another row's value, and a few near-misses); verify must name that key
// every time. A column missing on the target must be reported too.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import pg from 'pg';
import { loadConfig } from '../../src/config/load.js';
import { withTables } from '../../src/config/tables.js';
import { compareTable } from '../../src/verify/compare.js';
import { onCleanup, tunnelDatabases } from '../helpers/services.js';
import { runCli } from '../helpers/tunnelProcess.js';
import { type Family, families, tableDdl } from '../helpers/typeFamilies.js';

/** Near-misses a sloppy comparison would let through (text equal after a cast, scale, sign of zero, a microsecond). */
const nearMisses: Record<string, { set: string; where: string }[]> = {
  numbers: [
    { set: 'f8 = 0', where: "f8::text = '-0'" },
    { set: 'n = 123456789012345678901234567890.0', where: 'n = 123456789012345678901234567890' },
    { set: 'i8 = i8 - 1', where: 'i8 = 9007199254740993' },
    { set: 'n2 = n2 + 0.00000000000000000001', where: 'n2 = 1' },
  ],
  time: [
    { set: "ts = ts + interval '1 microsecond'", where: "ts = '2000-01-01 00:00:00.000001'" },
    { set: "iv = interval '1 year 2 mons 3 days 04:05:06.789013'", where: 'id = 1' },
  ],
  text_and_json: [
    { set: "t = ' '", where: "t = ''" },
    { set: "j = '[1, 2.5, -0]'", where: "j::text = '[1, 2.50, -0]'" },
    { set: "c = NULL", where: "c = ''" },
  ],
  identifiers_and_network: [{ set: "ip = '::1/127'", where: "ip = '::1'" }],
  arrays_enums_domains_composites_ranges: [{ set: "p = '(1,\"x,  y\",sad)'", where: 'id = 1' }],
  composite_key: [{ set: "v = ''", where: 'v IS NULL' }],
};

/** A key moved to a value no row has (bigint keys sit at the type's limits: step inwards). */
function keyChange(f: Family): string {
  if (f.name === 'composite_key') return "k2 = k2 || 'x'";
  if (f.keyType === 'text') return "id = id || 'x'";
  if (f.keyType === 'uuid') return 'id = gen_random_uuid()';
  return 'id = CASE WHEN id > 0 THEN id - 7 ELSE id + 7 END';
}

const keyColumns = (f: Family) => (f.name === 'composite_key' ? ['id', 'k2', 'k3'] : ['id']);

async function connect(url: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  await client.query("SET TimeZone TO 'UTC'");
  return client;
}

for (const f of families) {
  test(`verify finds every single-value difference in ${f.name}, and a column missing on the target`, { timeout: 120_000 }, async (t) => {
    const db = await tunnelDatabases(t, { createTables: false });
    const source = await connect(db.sourceUrl);
    const target = await connect(db.targetUrl);
    onCleanup(t, () => Promise.all([source.end(), target.end()]));
    // schema-qualified: a table named "time" must not read as the type time
    const table = `public."${f.name}"`;
    for (const c of [source, target]) {
      if (f.types) await c.query(f.types);
      await c.query(tableDdl(f));
    }
    await source.query(`INSERT INTO ${table} VALUES ${f.rows.join(', ')}`);
    // the target: the source's rows through their text form (generated values such as gen_random_uuid() included)
    const rows = (await source.query<{ r: string }>(`SELECT whole_row_::text AS r FROM ${table} whole_row_`)).rows.map((r) => r.r);
    for (const r of rows) await target.query(`INSERT INTO ${table} SELECT ($1::${table}).*`, [r]);
    await target.query(`CREATE TABLE pristine AS SELECT row_number() OVER () AS rn, * FROM ${table}`);

    const env = { ...db.env, PGTUNNEL_TABLES: f.name };
    const cfg = await withTables(loadConfig({ env }));
    const differing = async () => compareTable(cfg, cfg.tables[0]!, 1000);
    assert.deepEqual((await differing()).allKeys, [], `${f.name}: an exact copy compares equal`);

    const keys = keyColumns(f);
    const sameKey = keys.map((k) => `t.${k} = p.${k}`).join(' AND ');
    const restore = async () => {
      await target.query(`DELETE FROM ${table}`);
      await target.query(`INSERT INTO ${table} SELECT ${(await columnsOf(target, f.name)).map((c) => `"${c}"`).join(', ')} FROM pristine ORDER BY rn`);
    };
    const expectOneKey = async (what: string) => {
      const diff = await differing();
      assert.equal(diff.allKeys.length, 1, `${f.name}: ${what} must show as one differing key, verify listed ${JSON.stringify(diff.allKeys)}`);
      await restore();
    };

    const columns = (await columnsOf(target, f.name)).filter((c) => !keys.includes(c));
    let checked = 0;
    for (const c of columns) {
      for (let rn = 1; rn <= rows.length; rn++) {
        const isNull = (await target.query<{ n: boolean }>(`SELECT "${c}" IS NULL AS n FROM pristine WHERE rn = $1`, [rn])).rows[0]!.n;
        // another row's value that differs in text (json has no equality operator)
        const other = (await target.query<{ rn: string }>(`SELECT q.rn::text FROM pristine q, pristine p WHERE p.rn = $1 AND q."${c}" IS NOT NULL AND q."${c}"::text IS DISTINCT FROM p."${c}"::text LIMIT 1`, [rn])).rows[0]?.rn;
        if (!isNull) {
          await target.query(`UPDATE ${table} t SET "${c}" = NULL FROM pristine p WHERE p.rn = $1 AND ${sameKey}`, [rn]);
          await expectOneKey(`${c} of row ${rn} set to NULL`);
          checked++;
        }
        if (other !== undefined) {
          await target.query(`UPDATE ${table} t SET "${c}" = (SELECT "${c}" FROM pristine WHERE rn = $2) FROM pristine p WHERE p.rn = $1 AND ${sameKey}`, [rn, Number(other)]);
          await expectOneKey(`${c} of row ${rn} ${isNull ? 'from NULL ' : ''}to row ${other}'s value`);
          checked++;
        }
      }
    }
    for (const m of nearMisses[f.name] ?? []) {
      const changed = await target.query(`UPDATE ${table} SET ${m.set} WHERE ${m.where}`);
      assert.equal(changed.rowCount, 1, `${f.name}: the near-miss ${m.set} WHERE ${m.where} hits one row`);
      await expectOneKey(`the near-miss ${m.set}`);
      checked++;
    }
    // a missing row, an extra row, a changed key
    await target.query(`DELETE FROM ${table} t USING pristine p WHERE p.rn = 1 AND ${sameKey}`);
    await expectOneKey('a row missing on the target');
    await target.query(`UPDATE ${table} SET ${keyChange(f)} WHERE ctid = (SELECT min(ctid) FROM ${table})`);
    assert.equal((await differing()).allKeys.length, 2, `${f.name}: a changed key shows as the old key missing and the new one extra`);
    await restore();
    t.diagnostic(`${f.name}: ${checked} single-value differences, each found`);

    const dropped = columns[0]!;
    await target.query(`ALTER TABLE ${table} DROP COLUMN "${dropped}"`);
    assert.deepEqual((await differing()).missingColumns, [dropped], `${f.name}: a column missing on the target is reported`);
    const cli = await runCli(['verify'], env);
    assert.equal(cli.code, 1, `verify exits 1 when the target lacks a column:\n${cli.stdout}${cli.stderr}`);
    assert.match(cli.stdout, new RegExp(`DIFFERENT — the target lacks column\\(s\\) ${dropped} \\(fix: `));
  });
}

async function columnsOf(client: pg.Client, table: string): Promise<string[]> {
  const { rows } = await client.query<{ c: string }>(
    'SELECT attname AS c FROM pg_attribute WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum', [`public."${table}"`]);
  return rows.map((r) => r.c);
}
