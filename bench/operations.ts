import http from 'node:http';
import { employeesDdl } from '../src/stack/demo.js';
import { freePort } from '../testkit/testStack.js';
import { BenchContext, BenchTunnel, sql, waitUntil } from './context.js';

/**
 * How long the operations users wait on take: the bounds the integration tests used to assert (a loaded
 * machine made them flaky, and a test is no place for timings), measured here and recorded as figures.
 */
export interface OperationTimes {
  /** `run --once` again with nothing new since the last one. */
  onceNothingNewSeconds: number;
  /** `run --once --wait --timeout 5s` against an unreachable target, until it exits (code 3). */
  onceTimeoutSeconds: number;
  /** SIGTERM of `run` while 50-row transactions stream through it, until exit 0. */
  sigtermUnderLoadMs: number;
  /** SIGTERM of `run --wait` while it waits for an unreachable broker, until exit 0. */
  sigtermWaitingMs: number;
  /** SIGTERM of `run` while a client polls /api/status every second on a kept-alive connection (the dashboard). */
  sigtermDashboardMs: number;
  /** SIGKILL of the producer that publishes, until a standing-by producer published its first page. */
  failoverFirstPageMs: number;
}

const count = async (url: string, q: string) => Number((await sql<{ n: string }>(url, q))[0]!.n);

/** Waits until the process exits; its exit code. */
function exit(p: BenchTunnel, timeoutMs = 300_000): Promise<number | null> {
  if (p.child.exitCode !== null || p.child.signalCode !== null) return Promise.resolve(p.child.exitCode);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`bench: pgtunnel ${p.child.spawnargs.slice(2).join(' ')} did not exit within ${timeoutMs} ms\n${p.output.slice(-3000)}`)), timeoutMs);
    p.child.once('exit', (code) => {
      clearTimeout(timer);
      resolve(code);
    });
  });
}

/** Runs `pgtunnel <args>` to its end, expecting `code`; its duration in seconds. */
async function timedRun(env: Record<string, string>, args: string[], code: number): Promise<number> {
  const started = performance.now();
  const p = new BenchTunnel(env, args);
  const got = await exit(p);
  if (got !== code) throw new Error(`bench: pgtunnel ${args.join(' ')} exited with ${got}, not ${code}\n${p.output.slice(-3000)}`);
  return (performance.now() - started) / 1000;
}

/** SIGTERM, then the time until the process exited 0. */
async function timedStop(p: BenchTunnel): Promise<number> {
  const started = performance.now();
  await p.stop();
  if (p.child.exitCode !== 0) throw new Error(`bench: the tunnel exited with ${p.child.exitCode ?? p.child.signalCode} on SIGTERM\n${p.output.slice(-3000)}`);
  return performance.now() - started;
}

async function whileWriting<T>(source: string, during: () => Promise<T>): Promise<T> {
  let writing = true;
  const writer = (async () => {
    while (writing) await sql(source, "INSERT INTO employees (first_name) SELECT 'w' || g FROM generate_series(1, 50) g");
  })();
  try {
    return await during();
  } finally {
    writing = false;
    await writer;
  }
}

async function once(ctx: BenchContext): Promise<{ nothingNew: number; timeout: number }> {
  const dbs = await ctx.databases('bench_ops_once', employeesDdl);
  await sql(dbs.source, "INSERT INTO employees (first_name, salary) SELECT 'f' || g, g FROM generate_series(1, 5000) g");
  const env = ctx.tunnelEnv(dbs, 'employees');
  await timedRun(env, ['run', '--once', '--timeout', '300s'], 0);
  const nothingNew = await timedRun(env, ['run', '--once', '--timeout', '60s'], 0);
  const timeout = await timedRun({ ...env, PGTUNNEL_TARGET_URL: 'postgres://postgres@127.0.0.1:1/nowhere' }, ['run', '--once', '--wait', '--timeout', '5s'], 3);
  return { nothingNew, timeout };
}

