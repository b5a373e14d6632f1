import { withTables } from '../config/tables.js';
import type { Command } from 'commander';
import { exitCodes } from '../errors.js';
import { compareTable } from '../verify/compare.js';
import { resendKeys } from '../verify/repair.js';
import { cliAction, config } from './context.js';

export function registerVerify(program: Command): void {
  program
    .command('verify')
    .description('compare source and target tables row by row (chunked hashes); exit 0 when equal, 1 when not')
    .option('--limit <n>', 'print at most this many differing keys per table', (v) => Number(v), 100)
    .option('--repair', 're-send the differing keys through the tunnel (a running tunnel then applies them)')
    .addHelpText('after', '\nExamples:\n  pgtunnel verify && echo in sync\n  pgtunnel verify --repair   # with the tunnel running, then verify again')
    .action(
      cliAction(async (options: { limit: number; repair?: boolean }, globals) => {
        const cfg = await withTables(config(globals));
        let equal = true;
        for (const table of cfg.tables) {
          const diff = await compareTable(cfg, table, options.limit);
          if (diff.missingColumns.length > 0) {
            equal = false;
            process.stdout.write(`${diff.table}: DIFFERENT — the target lacks column(s) ${diff.missingColumns.join(', ')} (fix: add them to the target table, or list them in the table's exclude)\n`);
          }
          if (diff.differingKeys.length === 0) {
            if (diff.missingColumns.length > 0) continue;
            process.stdout.write(`${diff.table}: equal (${diff.sourceRows} rows)\n`);
            continue;
          }
          equal = false;
          process.stdout.write(`${diff.table}: DIFFERENT — source ${diff.sourceRows} rows, target ${diff.targetRows} rows; differing keys:\n`);
          for (const k of diff.differingKeys) process.stdout.write(`  ${k}\n`);
          if (diff.truncated) process.stdout.write(`  … ${diff.allKeys.length - diff.differingKeys.length} more (raise --limit)\n`);
          if (options.repair) {
            const sent = await resendKeys(cfg, table, diff.allKeys);
            process.stdout.write(`  repair: re-sent ${sent.touched} source rows and ${sent.deleted} deletes through the tunnel\n`);
          }
        }
        return equal ? exitCodes.ok : exitCodes.verifyDifference;
      }),
    );
}
