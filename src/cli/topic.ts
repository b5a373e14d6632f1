import type { Command } from 'commander';
import type { TableConfig, TunnelConfig } from '../config/load.js';
import { withTables } from '../config/tables.js';
import { TunnelError, exitCodes } from '../errors.js';
import { tableId } from '../names.js';
import { withClient } from '../pg.js';
import { staticSessionTimeoutMs } from '../pipeline/applyConsumer.js';
import { tryProducerLock } from '../pipeline/producerLock.js';
import { endOffsets } from '../transport/kafka.js';
import { addPartitions, groupMembers, partitionCounts, partitionsProcedure } from '../transport/topicPartitions.js';
import { config, failure, type GlobalOptions } from './context.js';

function findTable(cfg: TunnelConfig, name: string): TableConfig {
  const table = cfg.tables.find((t) => tableId(t) === name || (t.schema === 'public' && t.name === name));
  if (!table) throw new TunnelError('PGT_USAGE', `${name} is not one of the configured tables (${cfg.tables.map(tableId).join(', ')})`, { errorClass: 'config', hint: 'name a table of tables in pgtunnel.yaml / PGTUNNEL_TABLES' });
  return table;
}

/** Records of the topic the target has not applied yet, per partition. */
async function unapplied(cfg: TunnelConfig, topic: string): Promise<string[]> {
  const ends = (await endOffsets(cfg, [topic])).get(topic) ?? [];
  const stored = await withClient(cfg.targetUrl, 'target', async (target) => {
    const { rows } = await target.query<{ partition: number; next_offset: string }>('SELECT partition, next_offset::text FROM pgtunnel.consumer_offsets WHERE topic = $1', [topic]);
    return new Map(rows.map((r) => [r.partition, BigInt(r.next_offset)]));
  });
  return ends.flatMap((end, partition) => (end > (stored.get(partition) ?? 0n) ? [`partition ${partition}: ${end - (stored.get(partition) ?? 0n)}`] : []));
}

/**
 * Adds partitions to a table's topic only when that keeps every key's order: no producer publishes the
 * table (its lock is taken and held until the partitions exist), no consumer of the group runs, and the
 * target has applied every record, so no key has changes left behind in its old partition.
 */
async function changePartitions(cfg: TunnelConfig, name: string, count: number): Promise<void> {
  const table = findTable(cfg, name);
  const id = tableId(table);
  const current = (await partitionCounts(cfg, [table.topic])).get(table.topic);
  if (current === undefined) throw new TunnelError('PGT_TOPIC_MISSING', `topic ${table.topic} does not exist`, { errorClass: 'config', hint: `set partitions: ${count} for ${id} and run \`pgtunnel install\`: it creates the topic with them` });
  if (count === current) {
    process.stdout.write(`topic ${table.topic} already has ${count} partitions\n`);
    return;
  }
  if (count < current) throw new TunnelError('PGT_PARTITIONS', `topic ${table.topic} has ${current} partitions; Kafka cannot remove partitions`, { errorClass: 'config', hint: `keep partitions: ${current} for ${id}, or move the table to a new topic prefix (topicPrefix) and \`pgtunnel snapshot --restart\`` });
  await withClient(cfg.sourceUrl, 'source', async (source) => {
    if (!(await tryProducerLock(source, id))) {
      throw new TunnelError('PGT_PRODUCER_RUNNING', `a producer of ${id} is running`, { hint: partitionsProcedure(id, count) });
    }
    const members = await groupMembers(cfg, cfg.groupId);
    if (members.length > 0) {
      throw new TunnelError('PGT_CONSUMERS_RUNNING', `consumers of group ${cfg.groupId} are running: ${members.join(', ')}`, { hint: `${partitionsProcedure(id, count)} (a killed consumer stays a member for up to ${staticSessionTimeoutMs / 1000} s)` });
    }
    const behind = await unapplied(cfg, table.topic);
    if (behind.length > 0) {
      throw new TunnelError('PGT_NOT_DRAINED', `the target has not applied every record of ${table.topic} (${behind.join(', ')})`, { hint: partitionsProcedure(id, count) });
    }
    await addPartitions(cfg, table.topic, count);
  });
  process.stdout.write(`topic ${table.topic}: ${current} -> ${count} partitions\nnext: set partitions: ${count} for ${id} (tables: [{ name: ${table.name}, partitions: ${count} }], or PGTUNNEL_PARTITIONS=${count} when every table has it), then start the producers and consumers\n`);
}

export function registerTopic(program: Command): void {
  const topic = program.command('topic').description("the tables' Kafka topics");
  topic
    .command('partitions <table> <count>')
    .description("add partitions to a table's topic, once no producer runs, no consumer runs and the target applied everything")
    .addHelpText('after', '\nExample:\n  pgtunnel topic partitions public.employees 6')
    .action(async (table: string, count: string, _options: unknown, command: Command) => {
      try {
        if (!/^\d+$/.test(count) || Number(count) < 1 || Number(count) > 1000) throw new TunnelError('PGT_USAGE', `partition count ${count} is not a whole number between 1 and 1000`, { errorClass: 'config' });
        await changePartitions(await withTables(config(command.optsWithGlobals<GlobalOptions>())), table, Number(count));
        process.exitCode = exitCodes.ok;
      } catch (err) {
        process.exitCode = failure(err);
      }
    });
}
