import { withTables } from '../config/tables.js';
import type { Command } from 'commander';
import { exitCodes } from '../errors.js';
import { collectOffsets, formatOffsets } from '../report/offsets.js';
import { redact } from '../redact.js';
import { KafkaOffsetReader } from '../transport/kafkaOffsets.js';
import { cliAction, config } from './context.js';

export function registerOffsets(program: Command): void {
  program
    .command('offsets')
    .description("per table partition: the group offset committed in Kafka, the offset stored in the target, the log end offset and the lag (log end − group offset, as Kafka's tools show it)")
    .option('--json', 'print the report as JSON (schema in the README)')
    .addHelpText('after', '\nExample:\n  pgtunnel offsets --json | jq \'.partitions[] | select(.lag > 0)\'')
    .action(
      cliAction(async (options: { json?: boolean }, globals) => {
        const cfg = await withTables(config(globals));
        const reader = new KafkaOffsetReader(cfg);
        try {
          const report = await collectOffsets(cfg, reader);
          process.stdout.write(redact(options.json ? `${JSON.stringify(report, null, 2)}\n` : `${formatOffsets(report)}\n`));
          return report.errors.length > 0 ? exitCodes.unreachable : exitCodes.ok;
        } finally {
          await reader.close();
        }
      }),
    );
}
