import type { Command } from 'commander';
import { exitCodes } from '../errors.js';
import { compareTable } from '../verify/compare.js';
import { cliAction, config } from './context.js';

export function registerVerify(program: Command): void {
  program
    .command('verify')
    .description('compare source and target tables row by row (chunked hashes); exit 0 when equal, 1 when not')
    .option('--limit <n>', 'print at most this many differing keys per table', (v) => Number(v), 100)
    .addHelpText('after', '\nExample:\n  pgtunnel verify && echo in sync')
    .action(
      cliAction(async (options: { limit: number }, globals) => {
        const cfg = config(globals);
        let equal = true;
        for (const table of cfg.tables) {
          const diff = await compareTable(cfg, table, options.limit);
          if (diff.differingKeys.length === 0) {
            process.stdout.write(`${diff.table}: equal (${diff.sourceRows} rows)\n`);
            continue;
          }
          equal = false;
          process.stdout.write(`${diff.table}: DIFFERENT — source ${diff.sourceRows} rows, target ${diff.targetRows} rows; differing keys:\n`);
          for (const k of diff.differingKeys) process.stdout.write(`  ${k}\n`);
          if (diff.truncated) process.stdout.write(`  … more (raise --limit)\n`);
        }
        return equal ? exitCodes.ok : exitCodes.verifyDifference;
      }),
    );
}
