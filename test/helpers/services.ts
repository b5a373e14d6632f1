import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { TestContext } from 'node:test';
import pg from 'pg';
import { employeesDdl } from '../../src/stack/demo.js';

/** The stack started once per run by scripts/test.mjs (real PostgreSQL ×2 and a real Kafka broker). */
export interface TestServices {
  sourceServer: string;
  targetServer: string;
  brokers: string;
}

export function services(): TestServices {
  const { PGTUNNEL_TEST_SOURCE_SERVER, PGTUNNEL_TEST_TARGET_SERVER, PGTUNNEL_TEST_BROKERS } = process.env;
  if (!PGTUNNEL_TEST_SOURCE_SERVER || !PGTUNNEL_TEST_TARGET_SERVER || !PGTUNNEL_TEST_BROKERS) {
    throw new Error('integration tests need the test stack: run them with `npm test` (scripts/test.mjs starts it)');
  }
  return { sourceServer: PGTUNNEL_TEST_SOURCE_SERVER, targetServer: PGTUNNEL_TEST_TARGET_SERVER, brokers: PGTUNNEL_TEST_BROKERS };
}

const cleanups = new WeakMap<TestContext, (() => Promise<unknown> | unknown)[]>();

/** Registers teardown work that runs last-in first-out, like nested try/finally blocks. */
export function onCleanup(t: TestContext, fn: () => Promise<unknown> | unknown): void {
  let stack = cleanups.get(t);
  if (!stack) {
    const fresh: (() => Promise<unknown> | unknown)[] = [];
    cleanups.set(t, (stack = fresh));
    t.after(async () => {
      while (fresh.length > 0) await fresh.pop()!();
    });
  }
  stack.push(fn);
}

export function uniqueName(prefix: string): string {
  return `${prefix}_${randomBytes(4).toString('hex')}`;
}

export async function query<T extends pg.QueryResultRow = pg.QueryResultRow>(url: string, sql: string, params: unknown[] = []): Promise<T[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query<T>(sql, params)).rows;
  } finally {
    await client.end();
  }
}

export interface TunnelEnv {
  sourceUrl: string;
  targetUrl: string;
  topicPrefix: string;
  /** This test's PGTUNNEL_HOME (health files of its tunnels). */
  home: string;
  /** PGTUNNEL_* variables for a tunnel process on this pair of databases. */
  env: Record<string, string>;
}

/**
 * A fresh source and target database pair with the seed's employees table, a topic prefix and a group
 * of their own, so tests never see each other's data. Dropped when the test ends.
 */
export async function tunnelDatabases(t: TestContext, options: { createTables?: boolean } = {}): Promise<TunnelEnv> {
  const s = services();
  const name = uniqueName('t');
  for (const server of [s.sourceServer, s.targetServer]) await query(`${server}/postgres`, `CREATE DATABASE ${name}`);
  const sourceUrl = `${s.sourceServer}/${name}`;
  const targetUrl = `${s.targetServer}/${name}`;
  if (options.createTables !== false) {
    await query(sourceUrl, employeesDdl);
    await query(targetUrl, employeesDdl);
  }
  onCleanup(t, async () => {
    for (const server of [s.sourceServer, s.targetServer]) await query(`${server}/postgres`, `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  });
  const home = mkdtempSync(path.join(tmpdir(), 'pgtunnel-test-'));
  onCleanup(t, () => rmSync(home, { recursive: true, force: true }));
  return {
    sourceUrl,
    targetUrl,
    topicPrefix: name,
    home,
    env: {
      PGTUNNEL_HOME: home,
      PGTUNNEL_SOURCE_URL: sourceUrl,
      PGTUNNEL_TARGET_URL: targetUrl,
      PGTUNNEL_KAFKA_BROKERS: s.brokers,
      PGTUNNEL_TOPIC_PREFIX: name,
      PGTUNNEL_GROUP_ID: `${name}-apply`,
      PGTUNNEL_LOG_FORMAT: 'json',
      PGTUNNEL_HTTP_PORT: '0',
    },
  };
}

/** Polls a condition until it holds or the deadline passes; no fixed sleeps stand in for synchronisation. */
export async function waitFor<T>(what: string, check: () => Promise<T | undefined | false>, timeoutMs = 30_000, everyMs = 20): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined && value !== false) return value;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? ` (last error: ${(last as Error).message})` : ''}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/**
 * The test stack asks every role for a password, and its clients send the stack's (PGPASSWORD): the
 * named roles that exist and may log in get that one. ALTER ROLE takes no parameters, so the server quotes.
 */
export async function withStackPassword(serverUrl: string, roles: string[]): Promise<void> {
  const statements = await query<{ statement: string }>(serverUrl,
    "SELECT format('ALTER ROLE %I PASSWORD %L', rolname, $2::text) AS statement FROM pg_roles WHERE rolname = ANY ($1) AND rolcanlogin", [roles, process.env.PGPASSWORD]);
  for (const { statement } of statements) await query(serverUrl, statement);
}
