import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { TestContext } from 'node:test';
import type { LocalStack } from '../../src/stack/localStack.js';
import { portOpen } from '../../src/stack/processes.js';
import { appliedCountMismatches, changesTwice, installWriteLog, splitTransactions, topicRecords, versionGaps, writeLogRegressions } from './oracles.js';
import { runCli, TunnelProcess } from './tunnelProcess.js';
import { query, tunnelDatabases, waitFor } from './services.js';
import { currentTestStack } from '../../testkit/testStack.js';
import { tortureDdl, Workload, type WorkloadOptions, defaultWorkload } from '../../testkit/workload.js';

export const victims = ['producer', 'consumer', 'tunnel', 'kafka', 'target', 'source'] as const;
export type Victim = (typeof victims)[number];
/** Killed when no pool is named; the source only when asked (its writers are held while it restarts). */
const defaultVictims = victims.filter((v) => v !== 'source');

export interface ChaosResult {
  rounds: number;
  kills: Record<Victim, number>;
  transactions: number;
  changes: number;
  /** From the end of the last round (workload stopped) to `verify` exit 0. */
  convergeMs: number;
  mismatches: string[];
  durationMs: number;
}

/** Source transactions each workload commits between two kills, at the least. */
const commitsPerRound = 20;

const pause = (min: number, max: number) => new Promise((r) => setTimeout(r, min + Math.random() * (max - min)));

