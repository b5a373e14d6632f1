import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { createLogger } from '../../src/instruments/log.js';
import { postgresBinDir, PostgresCluster } from '../../src/stack/postgresCluster.js';
import { StackPassword } from '../../src/stack/stackSecurity.js';
import { onCleanup, query } from '../helpers/services.js';
import { currentTestStack, freePort } from '../../testkit/testStack.js';

const modeOf = (file: string) => statSync(file).mode & 0o777;

/** psql as a local user would run it: no PGPASSWORD, no ~/.pgpass, never prompting. */
function psqlWithoutPassword(port: number): Promise<{ code: number; stderr: string }> {
  const env = { PATH: process.env.PATH ?? '', HOME: mkdtempSync(path.join(tmpdir(), 'pgtunnel-nopass-')) };
  return new Promise((resolve) => {
    execFile(path.join(postgresBinDir(), 'psql'), ['-w', '-h', '127.0.0.1', '-p', String(port), '-U', 'postgres', '-d', 'postgres', '-c', "COPY (SELECT 1) TO PROGRAM 'true'"],
      { env, timeout: 30_000 }, (err, _stdout, stderr) => {
        rmSync(env.HOME, { recursive: true, force: true });
        resolve({ code: typeof err?.code === 'number' ? err.code : err ? -1 : 0, stderr });
      });
  });
}

async function refused(port: number): Promise<void> {
  const run = await psqlWithoutPassword(port);
  assert.notEqual(run.code, 0, 'a connection without the password is refused');
  assert.match(run.stderr, /no password supplied|password authentication failed/);
  await assert.rejects(query(`postgres://postgres:wrong@127.0.0.1:${port}/postgres`, 'SELECT 1'), (err: { code?: string }) => err.code === '28P01');
}

test('the embedded PostgreSQL clusters refuse a connection without the stack password', { timeout: 60_000 }, async () => {
  const stack = currentTestStack();
  for (const cluster of [stack.source, stack.target]) {
    await refused(cluster.port);
    const [row] = await query<{ superuser: boolean }>(cluster.connectUrl('postgres'), 'SELECT rolsuper AS superuser FROM pg_roles WHERE rolname = current_user');
    assert.equal(row!.superuser, true, 'with the password from the stack the tunnel connects as before');
  }
});

test('the stack password file is 0600 and its data directories are 0700', () => {
  const root = process.env.PGTUNNEL_TEST_STACK_ROOT!;
  const stack = currentTestStack();
  assert.equal(modeOf(stack.password!.file), 0o600);
  assert.equal(path.dirname(stack.password!.file), root);
  const dirs = [path.join(root, 'pg'), stack.source.dataDir, stack.target.dataDir, path.join(root, 'kafka'), stack.kafka.dataDir];
  if (stack.registry.isRunning()) dirs.push(path.join(root, 'registry'));
  for (const dir of dirs) assert.equal(modeOf(dir), 0o700, `${dir} is the owner's alone`);
});

test('a cluster from before passwords (trust on loopback) is upgraded in place at start, its data kept', { timeout: 120_000 }, async (t) => {
  const root = mkdtempSync(path.join(process.env.PGTUNNEL_TEST_STACK_ROOT!, 'old-'));
  onCleanup(t, () => rmSync(root, { recursive: true, force: true }));
  const password = new StackPassword(root);
  password.ensure();
  const cluster = new PostgresCluster('old', path.join(root, 'pg'), await freePort(), createLogger('stack-access'), password);
  onCleanup(t, () => cluster.stop());
  await cluster.start();
  // What an older pgtunnel left: no password on postgres, and initdb --auth=trust's pg_hba.conf.
  await query(cluster.connectUrl('postgres'), "CREATE TABLE kept AS SELECT 42 AS answer; ALTER ROLE postgres PASSWORD NULL");
  const hba = path.join(cluster.dataDir, 'pg_hba.conf');
  writeFileSync(hba, 'local all all trust\nhost all all 127.0.0.1/32 trust\nhost all all ::1/128 trust\n');
  await cluster.stop();

  await cluster.start();
  assert.match(readFileSync(hba, 'utf8'), /scram-sha-256/);
  assert.doesNotMatch(readFileSync(hba, 'utf8'), /\strust\s*$/m);
  await refused(cluster.port);
  const [row] = await query<{ answer: number }>(cluster.connectUrl('postgres'), 'SELECT answer FROM kept');
  assert.equal(row!.answer, 42);
});
