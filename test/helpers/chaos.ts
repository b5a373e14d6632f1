import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { LocalStack } from '../../src/stack/localStack.js';
import { portOpen } from '../../src/stack/processes.js';
import { runCli, TunnelProcess } from './tunnelProcess.js';
import { waitFor } from './services.js';
import { Workload, type WorkloadOptions, defaultWorkload } from '../../testkit/workload.js';

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

/**
 * Under a steady torture workload, SIGKILLs a random part of the path each round — the producer, the
 * consumer, the whole tunnel, the Kafka broker, the target PostgreSQL or (asked for) the source — and restarts it. After the
 * last round the workload stops and the target must converge with exact versions.
 */
export async function runChaos(
  env: Record<string, string>,
  urls: { sourceUrl: string; targetUrl: string },
  stack: LocalStack,
  options: { rounds: number; workload?: Partial<WorkloadOptions>; onRound?: (round: number, victim: Victim) => void; convergeTimeoutMs?: number; victims?: readonly Victim[] },
): Promise<ChaosResult> {
  const started = Date.now();
  const kills = Object.fromEntries(victims.map((v) => [v, 0])) as Record<Victim, number>;
  const all: TunnelProcess[] = [];
  const spawn = (role: 'producer' | 'consumer') => {
    // --wait, as a supervised deployment runs it: a process restarted while the broker still settles
    // after its own restart waits for it instead of exiting with code 3 (seen once under load with 2.x).
    const p = new TunnelProcess(env, ['run', '--wait', '--role', role]);
    all.push(p);
    return p;
  };
  let producer = spawn('producer');
  let consumer = spawn('consumer');
  const workload = new Workload(urls.sourceUrl, { ...defaultWorkload, maxTxRows: 200, lateChance: 0.03, ...options.workload });
  try {
    await producer.waitForLog('phase: streaming', 60_000);
    workload.start();
    // Every kind of victim early (in random order), then any.
    // only the tunnel's own processes when the file must not stop the shared stack (it runs beside others)
    const pool = options.victims ?? defaultVictims;
    const schedule = [...pool].sort(() => Math.random() - 0.5);
    for (let round = 1; round <= options.rounds; round++) {
      await pause(500, 2500);
      const victim = schedule[round - 1] ?? pool[Math.floor(Math.random() * pool.length)]!;
      options.onRound?.(round, victim);
      kills[victim]++;
      if (victim === 'producer' || victim === 'tunnel') await producer.kill('SIGKILL');
      if (victim === 'consumer' || victim === 'tunnel') await consumer.kill('SIGKILL');
      if (victim === 'kafka') await crashKafka(stack);
      if (victim === 'target') await crashCluster(stack, 'target');
      // the application's writers wait at a transaction boundary: none of their commits is in doubt
      if (victim === 'source') await workload.whileHeld(() => crashCluster(stack, 'source'));
      await pause(100, 1000);
      if (victim === 'producer' || victim === 'tunnel') producer = spawn('producer');
      if (victim === 'consumer' || victim === 'tunnel') consumer = spawn('consumer');
    }
    await workload.stop();
    const stopped = Date.now();
    await waitFor('convergence after the last kill', async () => (await runCli(['verify', '--limit', '5'], env)).code === 0, options.convergeTimeoutMs ?? 120_000, 500)
      .catch((err: Error) => {
        // What the last producer and consumer were doing is the first thing to read when convergence fails.
        const tail = (p: TunnelProcess) => p.output.slice(-4000);
        throw new Error(`${err.message}\n--- producer output (tail) ---\n${tail(producer)}\n--- consumer output (tail) ---\n${tail(consumer)}`);
      });
    const convergeMs = Date.now() - stopped;
    return {
      rounds: options.rounds,
      kills,
      transactions: workload.committed,
      changes: workload.changes,
      convergeMs,
      mismatches: await workload.mismatches(urls.targetUrl),
      durationMs: Date.now() - started,
    };
  } finally {
    await workload.stop().catch(() => {});
    await Promise.all(all.map((p) => p.stop()));
  }
}
