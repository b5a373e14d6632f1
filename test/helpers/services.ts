import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { TestContext } from 'node:test';
import { query } from '../../testkit/query.js';
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

export { query };

export function uniqueName(prefix: string): string {
  return `${prefix}_${randomBytes(4).toString('hex')}`;
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
  await Promise.all([s.sourceServer, s.targetServer].map((server) => query(`${server}/postgres`, `CREATE DATABASE ${name}`)));
  const sourceUrl = `${s.sourceServer}/${name}`;
  const targetUrl = `${s.targetServer}/${name}`;
  if (options.createTables !== false) {
    await query(sourceUrl, employeesDdl);
    await query(targetUrl, employeesDdl);
  }
  onCleanup(t, async () => {
    await Promise.all([s.sourceServer, s.targetServer].map((server) => query(`${server}/postgres`, `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)));
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

/** Something a test runs (a tunnel process, an in-process tunnel) that may end on its own. */
export interface UnderTest {
  /** Whether it ended on its own (a stop or kill by the test does not count). */
  ended(): boolean;
  /** How it ended, for the failure message (exit code, the end of its output). */
  howItEnded(): Promise<string>;
}

const watched = new Set<UnderTest>();
/** Ends a passing wait already saw: the test evidently expected them (it waited for that exit). */
const expected = new WeakSet<UnderTest>();

/** While `t` runs, every `waitFor` gives up at once when `subject` ends on its own instead of waiting out its deadline. */
export function watch(t: TestContext, subject: UnderTest): void {
  watched.add(subject);
  onCleanup(t, () => watched.delete(subject));
}

function unexpectedEnds(also: UnderTest[]): UnderTest[] {
  return [...new Set([...watched, ...also])].filter((s) => !expected.has(s) && s.ended());
}

/**
 * Polls a condition until it holds or the deadline passes; no fixed sleeps stand in for synchronisation.
 * An error of the check counts as "not yet" (a table not created yet, a broker still starting) and the last
 * one is reported, with its stack, at the deadline. When a watched tunnel ends on its own the condition can
 * no longer come true by it: the wait fails at once with how it ended (its exit code and output). `also`:
 * subjects to watch during this wait only.
 */
export async function waitFor<T>(what: string, check: () => Promise<T | undefined | false>, timeoutMs = 30_000, everyMs = 20, also: UnderTest[] = []): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    // read before the check: a check that reads the end itself (an exit code) still gets its answer
    const ended = unexpectedEnds(also);
    try {
      const value = await check();
      if (value !== undefined && value !== false) {
        for (const s of ended) expected.add(s);
        return value;
      }
    } catch (err) {
      last = err;
    }
    if (ended.length > 0) {
      const how = await Promise.all(ended.map((s) => s.howItEnded()));
      throw new Error(`gave up waiting for ${what}: ${how.join('\n')}${last ? `\n(last error of the check: ${(last as Error).message})` : ''}`, { cause: last });
    }
    if (Date.now() > deadline) {
      const detail = last ? ` (last error: ${(last as Error).stack ?? String(last)})` : '';
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${detail}`, { cause: last });
    }
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
