import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { LocalStack } from '../src/stack/localStack.js';
import { query as sql } from '../testkit/query.js';
import pg from 'pg';
import { employeesDdl } from '../src/stack/demo.js';
import { startTestStack } from '../testkit/testStack.js';

export { sql };

export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

export async function waitUntil(what: string, check: () => Promise<boolean>, timeoutMs: number, everyMs = 20): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`bench: timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}

/** The stack the benchmarks run on, and a fresh database pair per measure. */
export class BenchContext {
  constructor(readonly stack: LocalStack, readonly env: Record<string, string>, readonly home: string) {}

  /** The encoding the tunnels of the next measures use (`--format`); avro and json-schema use the stack's registry. */
  format: 'json' | 'avro' | 'json-schema' = 'json';

  get sourceServer(): string {
    return this.env.PGTUNNEL_TEST_SOURCE_SERVER!;
  }

  get targetServer(): string {
    return this.env.PGTUNNEL_TEST_TARGET_SERVER!;
  }

  get brokers(): string {
    return this.env.PGTUNNEL_TEST_BROKERS!;
  }

  /** Slots a stopped or interrupted run left in `db` (logical capture's, Debezium's): they keep it from being dropped. */
  async dropSlots(db: string): Promise<void> {
    await sql(`${this.sourceServer}/postgres`, 'SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = $1 AND NOT active', [db]);
  }

  async databases(name: string, ddl: string, targetDdl = ddl): Promise<{ source: string; target: string }> {
    await this.dropDatabases(name);
    for (const server of [this.sourceServer, this.targetServer]) await sql(`${server}/postgres`, `CREATE DATABASE ${name}`);
    const source = `${this.sourceServer}/${name}`;
    const target = `${this.targetServer}/${name}`;
    await sql(source, ddl);
    await sql(target, targetDdl);
    return { source, target };
  }

  /** Drops the pair `databases(name)` made, and the slots a run left in the source's (a stopped tunnel's walsender may still hold one a moment). */
  async dropDatabases(name: string): Promise<void> {
    const held = async () => (await sql(`${this.sourceServer}/postgres`, 'SELECT 1 FROM pg_replication_slots WHERE database = $1 AND active', [name])).length > 0;
    await waitUntil(`the slots of ${name} to be released`, async () => !(await held()), 30_000);
    await this.dropSlots(name);
    for (const server of [this.sourceServer, this.targetServer]) await sql(`${server}/postgres`, `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  }

  tunnelEnv(dbs: { source: string; target: string }, table: string, extra: Record<string, string> = {}): Record<string, string> {
    return {
      PGTUNNEL_SOURCE_URL: dbs.source,
      PGTUNNEL_TARGET_URL: dbs.target,
      PGTUNNEL_KAFKA_BROKERS: this.brokers,
      PGTUNNEL_TABLES: table,
      PGTUNNEL_TOPIC_PREFIX: `bench-${path.basename(dbs.source)}-${Date.now()}`,
      PGTUNNEL_GROUP_ID: `bench-${path.basename(dbs.source)}-${Date.now()}`,
      PGTUNNEL_HOME: path.join(this.home, 'bench-run'),
      PGTUNNEL_LOG_FORMAT: 'json',
      PGTUNNEL_HTTP_PORT: 'off',
      PGTUNNEL_FORMAT: this.format,
      ...(this.format === 'json' ? {} : { PGTUNNEL_REGISTRY_URL: this.env.PGTUNNEL_TEST_REGISTRY_URL! }),
      ...extra,
    };
  }
}

/** A `pgtunnel run` child process whose peak memory (VmHWM) is sampled from /proc. */
export class BenchTunnel {
  readonly child: ChildProcess;
  output = '';

  /** `entry`: the script run (bench/limitedTunnel.ts runs the CLI with other heap caps); `nodeArgs`: node's own, before it. */
  constructor(env: Record<string, string>, args: string[] = ['run'], entry = path.join(root, 'bin/pgtunnel.js'), nodeArgs: string[] = []) {
    this.child = spawn(process.execPath, [...nodeArgs, entry, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    this.child.stdout!.on('data', (d: Buffer) => (this.output += d.toString()));
    this.child.stderr!.on('data', (d: Buffer) => (this.output += d.toString()));
  }

  async streaming(): Promise<void> {
    await waitUntil('the tunnel to stream', async () => {
      if (this.child.exitCode !== null) throw new Error(`tunnel exited: ${this.output}`);
      return this.output.includes('phase: streaming');
    }, 600_000, 50);
  }

  /**
   * Streaming, and the consumer has its partitions: a probe row written to the source has reached the
   * target (the first changes must not wait for the consumer group to form).
   */
  async ready(source: string, target: string, table = 'employees', probe = "INSERT INTO employees (first_name) VALUES ('probe')"): Promise<void> {
    await this.streaming();
    await sql(source, probe);
    await waitUntil('the probe row in the target', async () => Number((await sql<{ n: string }>(target, `SELECT count(*) AS n FROM ${table}`))[0]!.n) > 0, 60_000, 20);
  }

  /** Peak resident set size so far, in MB. */
  peakRssMb(): number {
    const status = readFileSync(`/proc/${this.child.pid}/status`, 'utf8');
    return Number(status.match(/VmHWM:\s+(\d+) kB/)![1]) / 1024;
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null) return;
    const exited = new Promise((r) => this.child.once('exit', r));
    this.child.kill('SIGTERM');
    await exited;
  }
}

/**
 * CPU nanoseconds one task has run so far (/proc/<pid>/schedstat, or `<pid>/task/<tid>`): CPU time, not wall, which a
 * loaded host inflates. Only that task's: right for a PostgreSQL backend (one thread); a Node process's other threads
 * are not in it (threadCpuNs, or utime + stime of /proc/<pid>/stat as idleCost.ts reads the tunnel).
 */
export function cpuNs(pid: number | string): number {
  return Number(readFileSync(`/proc/${pid}/schedstat`, 'utf8').split(' ')[0]);
}

/** CPU ns of each thread of a process by its name (`pgtunnel consum`, `MainThread`, `V8Worker`…; same names summed). */
export function threadCpuNs(pid: number): Map<string, number> {
  const out = new Map<string, number>();
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      const name = readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim();
      out.set(name, (out.get(name) ?? 0) + cpuNs(`${pid}/task/${tid}`));
    } catch {
      // a thread that ended between the listing and the read
    }
  }
  return out;
}

export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

/**
 * A stack of its own (the same-invocation benches: snapshotPaths, changePaths) with the seed's employees
 * table in the source's postgres database; `body` gets a connection to it, closed and the stack stopped after.
 */
export async function withEmployeesStack(name: string, body: (s: { sourceUrl: string; brokers: string; client: pg.Client }) => Promise<void>): Promise<void> {
  const { stack, env } = await startTestStack(path.join(root, '.pgtunnel'), name);
  try {
    const sourceUrl = `${env.PGTUNNEL_TEST_SOURCE_SERVER}/postgres`;
    const client = new pg.Client({ connectionString: sourceUrl });
    await client.connect();
    try {
      await client.query(employeesDdl);
      await body({ sourceUrl, brokers: env.PGTUNNEL_TEST_BROKERS!, client });
    } finally {
      await client.end();
    }
  } finally {
    await stack.down();
  }
}
