import type { Command } from 'commander';
import { exitCodes, maskUrl } from '../errors.js';
import { withClient } from '../pg.js';
import { prepare, Tunnel } from '../pipeline/tunnel.js';
import { seedEmployees } from '../stack/demo.js';
import { config, embeddedStack, failure, log, shutdownSignal, type GlobalOptions } from './context.js';

export function registerRun(program: Command): void {
  program
    .command('run')
    .description('set up what is missing, then snapshot and stream changes until Ctrl-C')
    .option('--no-seed', 'do not write demo rows into an empty embedded source')
    .option('--seed-rows <n>', 'demo rows written into an empty embedded source', (v) => Number(v), 1000)
    .addHelpText('after', '\nExample:\n  pgtunnel run                      # embedded stack, employees db1 -> db2\n  PGTUNNEL_SOURCE_URL=... PGTUNNEL_TARGET_URL=... PGTUNNEL_KAFKA_BROKERS=... pgtunnel run')
    .action(async (options: { seed: boolean; seedRows: number }, command: Command) => {
      process.exitCode = await runTunnel(command.optsWithGlobals<GlobalOptions>(), options);
    });
}

async function runTunnel(globals: GlobalOptions, options: { seed: boolean; seedRows: number }): Promise<number> {
  const signal = shutdownSignal();
  let cleanup = async () => {};
  try {
    const cfg = config(globals);
    const { stack, started } = await embeddedStack(cfg);
    if (stack) cleanup = () => stack.down(started);
    if (cfg.embedded && options.seed) {
      const seeded = await withClient(cfg.sourceUrl, 'source', (c) => seedEmployees(c, options.seedRows));
      if (seeded > 0) log.info({ rows: seeded }, 'seeded demo rows into the empty source employees table');
    }
    const tables = await prepare(cfg, log);
    log.info({ source: maskUrl(cfg.sourceUrl), target: maskUrl(cfg.targetUrl), kafka: cfg.kafkaBrokers.join(','), tables: tables.map((t) => t.config.topic) }, 'tunnel starting');
    const tunnel = new Tunnel(cfg, tables, log, (phase) => log.info({ phase }, `phase: ${phase}`));
    await tunnel.run(signal);
    log.info('tunnel stopped');
    return exitCodes.ok;
  } catch (err) {
    return failure(err);
  } finally {
    await cleanup().catch((err) => failure(err));
  }
}

