import { withTables } from '../config/tables.js';
import type { Command } from 'commander';
import { uninstallCapture } from '../capture/install.js';
import { uninstallLogical } from '../capture/logicalInstall.js';
import { removeCaptureSchema } from '../capture/teardown.js';
import { exitCodes } from '../errors.js';
import { withClient } from '../pg.js';
import { prepare } from '../setup/prepare.js';
import { deleteTopics } from '../transport/kafka.js';
import { cliAction, config, log } from './context.js';
import { publicationName, sourcePublicationName, tableId } from '../names.js';

export function registerInstall(program: Command): void {
  program
    .command('install')
    .description('install capture in the source (change table, trigger), the offsets table in the target, and the topics')
    .addHelpText('after', '\nExample:\n  pgtunnel install --config pgtunnel.yaml')
    .action(
      cliAction(async (_options: object, globals) => {
        const installed = await withTables(config(globals));
        const tables = await prepare(installed, log, { installOnly: true });
        for (const t of tables) {
          const capture = t.capture.mode === 'logical' ? `publication ${t.capture.shared ? sourcePublicationName(installed.topicPrefix) : publicationName(t.config)} and slot ${t.capture.slot}` : `change table ${t.config.changeTable}`;
          process.stdout.write(`installed ${tableId(t.config)}: capture ${t.capture.mode} (${t.capture.reason}), ${capture}, key (${t.source.key.join(', ')}), topics ${t.config.topic} and ${t.config.dlqTopic}\n`);
        }
        return exitCodes.ok;
      }),
    );

  program
    .command('uninstall')
    .description('remove capture (triggers, function, change table, or publication and slot; state) from the source; tables are kept')
    .option('--drop-topics', 'also delete the Kafka topics and their DLQ topics')
    .option('--keep-schema', "keep schema pgtunnel (functions, DDL event triggers, the GRANTs on it) after the last table's capture is removed")
    .addHelpText('after', '\nExample:\n  pgtunnel uninstall --drop-topics')
    .action(
      cliAction(async (options: { dropTopics?: boolean; keepSchema?: boolean }, globals) => {
        const cfg = await withTables(config(globals));
        const schema = await withClient(cfg.sourceUrl, 'source', async (source) => {
          for (const t of cfg.tables) {
            await uninstallLogical(source, t, cfg.topicPrefix);
            await uninstallCapture(source, t);
          }
          return options.keepSchema ? 'kept' : removeCaptureSchema(source);
        });
        if (options.dropTopics) await deleteTopics(cfg, cfg.tables.flatMap((t) => [t.topic, t.dlqTopic]));
        process.stdout.write(`capture removed from ${cfg.tables.map((t) => tableId(t)).join(', ')}\n`);
        if (schema === 'removed') process.stdout.write('no table is captured any more: schema pgtunnel and its DDL event triggers removed from the source\n');
        return exitCodes.ok;
      }),
    );
}