async function sigterms(ctx: BenchContext): Promise<{ underLoad: number; waiting: number; dashboard: number }> {
  const dbs = await ctx.databases('bench_ops_sigterm', employeesDdl);
  const env = ctx.tunnelEnv(dbs, 'employees');
  const loaded = new BenchTunnel(env);
  await loaded.ready(dbs.source, dbs.target);
  const underLoad = await whileWriting(dbs.source, async () => {
    await waitUntil('changes flowing', async () => (await count(dbs.target, 'SELECT count(*) AS n FROM employees')) > 500, 60_000);
    return timedStop(loaded);
  });

  const waitingTunnel = new BenchTunnel({ ...env, PGTUNNEL_KAFKA_BROKERS: '127.0.0.1:1' }, ['run', '--wait']);
  await waitUntil('the tunnel waiting for the broker', async () => waitingTunnel.output.includes('waiting: cannot reach Kafka'), 60_000);
  const waiting = await timedStop(waitingTunnel);

  const port = await freePort();
  const served = new BenchTunnel({ ...env, PGTUNNEL_HTTP_PORT: String(port) });
  await served.ready(dbs.source, dbs.target);
  const agent = new http.Agent({ keepAlive: true });
  let polling = true;
  const poller = (async () => {
    while (polling) {
      await new Promise<void>((resolve) => http.get(`http://127.0.0.1:${port}/api/status`, { agent }, (res) => res.resume().on('end', resolve)).on('error', () => resolve()));
      await new Promise((r) => setTimeout(r, 1000)); // the dashboard's own poll interval
    }
  })();
  const dashboard = await timedStop(served);
  polling = false;
  await poller;
  agent.destroy();
  return { underLoad, waiting, dashboard };
}

async function failover(ctx: BenchContext): Promise<number> {
  const dbs = await ctx.databases('bench_ops_failover', employeesDdl);
  const env = ctx.tunnelEnv(dbs, 'employees');
  const active = new BenchTunnel(env, ['run', '--role', 'producer']);
  await active.streaming();
  const standby = new BenchTunnel(env, ['run', '--role', 'producer']);
  try {
    await waitUntil('the second producer waiting for the table lock', async () =>
      (await count(dbs.source, "SELECT count(*) AS n FROM pg_locks l JOIN pg_database d ON d.oid = l.database WHERE l.locktype = 'advisory' AND NOT l.granted AND d.datname = current_database()")) > 0, 60_000);
    return await whileWriting(dbs.source, async () => {
      await waitUntil('the active producer publishing', async () => (await count(dbs.source, 'SELECT changes_published AS n FROM pgtunnel.state')) > 500, 60_000);
      const killed = performance.now();
      active.child.kill('SIGKILL');
      await exit(active);
      const published = await count(dbs.source, 'SELECT changes_published AS n FROM pgtunnel.state');
      await waitUntil('the standby publishing', async () => (await count(dbs.source, 'SELECT changes_published AS n FROM pgtunnel.state')) > published, 60_000, 5);
      return performance.now() - killed;
    });
  } finally {
    await standby.stop();
    if (active.child.exitCode === null && active.child.signalCode === null) await active.stop();
  }
}

export async function operationTimes(ctx: BenchContext): Promise<OperationTimes> {
  const o = await once(ctx);
  const s = await sigterms(ctx);
  return {
    onceNothingNewSeconds: o.nothingNew,
    onceTimeoutSeconds: o.timeout,
    sigtermUnderLoadMs: s.underLoad,
    sigtermWaitingMs: s.waiting,
    sigtermDashboardMs: s.dashboard,
    failoverFirstPageMs: await failover(ctx),
  };
}

/** The bench table's rows: the bounds the tests used to assert are the targets. */
export function operationRows(o: OperationTimes): { measure: string; baseline: string; tunnel: string; ratio: string; target: string; met: boolean }[] {
  const row = (measure: string, value: number, unit: 's' | 'ms', bound: number) =>
    ({ measure, baseline: '-', tunnel: `${value.toFixed(unit === 's' ? 1 : 0)} ${unit}`, ratio: '-', target: `< ${bound} ${unit}`, met: value < bound });
  return [
    row('run --once with nothing new', o.onceNothingNewSeconds, 's', 20),
    row('run --once --wait --timeout 5s, target unreachable: until exit 3', o.onceTimeoutSeconds, 's', 30),
    row('SIGTERM under load: until exit 0', o.sigtermUnderLoadMs, 'ms', 5000),
    row('SIGTERM while run --wait waits for the broker: until exit 0', o.sigtermWaitingMs, 'ms', 5000),
    row('SIGTERM with /api/status polled each second: until exit 0', o.sigtermDashboardMs, 'ms', 5000),
    row('SIGKILL of the active producer: until the standby published a page', o.failoverFirstPageMs, 'ms', 2000),
  ];
}
