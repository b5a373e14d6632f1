import { Admin } from './kafkaLib.js';
import type { TableConfig } from '../config/load.js';
import { TunnelError } from '../errors.js';
import { kafkaClientOptions, unreachableBroker, type KafkaAccess } from './kafka.js';
import { clientIds } from '../names.js';

/**
 * A key's partition is `murmur2(key) % partitions`: with another count most keys move to another partition.
 * A key's changes already in its old partition and its new ones in the new partition would be applied by
 * different consumers in any order, so the count changes only once the topic is drained and nothing
 * publishes: `pgtunnel topic partitions` checks that, then adds the partitions.
 */
export function partitionsProcedure(table: string, count: number): string {
  return `to change it safely: 1. stop every producer of ${table} (\`pgtunnel run\` with --role producer or all); ` +
    '2. let the consumers apply everything (`pgtunnel status` shows lag 0), then stop them; ' +
    `3. \`pgtunnel topic partitions ${table} ${count}\` (it checks 1 and 2, then adds the partitions); 4. start them again`;
}

function admin(kafka: KafkaAccess): Admin {
  return new Admin({ clientId: clientIds.admin, ...kafkaClientOptions(kafka), retries: 3, retryDelay: 250, timeout: 10_000, connectTimeout: 5_000 });
}

/** How many partitions each existing topic has (missing topics are left out). */
export async function partitionCounts(kafka: KafkaAccess, topics: string[]): Promise<Map<string, number>> {
  const client = admin(kafka);
  try {
    const existing = new Set(await client.listTopics());
    const present = topics.filter((t) => existing.has(t));
    if (present.length === 0) return new Map();
    const metadata = await client.metadata({ topics: present });
    return new Map(present.map((t) => [t, metadata.topics.get(t)?.partitionsCount ?? 0]));
  } catch (err) {
    throw unreachableBroker(kafka.kafkaBrokers, err);
  } finally {
    await client.close().catch(() => {});
  }
}

/** Refuses to start when a table's topic has another partition count than the configuration says. */
export async function checkPartitions(kafka: KafkaAccess, tables: TableConfig[]): Promise<void> {
  const counts = await partitionCounts(kafka, tables.map((t) => t.topic));
  const differ = tables.filter((t) => counts.has(t.topic) && counts.get(t.topic) !== t.partitions);
  if (differ.length === 0) return;
  const lines = differ.map((t) => `topic ${t.topic} has ${counts.get(t.topic)} partitions, the configuration says ${t.partitions}`);
  const first = differ[0]!;
  throw new TunnelError('PGT_PARTITIONS', `${lines.join('; ')}: changing a topic's partition count moves keys between partitions`, {
    errorClass: 'config',
    hint: `set partitions to the topic's count to keep it (partitions: ${counts.get(first.topic)}, or tables: [{ name: ${first.name}, partitions: … }]); ${partitionsProcedure(`${first.schema}.${first.name}`, first.partitions)}`,
  });
}

/** Adds partitions to a topic (Kafka can only add). */
export async function addPartitions(kafka: KafkaAccess, topic: string, count: number): Promise<void> {
  const client = admin(kafka);
  try {
    await client.createPartitions({ topics: [{ name: topic, count }] });
  } finally {
    await client.close().catch(() => {});
  }
}

/** Members of the consumer group right now (static members a killed process left count until their session ends). */
export async function groupMembers(kafka: KafkaAccess, groupId: string): Promise<string[]> {
  const client = admin(kafka);
  try {
    const groups = await client.describeGroups({ groups: [groupId] });
    const group = groups.get(groupId);
    return group ? [...group.members.values()].map((m) => `${m.groupInstanceId ?? m.clientId} (${m.clientHost})`) : [];
  } finally {
    await client.close().catch(() => {});
  }
}
