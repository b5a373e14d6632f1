import type { Command } from 'commander';
import { exitCodes } from '../errors.js';
import { collectStatus, formatStatus } from '../observe/status.js';
import { config, failure, type GlobalOptions } from './context.js';

export function registerStatus(program: Command): void {
  program
    .command('status')
    .description('phase, snapshot progress, checkpoint, per-partition offsets and lag, last apply latency')
    .option('--json', 'print the report as JSON (schema in the README)')
    .addHelpText('after', '\nExample:\n  pgtunnel status --json | jq .lag')
    .action(async (options: { json?: boolean }, command: Command) => {
      try {
        const report = await collectStatus(config(command.optsWithGlobals<GlobalOptions>()));
        process.stdout.write(options.json ? `${JSON.stringify(report, null, 2)}\n` : `${formatStatus(report)}\n`);
        process.exitCode = exitCodes.ok;
      } catch (err) {
        process.exitCode = failure(err);
      }
    });
}
