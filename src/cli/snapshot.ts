import { withTables } from '../config/tables.js';
import type { Command } from 'commander';
import { tableId } from '../names.js';
import { restartSnapshot } from '../capture/stateStore.js';
import { TunnelError, exitCodes } from '../errors.js';
import { askForSnapshot, cancelSnapshotsOf, signalById } from '../capture/signals.js';
import { collectStatus } from '../report/status.js';
import { withClient } from '../pg.js';
import { sleep } from '../retry.js';
import { Tunnel } from '../pipeline/tunnel.js';
import { prepare } from '../setup/prepare.js';
import { config, embeddedStack, failure, log, shutdownSignal, type GlobalOptions } from './context.js';

interface SnapshotOptions {
  restart?: boolean;
  table?: string;
  where?: string;
  cancel?: boolean;
  wait?: boolean;
}

export function registerSnapshot(program: Command): void {
  program
    .command('snapshot')
    .description('run the tunnel until the snapshot is applied to the target, then exit')
    .option('--restart', 'read every source row again (the stream position is kept, nothing is lost)')
    .option('--table <table>', 'ask the running tunnel for an incremental snapshot of this table only (no restart)')
    .option('--where <predicate>', 'with --table: only the rows this SQL expression selects (evaluated in the source)')
    .option('--cancel', 'with --table: cancel its pending and running incremental snapshots')
    .option('--wait', 'with --table: wait until the incremental snapshot is published')
    .addHelpText('after', '\nExamples:\n  pgtunnel snapshot --restart && pgtunnel verify\n  pgtunnel snapshot --table employees --where "emp_id BETWEEN 1 AND 1000"\n  pgtunnel snapshot --table employees --cancel')
    .action(async (options: SnapshotOptions, command: Command) => {
      if (options.table !== undefined || options.where !== undefined || options.cancel || options.wait) {
        process.exitCode = await incrementalSnapshot(options, command).catch((err) => failure(err));
        return;
      }
      const signal = shutdownSignal();
      let cleanup = async () => {};
      try {
        let cfg = config(command.optsWithGlobals<GlobalOptions>());
        cleanup = (await embeddedStack(cfg)).stop;
        cfg = await withTables(cfg);
        const tables = await prepare(cfg, log);
        if (options.restart) {
          await withClient(cfg.sourceUrl, 'source', async (c) => {
            for (const t of cfg.tables) await restartSnapshot(c, tableId(t));
          });
        }
        const done = new AbortController();
        signal.addEventListener('abort', () => done.abort(), { once: true });
        const running = new Tunnel(cfg, tables, log).run(done.signal);
        running.catch(() => done.abort());
        // Done when every table is streaming and the target has applied everything in the topics.
        while (!done.signal.aborted) {
          const report = await collectStatus(cfg);
          if (report.phase === 'streaming' && report.lag === 0) {
            const rows = report.tables.reduce((n, t) => n + t.snapshot.rowsDone, 0);
            log.info({ rows }, 'snapshot applied to the target');
            break;
          }
          await sleep(250, done.signal);
        }
        done.abort();
        await running;
        process.exitCode = signal.aborted ? exitCodes.failure : exitCodes.ok;
      } catch (err) {
        process.exitCode = failure(err);
      } finally {
        await cleanup().catch((err) => failure(err));
      }
    });
}

/**
 * `--table`: a signal in the source for the table's producer (a running tunnel, or the next one started):
 * an incremental snapshot of the table or of the rows `--where` selects, or `--cancel` of its snapshots.
 */
async function incrementalSnapshot(options: SnapshotOptions, command: Command): Promise<number> {
  if (options.table === undefined || options.restart || (options.cancel && (options.where !== undefined || options.wait))) {
    throw new TunnelError('PGT_USAGE', '--where, --cancel and --wait go with --table, and --table not with --restart (nor --cancel with --where or --wait)', {
      errorClass: 'config',
      hint: 'pgtunnel snapshot --table employees [--where "<predicate>"] [--wait], or pgtunnel snapshot --table employees --cancel',
    });
  }
  const cfg = await withTables(config(command.optsWithGlobals<GlobalOptions>()));
  if (options.cancel) {
    const { cancelled, table } = await cancelSnapshotsOf(cfg.sourceUrl, cfg.tables, options.table);
    log.info({ table, cancelled }, `${cancelled} incremental snapshot(s) of ${table} cancelled`);
    return exitCodes.ok;
  }
  const { signalId, table } = await askForSnapshot(cfg.sourceUrl, cfg.tables, options.table, options.where ?? null);
  log.info({ table, signalId, where: options.where ?? null }, `incremental snapshot ${signalId} of ${table} asked for: the table's running producer picks it up within seconds (progress in pgtunnel status)`);
  if (!options.wait) return exitCodes.ok;
  const signal = shutdownSignal();
  while (!signal.aborted) {
    const s = await withClient(cfg.sourceUrl, 'source', (c) => signalById(c, signalId));
    if (s && s.state !== 'pending' && s.state !== 'running') {
      log.info({ table, signalId, state: s.state, rows: s.rowsDone, message: s.message }, `incremental snapshot ${signalId} of ${table}: ${s.state}`);
      return s.state === 'done' ? exitCodes.ok : exitCodes.failure;
    }
    await sleep(500, signal);
  }
  return exitCodes.failure;
}
