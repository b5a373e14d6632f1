import type { TunnelConfig } from '../config/load.js';
import { tableId, partitionId } from '../names.js';
import { storedOffsets } from '../apply/offsets.js';
import { describeError } from '../errors.js';
import { withClient } from '../pg.js';
import { KafkaOffsetReader, type KafkaPartitionOffsets } from '../transport/kafkaOffsets.js';

/** One partition's offsets, as Kafka's consumer-group tool and the target each see them. */
export interface PartitionOffsets {
  table: string;
  topic: string;
  partition: number;
  /** The group's offset committed in Kafka (CURRENT-OFFSET); null when it never committed one. */
  groupOffset: number | null;
  /** The next offset the target applies, stored with the rows (the consumer resumes from it). */
  targetOffset: number | null;
  /** LOG-END-OFFSET. */
  logEndOffset: number;
  /** LAG as Kafka's tool defines it: log end − group offset; null without a group offset. */
  lag: number | null;
}

/** The stable shape of `pgtunnel offsets --json` (documented in the README). */
export interface OffsetsReport {
  group: string;
  partitions: PartitionOffsets[];
  /** Services that could not be asked; the fields they would fill are null. */
  errors: string[];
}

/** Pure: the rows of the report from what Kafka and the target hold. */
export function offsetRows(tables: { table: string; topic: string }[], kafka: KafkaPartitionOffsets, stored: Map<string, bigint> | undefined): PartitionOffsets[] {
  const out: PartitionOffsets[] = [];
  for (const { table, topic } of tables) {
    (kafka.ends.get(topic) ?? []).forEach((end, partition) => {
      const group = kafka.committed.get(partitionId(topic, partition));
      const target = stored ? stored.get(partitionId(topic, partition)) ?? 0n : undefined;
      out.push({
        table,
        topic,
        partition,
        groupOffset: group === undefined ? null : Number(group),
        targetOffset: target === undefined ? null : Number(target),
        logEndOffset: Number(end),
        lag: group === undefined ? null : Number(end - group),
      });
    });
  }
  return out;
}

export async function collectOffsets(config: TunnelConfig, reader = new KafkaOffsetReader(config)): Promise<OffsetsReport> {
  const errors: string[] = [];
  const topics = config.tables.map((t) => ({ table: tableId(t), topic: t.topic }));
  let kafka: KafkaPartitionOffsets = { ends: new Map(), committed: new Map() };
  try {
    kafka = await reader.read(topics.map((t) => t.topic), config.groupId);
  } catch (err) {
    errors.push(describeError(err));
  }
  let stored: Map<string, bigint> | undefined;
  try {
    stored = await withClient(config.targetUrl, 'target', async (c) => {
      // before `pgtunnel install` the target has applied nothing
      const { rows } = await c.query<{ ok: boolean }>("SELECT to_regclass('pgtunnel.consumer_offsets') IS NOT NULL AS ok");
      return rows[0]!.ok ? storedOffsets(c, topics.map((t) => t.topic)) : new Map<string, bigint>();
    });
  } catch (err) {
    errors.push(describeError(err));
  }
  return { group: config.groupId, partitions: offsetRows(topics, kafka, stored), errors };
}

export function formatOffsets(report: OffsetsReport): string {
  const show = (n: number | null) => (n === null ? '-' : String(n));
  const width = Math.max(5, ...report.partitions.map((p) => p.topic.length));
  const lines = [`group ${report.group}`, `${'TOPIC'.padEnd(width)} PARTITION  GROUP-OFFSET  TARGET-OFFSET  LOG-END-OFFSET        LAG`];
  for (const p of report.partitions) {
    lines.push(`${p.topic.padEnd(width)} ${String(p.partition).padStart(9)} ${show(p.groupOffset).padStart(13)} ${show(p.targetOffset).padStart(14)} ${String(p.logEndOffset).padStart(15)} ${show(p.lag).padStart(10)}`);
  }
  for (const e of report.errors) lines.push(`unavailable: ${e.split('\n')[0]}`);
  return lines.join('\n');
}
