import { withTables } from '../config/tables.js';
import { Option, type Command } from 'commander';
import type { TunnelConfig } from '../config/load.js';
import { classify, describeError, exitCodes } from '../errors.js';
import { redact } from '../redact.js';
import { withClient } from '../pg.js';
import { Backoff, sleep } from '../retry.js';
import { spawnSides, Tunnel, type RunParts } from '../pipeline/tunnel.js';
import type { SideThread } from '../pipeline/sideThread.js';
import { chooseThreads, describeThreads } from '../pipeline/threadChoice.js';
import { prepare } from '../setup/prepare.js';
import { TableReload } from '../setup/tableReload.js';
import type { PreparedTable } from '../apply/tableApply.js';
import { onceTimeout, parseTimeout, readHorizon, waitUntilDone, type OnceParts } from './once.js';
import { readHealth } from '../instruments/health.js';
import { seedEmployees } from '../stack/demo.js';
import { config, embeddedStack, failure, log, shutdownSignal, type GlobalOptions } from './context.js';
import { HeapGuard } from './mainHeap.js';

interface RunOptions {
  seed: boolean;
  seedRows: number;
  role: 'all' | 'producer' | 'consumer';
  wait?: boolean;
  once?: boolean;
  timeout: string;
}

export function registerRun(program: Command): void {
  program
    .command('run')
    .description('set up what is missing, then snapshot and stream changes until Ctrl-C')
    .option('--no-seed', 'do not write demo rows into an empty embedded source')
    .option('--seed-rows <n>', 'demo rows written into an empty embedded source', (v) => Number(v), 1000)
    .addOption(new Option('--role <role>', 'run only the capture producer or only the apply consumer (scale each on its own)').choices(['all', 'producer', 'consumer']).default('all'))
    .option('--wait', 'when a database or the broker is unreachable at start, keep retrying instead of exiting with code 3')
    .option('--once', 'publish everything committed before the start (the snapshot first when not done), wait until the target applied it, exit')
    .option('--timeout <duration>', 'with --once: give up after this long (90s, 10m, 1h), naming what it waited for', '10m')
    .addHelpText('after', '\nExamples:\n  pgtunnel run                      # embedded stack, employees db1 -> db2\n  PGTUNNEL_SOURCE_URL=... PGTUNNEL_TARGET_URL=... PGTUNNEL_KAFKA_BROKERS=... pgtunnel run --wait\n  pgtunnel run --role consumer      # one more consumer sharing the partitions\n  pgtunnel run --role producer --once --timeout 5m   # publish what is committed, then exit (for a scheduler)')
    .action(async (options: RunOptions, command: Command) => {
      process.exitCode = await runTunnel(command.optsWithGlobals<GlobalOptions>(), options);
    });
}

/** Prepares the services; with --wait an unreachable one is waited for, naming what is awaited. */
async function prepareOrWait(cfg: TunnelConfig, wait: boolean, signal: AbortSignal, waiting = { what: '' }): Promise<PreparedTable[] | undefined> {
  const backoff = new Backoff(500, 10_000);
  for (;;) {
    try {
      return await prepare(cfg, log);
    } catch (err) {
      const e = classify(err);
      if (!wait || !e.retryable) throw e;
      waiting.what = `the services to answer (${describeError(e).split('\n')[0]!})`;
      // the deadline passed during this attempt (a slow start on a loaded machine): the caller names what it waited for
      if (signal.aborted) return undefined;
      const retryInMs = backoff.next();
      log.warn({ code: e.code, retryInMs }, `waiting: ${describeError(e)}`);
      await sleep(retryInMs, signal);
      if (signal.aborted) return undefined;
    }
  }
}

