import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import { httpGet } from '../helpers/httpGet.js';
import { onCleanup, query, services, tunnelDatabases, uniqueName, waitFor } from '../helpers/services.js';
import { runCli, TunnelProcess } from '../helpers/tunnelProcess.js';

const mark = 'Pw7x';

/** Every place a running tunnel writes to: its output, its run files, its HTTP answers. */
async function outputs(tunnel: TunnelProcess, home: string, url: string): Promise<Record<string, string>> {
  const out: Record<string, string> = { 'log lines': tunnel.output };
  const run = path.join(home, 'run');
  for (const f of readdirSync(run)) out[`run file ${f}`] = readFileSync(path.join(run, f), 'utf8');
  for (const p of ['health', 'ready', 'metrics', 'api/status', '']) out[`/${p}`] = (await httpGet(`${url}${p}`)).body;
  return out;
}

/** A superuser of the test's own on both clusters, whose passwords carry the mark: the tunnel really connects with them. */
async function markedRole(t: TestContext): Promise<string> {
  const s = services();
  const role = uniqueName('marked');
  onCleanup(t, async () => {
    for (const server of [s.sourceServer, s.targetServer]) await query(`${server}/postgres`, `DROP ROLE IF EXISTS ${role}`);
  });
  for (const [server, password] of [[s.sourceServer, `${mark}-src@a:b`], [s.targetServer, `${mark}-tgt`]] as const) {
    // CREATE ROLE takes no parameters: the server quotes
    const [made] = await query<{ statement: string }>(`${server}/postgres`, "SELECT format('CREATE ROLE %I SUPERUSER LOGIN PASSWORD %L', $1::text, $2::text) AS statement", [role, password]);
    await query(`${server}/postgres`, made!.statement);
  }
  return role;
}

test('a password planted in every URL form never appears in logs, run files, HTTP answers or status', { timeout: 120_000 }, async (t) => {
  // registered before the databases, so it is dropped after them
  const role = await markedRole(t);
  const db = await tunnelDatabases(t);
  const sourceUrl = db.sourceUrl.replace('postgres://postgres@', `postgres://${role}:${mark}-src@a:b@`);
  const targetUrl = `${db.targetUrl.replace('postgres://postgres@', `postgres://${role}@`)}?password=${mark}-tgt&sslmode=disable`;
  // A process, not the in-process harness: what is checked is what the CLI itself writes (its log, its run files).
  const tunnel = await TunnelProcess.spawnServed(t, { ...db.env, PGTUNNEL_SOURCE_URL: sourceUrl, PGTUNNEL_TARGET_URL: targetUrl });
  const url = tunnel.url!;
  await waitFor('the tunnel streaming, as /ready says', async () => (await httpGet(`${url}ready`)).status === 200, 60_000, 200);
  // The target goes away: its URL is now in the waiting reason of the run file, /ready, /api/status and the log.
  const admin = db.targetUrl.replace(/\/[^/]+$/, '/postgres');
  await query(admin, `ALTER DATABASE ${db.topicPrefix} WITH ALLOW_CONNECTIONS false`);
  onCleanup(t, () => query(admin, `ALTER DATABASE ${db.topicPrefix} WITH ALLOW_CONNECTIONS true`));
  await query(admin, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '${db.topicPrefix}'`);
  await query(db.sourceUrl, "INSERT INTO employees (first_name) VALUES ('while away')");
  await waitFor('the consumer waiting for the target', async () => (await httpGet(`${url}ready`)).status === 503, 30_000, 200);
  // the log is what is checked here: the reason must be in it before it is searched for the password
  await waitFor('the waiting reason in the log', async () => /consumer waiting: .*target/.test(tunnel.output), 30_000, 100);
  const seen = await outputs(tunnel, db.home, url);
  assert.match(seen['/ready']!, new RegExp(`cannot connect to the target database postgres://${role}@`), 'the reason still names the database');
  for (const [where, text] of Object.entries(seen)) assert.ok(!text.includes(mark), `${where} shows the password:\n${text.slice(0, 2000)}`);
  for (const f of readdirSync(path.join(db.home, 'run'))) {
    assert.equal(statSync(path.join(db.home, 'run', f)).mode & 0o777, 0o600, `run file ${f} is readable by others`);
  }
  assert.equal(statSync(path.join(db.home, 'run')).mode & 0o777, 0o700);
  const status = await runCli(['status', '--json'], { ...db.env, PGTUNNEL_SOURCE_URL: sourceUrl, PGTUNNEL_TARGET_URL: targetUrl });
  assert.ok(!`${status.stdout}${status.stderr}`.includes(mark), status.stdout + status.stderr);
  assert.match(status.stdout, /cannot connect to the target database/);
  await tunnel.stop();
});

test('status and CLI errors against an unreachable source hide the password of every URL form', { timeout: 120_000 }, async (t) => {
  const db = await tunnelDatabases(t, { createTables: false });
  const passwordFile = path.join(db.home, 'source.pw');
  writeFileSync(passwordFile, `${mark}-file@:/\n`, { mode: 0o600 });
  const target = db.targetUrl;
  const forms: [string, Record<string, string>][] = [
    ['user:password@', { PGTUNNEL_SOURCE_URL: `postgres://app:${mark}-plain@127.0.0.1:1/db` }],
    ['@ and : in the password', { PGTUNNEL_SOURCE_URL: `postgres://app:${mark}@x:y@127.0.0.1:1/db` }],
    ['percent-encoded', { PGTUNNEL_SOURCE_URL: `postgres://app:${encodeURIComponent(`${mark}/@:%`)}@127.0.0.1:1/db` }],
    ['empty user name', { PGTUNNEL_SOURCE_URL: `postgres://:${mark}-empty@127.0.0.1:1/db` }],
    ['?password=', { PGTUNNEL_SOURCE_URL: `postgres://app@127.0.0.1:1/db?sslmode=disable&password=${mark}-q` }],
    ['?sslpassword=', { PGTUNNEL_SOURCE_URL: `postgres://app@127.0.0.1:1/db?sslpassword=${mark}-ssl` }],
    ['PGTUNNEL_SOURCE_PASSWORD', { PGTUNNEL_SOURCE_URL: 'postgres://app@127.0.0.1:1/db', PGTUNNEL_SOURCE_PASSWORD: `${mark}-env@:/` }],
    ['PGTUNNEL_SOURCE_PASSWORD_FILE', { PGTUNNEL_SOURCE_URL: 'postgres://app@127.0.0.1:1/db', PGTUNNEL_SOURCE_PASSWORD_FILE: passwordFile }],
  ];
  for (const [form, env] of forms) {
    const all = { ...db.env, PGTUNNEL_TARGET_URL: target, PGTUNNEL_KAFKA_BROKERS: services().brokers, ...env };
    // Every form through status --json; the readable status and a failing command's error through the first two.
    for (const args of forms.indexOf(forms.find(([f]) => f === form)!) < 2 ? [['status', '--json'], ['status'], ['install']] : [['status', '--json']]) {
      const r = await runCli(args, all);
      assert.equal(r.code, 3, `${form} ${args.join(' ')}: ${r.stdout}${r.stderr}`);
      assert.match(`${r.stdout}${r.stderr}`, /cannot connect to the source database postgres:\/\//, `${form}: the error names the database`);
      assert.ok(!`${r.stdout}${r.stderr}`.includes(mark), `${form} ${args.join(' ')} shows the password:\n${r.stdout}${r.stderr}`);
    }
  }
});
