import { withTables } from '../config/tables.js';
import type { Command } from 'commander';
import { exitCodes } from '../errors.js';
import { redact } from '../redact.js';
import { collectStatus, formatStatus } from '../report/status.js';
import { cliAction, config } from './context.js';

export function registerStatus(program: Command): void {
  program
    .command('status')
    .description('phase, snapshot progress, checkpoint, per-partition offsets and lag, last apply latency')
    .option('--json', 'print the report as JSON (schema in the README)')
    .addHelpText('after', '\nExample:\n  pgtunnel status --json | jq .lag')
    .action(
      cliAction(async (options: { json?: boolean }, globals) => {
        const report = await collectStatus(await withTables(config(globals)));
        process.stdout.write(redact(options.json ? `${JSON.stringify(report, null, 2)}\n` : `${formatStatus(report)}\n`));
        return report.errors.length > 0 ? exitCodes.unreachable : exitCodes.ok;
      }),
    );
}
