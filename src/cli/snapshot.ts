import { withTables } from '../config/tables.js';
import type { Command } from 'commander';
import { tableId } from '../names.js';
import { restartSnapshot } from '../capture/stateStore.js';
import { exitCodes } from '../errors.js';
import { collectStatus } from '../report/status.js';
import { withClient } from '../pg.js';
import { sleep } from '../retry.js';
import { Tunnel } from '../pipeline/tunnel.js';
import { prepare } from '../setup/prepare.js';
import { config, embeddedStack, failure, log, shutdownSignal, type GlobalOptions } from './context.js';

export function registerSnapshot(program: Command): void {
  program
    .command('snapshot')
    .description('run the tunnel until the snapshot is applied to the target, then exit')
    .option('--restart', 'read every source row again (the stream position is kept, nothing is lost)')
    .addHelpText('after', '\nExample:\n  pgtunnel snapshot --restart && pgtunnel verify')
    .action(async (options: { restart?: boolean }, command: Command) => {
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
