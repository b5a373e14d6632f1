import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { employeesDdl } from '../src/stack/demo.js';
import { postgresBinDir } from '../src/stack/postgresCluster.js';
import { BenchContext, BenchTunnel, cpuNs, sql, waitUntil } from './context.js';

/** Per side, one figure per round (round i of every side at index i). */
export interface OverheadResult {
  insertTps: Figures;
  updateTps: Figures;
  bulkUpdateSeconds: Figures;
  rows: number;
  seconds: number;
  rounds: number;
  /** The decoding's own CPU (walsender + pg_recvlogical) over the logical side's pgbench runs: what a walsender costs the writers' cores. */
  decoderCpu: { microsPerTx: number; coreShare: number };
}

/** `logical`: a walsender decodes the WAL meanwhile, the tunnel elsewhere; `logicalTunnel`: the tunnel streams on the same 2 cores. */
export interface Figures { plain: number[]; captured: number[]; logical: number[]; logicalTunnel: number[] }

const scripts = mkdtempSync(path.join(tmpdir(), 'pgtunnel-bench-'));
writeFileSync(path.join(scripts, 'insert.sql'), "INSERT INTO employees (first_name, last_name, dob, city, salary) VALUES ('f', 'l', '2000-01-01', 'c', 1);\n");

/** tps of `script` run by pgbench with 4 clients on 2 threads for `seconds`. */
export function pgbench(url: string, script: string, seconds: number): number {
  const u = new URL(url);
  const out = execFileSync(path.join(postgresBinDir(), 'pgbench'), ['-n', '-c', '4', '-j', '2', '-T', String(seconds), '-f', script, '-h', u.hostname, '-p', u.port, '-U', 'postgres', u.pathname.slice(1)], { encoding: 'utf8' });
  return Number(out.match(/tps = ([\d.]+)/)![1]);
}

export async function timed(url: string, text: string, params: unknown[] = []): Promise<number> {
  const start = process.hrtime.bigint();
  await sql(url, text, params);
  return Number(process.hrtime.bigint() - start) / 1e9;
}

/**
 * A walsender decoding `publication` with pgoutput, as it does for the tunnel, into /dev/null
 * (pg_recvlogical on a slot of its own): logical capture's cost on the source without the tunnel's and the
 * broker's CPU, which on a real deployment run elsewhere but here share the 2 cores with the writers.
 */
class WalDecoder {
  private child?: ChildProcess;
  private readonly bin = path.join(postgresBinDir(), 'pg_recvlogical');
  private readonly slot = 'bench_wal_decoder';

  constructor(private readonly url: string) {}

  /** CPU nanoseconds the walsender and pg_recvlogical have run so far (/proc/<pid>/schedstat: CPU time, not wall). */
  async cpuNs(): Promise<number> {
    const [sender] = await sql<{ pid: number }>(this.url, 'SELECT active_pid AS pid FROM pg_replication_slots WHERE slot_name = $1', [this.slot]);
    const ns = (pid: number | undefined) => (pid ? cpuNs(pid) : 0);
    return ns(sender?.pid) + ns(this.child?.pid);
  }

  private async active(): Promise<boolean> {
    return (await sql(this.url, 'SELECT 1 FROM pg_replication_slots WHERE slot_name = $1 AND active', [this.slot])).length > 0;
  }

  async start(): Promise<void> {
    const [pub] = await sql<{ pubname: string }>(this.url, "SELECT pubname FROM pg_publication_tables WHERE tablename = 'employees'");
    if (!pub) throw new Error('no publication of employees: install did not create logical capture');
    execFileSync(this.bin, ['-d', this.url, '--slot', this.slot, '--create-slot', '--if-not-exists', '-P', 'pgoutput']);
    this.child = spawn(this.bin, ['-d', this.url, '--slot', this.slot, '--start', '-o', 'proto_version=1', '-o', `publication_names=${pub.pubname}`, '-f', '/dev/null', '-F', '1', '-s', '1'], { stdio: 'ignore' });
    await waitUntil('the decoder\'s walsender', async () => {
      if (this.child!.exitCode !== null) throw new Error(`pg_recvlogical exited with ${this.child!.exitCode}`);
      return await this.active();
    }, 30_000, 20);
  }

  async stop(): Promise<void> {
    const child = this.child;
    if (child && child.exitCode === null) {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGINT');
      await exited;
    }
    await waitUntil('the decoder\'s slot to be free', async () => !(await this.active()), 30_000, 20);
    execFileSync(this.bin, ['-d', this.url, '--slot', this.slot, '--drop-slot']);
  }
}

type Side = 'plain' | 'captured' | 'logical' | 'logicalTunnel';
const sides: { side: Side; db: string }[] = [
  { side: 'plain', db: 'bench_plain' },
  { side: 'captured', db: 'bench_captured' },
  { side: 'logical', db: 'bench_logical' },
  { side: 'logicalTunnel', db: 'bench_logical_tunnel' },
];

/** A run's figures and, on the `logical` side, the decoder's CPU nanoseconds over its two pgbench runs. */
interface Run { insert: number; update: number; bulk: number; decoderNs: number }