/** Alive and not a zombie: a killed broker stays a zombie until its parent (the test runner) reaps it. */
function alive(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

async function killPid(pid: number | undefined): Promise<void> {
  if (pid === undefined || !alive(pid)) return;
  process.kill(pid, 'SIGKILL');
  await waitFor(`pid ${pid} to die`, async () => !alive(pid), 10_000, 20);
}

/** SIGKILL the postmaster, then start the cluster again (crash recovery), retrying while old backends exit. */
async function crashCluster(stack: LocalStack, which: 'source' | 'target'): Promise<void> {
  const cluster = stack[which];
  const pid = Number(readFileSync(path.join(cluster.dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
  await killPid(pid);
  await waitFor(`the ${which} cluster to start again`, async () => {
    try {
      await cluster.start();
      return true;
    } catch {
      return false;
    }
  }, 60_000, 250);
}

async function crashKafka(stack: LocalStack): Promise<void> {
  await killPid(stack.kafka.pid());
  // The leader thread turns zombie before the JVM's other threads have let go of the listening sockets.
  await waitFor('the killed broker to release its ports', async () => !(await portOpen(stack.kafka.port)) && !(await portOpen(stack.kafka.controllerPort)), 30_000, 50);
  await stack.kafka.start();
}

type ChaosOptions = { rounds: number; workload?: Partial<WorkloadOptions>; onRound?: (round: number, victim: Victim) => void; convergeTimeoutMs?: number; victims?: readonly Victim[] };

/**
 * Under a steady torture workload, SIGKILLs a random part of the path each round — the producer, the
 * consumer, the whole tunnel, the Kafka broker, the target PostgreSQL or (asked for) the source — and restarts it. After the
 * last round the workload stops and the target must converge with exact versions.
 */
export async function runChaos(env: Record<string, string>, urls: { sourceUrl: string; targetUrl: string }, stack: LocalStack, options: ChaosOptions): Promise<ChaosResult> {
  return (await runChaosSideBySide([{ env, urls }], stack, options))[0]!;
}

/** One tunnel of a side-by-side run: its own databases, workload and processes. */
class ChaosTunnel {
  readonly all: TunnelProcess[] = [];
  producer: TunnelProcess;
  consumer: TunnelProcess;
  readonly workload: Workload;
  /** The workload's commits when the last kill came. */
  committedAtKill = 0;

  constructor(readonly env: Record<string, string>, readonly urls: { sourceUrl: string; targetUrl: string }, workload: Partial<WorkloadOptions> | undefined) {
    this.producer = this.spawn('producer');
    this.consumer = this.spawn('consumer');
    this.workload = new Workload(urls.sourceUrl, { ...defaultWorkload, maxTxRows: 200, lateChance: 0.03, ...workload });
  }

  spawn(role: 'producer' | 'consumer'): TunnelProcess {
    // --wait, as a supervised deployment runs it: a process restarted while the broker still settles
    // after its own restart waits for it instead of exiting with code 3 (seen once under load with 2.x).
    const p = new TunnelProcess(this.env, ['run', '--wait', '--role', role]);
    this.all.push(p);
    return p;
  }

  async kill(victim: Victim): Promise<void> {
    if (victim === 'producer' || victim === 'tunnel') await this.producer.kill('SIGKILL');
    if (victim === 'consumer' || victim === 'tunnel') await this.consumer.kill('SIGKILL');
  }

  restart(victim: Victim): void {
    if (victim === 'producer' || victim === 'tunnel') this.producer = this.spawn('producer');
    if (victim === 'consumer' || victim === 'tunnel') this.consumer = this.spawn('consumer');
  }
}

/**
 * `runChaos` for several tunnels at once, each on its own databases under its own workload: each round's victim is
 * killed in every tunnel (a broker or cluster kill hits them all at once), so the stack's restarts, the slowest part
 * of a round, are paid once for all of them.
 */
export async function runChaosSideBySide(runs: { env: Record<string, string>; urls: { sourceUrl: string; targetUrl: string } }[], stack: LocalStack, options: ChaosOptions): Promise<ChaosResult[]> {
  const started = Date.now();
  const kills = Object.fromEntries(victims.map((v) => [v, 0])) as Record<Victim, number>;
  const tunnels = runs.map((r) => new ChaosTunnel(r.env, r.urls, options.workload));
  try {
    await Promise.all(tunnels.map((c) => c.producer.waitForLog('phase: streaming', 60_000)));
    for (const c of tunnels) c.workload.start();
    // Every kind of victim early (in random order), then any.
    // only the tunnel's own processes when the file must not stop the shared stack (it runs beside others)
    const pool = options.victims ?? defaultVictims;
    const schedule = [...pool].sort(() => Math.random() - 0.5);
    for (let round = 1; round <= options.rounds; round++) {
      await pause(500, 2500);
      // each kill lands on work in flight however loaded the machine: every tunnel's writers committed since the last one
      await waitFor(`${commitsPerRound} commits of each workload before round ${round}`, async () => tunnels.every((c) => c.workload.committed >= c.committedAtKill + commitsPerRound), 120_000, 50);
      for (const c of tunnels) c.committedAtKill = c.workload.committed;
      const victim = schedule[round - 1] ?? pool[Math.floor(Math.random() * pool.length)]!;
      options.onRound?.(round, victim);
      kills[victim]++;
      await Promise.all(tunnels.map((c) => c.kill(victim)));
      if (victim === 'kafka') await crashKafka(stack);
      if (victim === 'target') await crashCluster(stack, 'target');
      // the application's writers (every tunnel's) wait at a transaction boundary: none of their commits is in doubt
      if (victim === 'source') await tunnels.reduceRight((body, c) => () => c.workload.whileHeld(body), () => crashCluster(stack, 'source'))();
      await pause(100, 1000);
      for (const c of tunnels) c.restart(victim);
    }
    await Promise.all(tunnels.map((c) => c.workload.stop()));
    const stopped = Date.now();
    return await Promise.all(tunnels.map(async (c) => {
      await waitFor('convergence after the last kill', async () => (await runCli(['verify', '--limit', '5'], c.env)).code === 0, options.convergeTimeoutMs ?? 120_000, 500)
        .catch((err: Error) => {
          // What the last producer and consumer were doing is the first thing to read when convergence fails.
          const tail = (p: TunnelProcess) => p.output.slice(-4000);
          throw new Error(`${err.message}\n--- producer output (tail) ---\n${tail(c.producer)}\n--- consumer output (tail) ---\n${tail(c.consumer)}`);
        });
      const convergeMs = Date.now() - stopped;
      return {
        rounds: options.rounds,
        kills,
        transactions: c.workload.committed,
        changes: c.workload.changes,
        convergeMs,
        mismatches: await c.workload.mismatches(c.urls.targetUrl),
        durationMs: Date.now() - started,
      };
    }));
  } finally {
    await Promise.all(tunnels.map((c) => c.workload.stop().catch(() => {})));
    await Promise.all(tunnels.flatMap((c) => c.all.map((p) => p.stop())));
  }
}

/** A tunnel's mode in a chaos case, named in its assertions. */
export interface ChaosVariant {
  name: string;
  exactlyOnce: boolean;
  env?: Record<string, string>;
}

/**
 * Short chaos runs side by side (one per variant, each on the torture table of its own databases) with the oracles
 * every variant asserts; what only some variants hold (nothing twice, no regression, whole transactions) is
 * returned for the test to judge.
 */
export async function chaosCases(t: TestContext, variants: ChaosVariant[], rounds: number, pool?: readonly Victim[]) {
  const prepared = await Promise.all(variants.map(async (v) => {
    const db = await tunnelDatabases(t, { createTables: false });
    // logical capture: a delete carries its whole row (the version oracle reads it), as trigger capture sends it
    const logical = v.env?.PGTUNNEL_CAPTURE === 'logical';
    await query(db.sourceUrl, logical ? `${tortureDdl}; ALTER TABLE torture REPLICA IDENTITY FULL` : tortureDdl);
    await query(db.targetUrl, tortureDdl);
    await installWriteLog(db.targetUrl, 'torture', 'id', 'version');
    return { v, db, env: { ...db.env, PGTUNNEL_TABLES: 'torture', ...(v.exactlyOnce ? { PGTUNNEL_EXACTLY_ONCE: 'true' } : {}), ...v.env } };
  }));
  const stack = currentTestStack();
  const results = await runChaosSideBySide(prepared.map((p) => ({ env: p.env, urls: p.db })), stack, {
    rounds,
    victims: pool,
    onRound: (round, victim) => t.diagnostic(`round ${round}: kill ${victim}`),
  });
  const judged = [];
  for (const [i, { v, db }] of prepared.entries()) {
    const result = results[i]!;
    t.diagnostic(`${v.name} chaos: ${JSON.stringify(result)}`);
    assert.deepEqual(result.mismatches, [], `${v.name}: every key at the version that committed last in the source`);
    const topic = `${db.topicPrefix}.public.torture`;
    const records = await topicRecords(topic);
    const twice = changesTwice(records);
    t.diagnostic(`${v.name} topic: ${records.length} records, ${twice.length} changes there more than once`);
    assert.ok(records.length > 0);
    assert.deepEqual(await appliedCountMismatches(db.targetUrl, topic, records), [], `${v.name}: each Kafka record applied exactly once (target counts = records in the topic)`);
    assert.deepEqual(versionGaps(records), [], `${v.name}: each source change in the topic, per key in version order, none skipped`);
    judged.push({ twice, regressions: await writeLogRegressions(db.targetUrl), split: () => splitTransactions(db.targetUrl, records, 'id', 'version') });
  }
  assert.deepEqual(Object.values(stack.status()).map((s) => s.running), [true, true, true], 'the stack is whole');
  return judged;
}
