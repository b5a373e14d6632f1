import { withTables } from '../config/tables.js';
import { Option, type Command } from 'commander';
import type { TunnelConfig } from '../config/load.js';
import { classify, describeError, exitCodes } from '../errors.js';
import { redact } from '../observe/redact.js';
import { withClient } from '../pg.js';
import { Backoff, sleep } from '../pipeline/retry.js';
import { prepare, Tunnel, type PreparedTable } from '../pipeline/tunnel.js';
import { seedEmployees } from '../stack/demo.js';
import { config, embeddedStack, failure, log, shutdownSignal, type GlobalOptions } from './context.js';

interface RunOptions {
  seed: boolean;
  seedRows: number;
  role: 'all' | 'producer' | 'consumer';
  wait?: boolean;
}

export function registerRun(program: Command): void {
  program
    .command('run')
    .description('set up what is missing, then snapshot and stream changes until Ctrl-C')
    .option('--no-seed', 'do not write demo rows into an empty embedded source')
    .option('--seed-rows <n>', 'demo rows written into an empty embedded source', (v) => Number(v), 1000)
    .addOption(new Option('--role <role>', 'run only the capture producer or only the apply consumer (scale each on its own)').choices(['all', 'producer', 'consumer']).default('all'))
    .option('--wait', 'when a database or the broker is unreachable at start, keep retrying instead of exiting with code 3')
    .addHelpText('after', '\nExamples:\n  pgtunnel run                      # embedded stack, employees db1 -> db2\n  PGTUNNEL_SOURCE_URL=... PGTUNNEL_TARGET_URL=... PGTUNNEL_KAFKA_BROKERS=... pgtunnel run --wait\n  pgtunnel run --role consumer      # one more consumer sharing the partitions')
    .action(async (options: RunOptions, command: Command) => {
      process.exitCode = await runTunnel(command.optsWithGlobals<GlobalOptions>(), options);
    });
}

/** Prepares the services; with --wait an unreachable one is waited for, naming what is awaited. */
async function prepareOrWait(cfg: TunnelConfig, wait: boolean, signal: AbortSignal): Promise<PreparedTable[] | undefined> {
  const backoff = new Backoff(500, 10_000);
  for (;;) {
    try {
      return await prepare(cfg, log);
    } catch (err) {
      const e = classify(err);
      if (!wait || !e.retryable || signal.aborted) throw e;
      const retryInMs = backoff.next();
      log.warn({ code: e.code, retryInMs }, `waiting: ${describeError(e)}`);
      await sleep(retryInMs, signal);
      if (signal.aborted) return undefined;
    }
  }
}

async function runTunnel(globals: GlobalOptions, options: RunOptions): Promise<number> {
  const signal = shutdownSignal();
  let cleanup = async () => {};
  try {
    let cfg = config(globals);
    cleanup = (await embeddedStack(cfg)).stop;
    cfg = await withTables(cfg);
    if (cfg.embedded && options.seed) {
      const seeded = await withClient(cfg.sourceUrl, 'source', (c) => seedEmployees(c, options.seedRows));
      if (seeded > 0) log.info({ rows: seeded }, 'seeded demo rows into the empty source employees table');
    }
    const tables = await prepareOrWait(cfg, options.wait === true, signal);
    if (!tables) return exitCodes.ok;
    log.info({ source: redact(cfg.sourceUrl), target: redact(cfg.targetUrl), kafka: cfg.kafkaBrokers.join(','), tables: tables.map((t) => t.config.topic), role: options.role }, 'tunnel starting');
    const tunnel = new Tunnel(cfg, tables, log, (phase) => log.info({ phase }, `phase: ${phase}`));
    await tunnel.run(signal, { produce: options.role !== 'consumer', apply: options.role !== 'producer' });
    log.info('tunnel stopped');
    return exitCodes.ok;
  } catch (err) {
    return failure(err);
  } finally {
    await cleanup().catch((err) => failure(err));
  }
}