/**
 * One timed run of a side: without capture, with trigger capture as `pgtunnel install` creates it as a superuser
 * (direct mode: the DDL event trigger present; captureModes.ts compares the modes), or with logical capture. The
 * trigger side runs without the tunnel: on 2 cores its own CPU (Node, Kafka) would be counted as the triggers'
 * cost; the latency and throughput runs measure the tunnel. Logical capture's cost on the source is the walsender
 * decoding the WAL, which only a reader of a slot causes: the goal's row has a walsender decode the publication
 * meanwhile (`WalDecoder`), and a second row, recorded, has the tunnel's producer stream to Kafka meanwhile
 * (walsender, tunnel and broker on the writers' cores).
 *
 * Each run gets a database made for it (same fill, then VACUUM ANALYZE) and dropped after it, so no side inherits
 * another run's bloat or a slot holding WAL; decoder and producer run only during their side's run, since a
 * walsender reads the whole cluster's WAL and would tax the other sides' writers. A CHECKPOINT before each timed
 * part keeps one run's dirty pages from being flushed during the next's.
 */
async function timedRun(ctx: BenchContext, { side, db }: (typeof sides)[number], rows: number, seconds: number): Promise<Run> {
  const checkpoint = () => sql(`${ctx.sourceServer}/postgres`, 'CHECKPOINT');
  const dbs = await ctx.databases(db, employeesDdl);
  try {
    await sql(dbs.source, `INSERT INTO employees (first_name, salary) SELECT 'n', 1 FROM generate_series(1, $1::int)`, [rows]);
    await sql(dbs.source, 'VACUUM ANALYZE employees');
    const env = ctx.tunnelEnv(dbs, 'employees', side.startsWith('logical') ? { PGTUNNEL_CAPTURE: 'logical' } : {});
    if (side !== 'plain') {
      const install = new BenchTunnel(env, ['install']);
      await new Promise((resolve) => install.child.once('exit', resolve));
      if (install.child.exitCode !== 0) throw new Error(`install failed: ${install.output}`);
    }
    const producer = side === 'logicalTunnel' ? new BenchTunnel(env, ['run', '--role', 'producer']) : undefined;
    const decoder = side === 'logical' ? new WalDecoder(dbs.source) : undefined;
    try {
      await producer?.streaming();
      await decoder?.start();
      const cpuBefore = (await decoder?.cpuNs()) ?? 0;
      await checkpoint();
      const insert = pgbench(dbs.source, path.join(scripts, 'insert.sql'), seconds);
      await checkpoint();
      const update = pgbench(dbs.source, path.join(scripts, 'update.sql'), seconds);
      const decoderNs = decoder ? (await decoder.cpuNs()) - cpuBefore : 0;
      // the update run leaves as many dead rows as it had tps: vacuumed, every side's bulk UPDATE starts alike
      await sql(dbs.source, 'VACUUM ANALYZE');
      await checkpoint();
      const bulk = await timed(dbs.source, 'UPDATE employees SET salary = salary + 1 WHERE emp_id <= $1', [rows]);
      return { insert, update, bulk, decoderNs };
    } finally {
      await producer?.stop();
      await decoder?.stop();
    }
  } finally {
    await ctx.dropDatabases(db);
  }
}

/**
 * `rounds` rounds of every side, the order rotated each round (a Latin square when rounds is a multiple of 4),
 * so that warm-up, autovacuum and the other helpers' load do not favour whichever side runs later; one
 * uncounted plain run first warms the server when there is more than one round.
 */
export async function overhead(ctx: BenchContext, rows: number, seconds: number, rounds: number, log: (text: string) => void = () => {}): Promise<OverheadResult> {
  writeFileSync(path.join(scripts, 'update.sql'), `\\set id random(1, ${rows})\nUPDATE employees SET salary = salary + 1 WHERE emp_id = :id;\n`);
  const figures = () => ({ plain: [], captured: [], logical: [], logicalTunnel: [] }) as Figures;
  const result: OverheadResult = { insertTps: figures(), updateTps: figures(), bulkUpdateSeconds: figures(), rows, seconds, rounds, decoderCpu: { microsPerTx: 0, coreShare: 0 } };
  if (rounds > 1) await timedRun(ctx, sides[0]!, rows, seconds);
  let decoderNs = 0;
  let decodedTx = 0;
  for (let round = 0; round < rounds; round++) {
    for (let i = 0; i < sides.length; i++) {
      const s = sides[(i + round) % sides.length]!;
      const run = await timedRun(ctx, s, rows, seconds);
      log(`round ${round + 1}/${rounds} ${s.side}: insert ${run.insert.toFixed(0)} tps, update ${run.update.toFixed(0)} tps, bulk ${run.bulk.toFixed(3)} s`);
      result.insertTps[s.side].push(run.insert);
      result.updateTps[s.side].push(run.update);
      result.bulkUpdateSeconds[s.side].push(run.bulk);
      if (s.side === 'logical') {
        decoderNs += run.decoderNs;
        decodedTx += (run.insert + run.update) * seconds;
      }
    }
  }
  result.decoderCpu = { microsPerTx: decoderNs / 1e3 / decodedTx, coreShare: decoderNs / 1e9 / (2 * 2 * seconds * rounds) };
  return result;
}