async function runTunnel(globals: GlobalOptions, options: RunOptions): Promise<number> {
  // a live set near the main isolate's bound stops the run as a signal would, then fails it classified
  const heap = new HeapGuard().start();
  const signal = AbortSignal.any([shutdownSignal(), heap.signal]);
  let cleanup = async () => {};
  let threads: SideThread[] = [];
  try {
    // --once: the deadline covers waiting for the services too
    const timeoutMs = options.once ? parseTimeout(options.timeout) : undefined;
    const deadline = timeoutMs === undefined ? undefined : AbortSignal.timeout(timeoutMs);

    let cfg = config(globals);
    // each side on its own thread, --role or not: one code path, and this thread stays free for HTTP and
    // signals; spawned now, the threads load their modules while the services are prepared
    const parts = { produce: options.role !== 'consumer', apply: options.role !== 'producer' };
    // on this thread instead when asked, or by default on a host of 2 cores, where one thread measured 0.4–0.7×
    // the p50 and 0.3–0.6× the p99 of two threads' latency at 1k/s (threadChoice.ts)
    const choice = chooseThreads(cfg.threads);
    threads = choice.threads ? spawnSides(parts, log) : [];
    cleanup = (await embeddedStack(cfg)).stop;
    cfg = await withTables(cfg);
    if (cfg.embedded && options.seed) {
      const seeded = await withClient(cfg.sourceUrl, 'source', (c) => seedEmployees(c, options.seedRows));
      if (seeded > 0) log.info({ rows: seeded }, 'seeded demo rows into the empty source employees table');
    }
    const waiting = { what: '' };
    const tables = await prepareOrWait(cfg, options.wait === true, deadline ? AbortSignal.any([signal, deadline]) : signal, waiting);
    if (deadline?.aborted) throw onceTimeout(timeoutMs! / 1000, waiting.what, [], waiting.what !== '');
    if (!tables) {
      if (heap.outgrown) throw heap.outgrown;
      return options.once ? exitCodes.failure : exitCodes.ok;
    }
    log.info({ source: redact(cfg.sourceUrl), target: redact(cfg.targetUrl), kafka: cfg.kafkaBrokers.join(','), tables: tables.map((t) => t.config.topic), role: options.role, sides: describeThreads(choice, threads.length) }, 'tunnel starting');
    const tunnel = new Tunnel(cfg, tables, log, (phase) => log.info({ phase }, `phase: ${phase}`));
    const sides = { ...parts, threads: choice.threads ? threads : false, threadsReason: choice.reason };
    if (deadline) {
      const code = await runOnce(cfg, tunnel, sides, signal, deadline, timeoutMs! / 1000);
      if (heap.outgrown) throw heap.outgrown;
      return code;
    }
    // tables added or removed live: on SIGHUP and on a periodic catalog check
    const reload = new TableReload(cfg, () => withTables(config(globals)), tunnel, log, parts.produce);
    const onHangUp = () => void reload.check('SIGHUP');
    process.on('SIGHUP', onHangUp);
    reload.start(cfg.tableCheckIntervalMs);
    try {
      await tunnel.run(signal, sides);
    } finally {
      process.off('SIGHUP', onHangUp);
      reload.stop();
    }
    if (heap.outgrown) throw heap.outgrown;
    log.info('tunnel stopped');
    return exitCodes.ok;
  } catch (err) {
    return failure(heap.outgrown ?? err);
  } finally {
    heap.stop();
    // threads never started (a failed set-up, a signal before the start) are ended here; stop is a no-op for the others
    for (const thread of threads) thread.stop();
    await Promise.allSettled(threads.map((t) => t.done));
    await cleanup().catch((err) => failure(err));
  }
}

/**
 * `run --once`: the tunnel runs while a watcher waits until everything committed before the start is
 * published (and applied); then the tunnel stops and the run exits 0. A fatal error of a part, a signal or
 * the deadline end it non-zero with the reason.
 */
async function runOnce(cfg: TunnelConfig, tunnel: Tunnel, parts: OnceParts & RunParts, signal: AbortSignal, deadline: AbortSignal, seconds: number): Promise<number> {
  const waiting = { what: 'the start horizon to be read' };
  const horizon = await readHorizon(cfg, parts);
  log.info({ horizon: horizon.snapshot, lsn: horizon.lsn, ends: horizon.ends && Object.fromEntries([...horizon.ends].map(([t, e]) => [t, e.map(Number)])) }, 'run --once: everything committed before this point is to be published and applied');
  const stop = new AbortController();
  // what the parts waited for when the signal came, read before they stop (a scheduler ending the run on its own timeout learns what --timeout tells)
  let atSignal: string[] = [];
  const stopTunnel = () => {
    atSignal = stuckParts(cfg).reasons;
    stop.abort();
  };
  signal.addEventListener('abort', stopTunnel, { once: true });
  let failed: unknown;
  const running = tunnel.run(stop.signal, parts).catch((err) => {
    failed = err;
    stop.abort();
  });
  try {
    const result = await waitUntilDone(cfg, parts, horizon, AbortSignal.any([stop.signal, deadline]), log, waiting);
    if (failed === undefined && result === undefined && deadline.aborted) {
      const stuck = stuckParts(cfg);
      throw onceTimeout(seconds, waiting.what, stuck.reasons, stuck.outage);
    }
    stop.abort();
    await running;
    if (failed !== undefined) throw failed;
    if (!result) {
      process.stderr.write(`pgtunnel: run --once stopped by a signal before it was done; it was waiting for ${[waiting.what, ...atSignal].join('; ')}\n`);
      return exitCodes.failure;
    }
    if (result.deadLetters > 0) log.warn({ deadLetters: result.deadLetters }, `run --once: ${result.deadLetters} changes became dead letters (pgtunnel dlq list)`);
    log.info({ appliedUpTo: result.applyUpTo, deadLetters: result.deadLetters }, parts.apply ? 'run --once done: the target applied everything committed before the start' : 'run --once done: everything committed before the start is published');
    return exitCodes.ok;
  } finally {
    signal.removeEventListener('abort', stopTunnel);
    stop.abort();
    await running;
  }
}

/** This process's parts that wait or stand by, each with its reason; an outage when one waits for a service. */
function stuckParts(cfg: TunnelConfig): { reasons: string[]; outage: boolean } {
  const mine = readHealth(cfg.home).find((p) => p.pid === process.pid);
  const stuck = Object.entries(mine?.parts ?? {}).filter(([, h]) => h.state === 'waiting' || h.state === 'standby');
  return { reasons: stuck.map(([part, h]) => `${part} is ${h.state}: ${h.reason?.split('\n')[0] ?? ''}`), outage: stuck.some(([, h]) => h.state === 'waiting') };
}
