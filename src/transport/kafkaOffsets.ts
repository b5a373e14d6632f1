import { Admin, FetchIsolationLevels, ListOffsetTimestamps } from './kafkaLib.js';
import { clientIds, partitionId } from '../names.js';
import { kafkaClientOptions, unreachableBroker, type KafkaAccess } from './kafka.js';

/** What Kafka holds for a group's partitions, read the way Kafka's consumer-group tool reads it. */
export interface KafkaPartitionOffsets {
  /** Every partition's log end offset (high watermark, as `kafka-consumer-groups --describe` shows it). */
  ends: Map<string, bigint[]>;
  /** The group's committed offset per `partitionId`; absent when the group never committed one. */
  committed: Map<string, bigint>;
}

/**
 * Reads log end offsets and a group's committed offsets with one admin client, kept open between reads
 * (the status poller asks every few seconds). Log ends are read uncommitted, as Kafka's tool does.
 */
export class KafkaOffsetReader {
  private admin: Admin | undefined;

  constructor(private readonly kafka: KafkaAccess) {}

  async read(topics: string[], groupId: string): Promise<KafkaPartitionOffsets> {
    this.admin ??= this.open();
    try {
      // a topic not created yet (before install) has no offsets: not an error
      const existing = new Set(await this.admin.listTopics());
      topics = topics.filter((t) => existing.has(t));
      if (topics.length === 0) return { ends: new Map(), committed: new Map() };
      const metadata = await this.admin.metadata({ topics });
      const requests = topics.map((name) => ({
        name,
        partitions: Array.from({ length: metadata.topics.get(name)?.partitionsCount ?? 0 }, (_, partitionIndex) => ({ partitionIndex, timestamp: ListOffsetTimestamps.LATEST })),
      }));
      const listed = await this.admin.listOffsets({ topics: requests.filter((r) => r.partitions.length > 0), isolationLevel: FetchIsolationLevels.READ_UNCOMMITTED });
      const ends = new Map<string, bigint[]>();
      for (const t of listed) {
        const offsets: bigint[] = [];
        for (const p of t.partitions) offsets[p.partitionIndex] = p.offset;
        ends.set(t.name, offsets);
      }
      const committed = await this.committed(topics, groupId);
      return { ends, committed };
    } catch (err) {
      await this.close();
      throw unreachableBroker(this.kafka.kafkaBrokers, err);
    }
  }

  /** The group's committed offsets of the topics' partitions, by `partitionId`. */
  async committed(topics: string[], groupId: string): Promise<Map<string, bigint>> {
    this.admin ??= this.open();
    try {
      const wanted = new Set(topics);
      const committed = new Map<string, bigint>();
      for (const g of await this.admin.listConsumerGroupOffsets({ groups: [groupId] })) {
        for (const t of g.topics) {
          if (!wanted.has(t.name)) continue;
          // -1: no offset committed for that partition
          for (const p of t.partitions) if (p.committedOffset >= 0n) committed.set(partitionId(t.name, p.partitionIndex), p.committedOffset);
        }
      }
      return committed;
    } catch (err) {
      await this.close();
      throw unreachableBroker(this.kafka.kafkaBrokers, err);
    }
  }

  private open(): Admin {
    return new Admin({ clientId: clientIds.offsets, ...kafkaClientOptions(this.kafka), retries: 3, retryDelay: 250, timeout: 10_000, connectTimeout: 5_000 });
  }

  async close(): Promise<void> {
    const admin = this.admin;
    this.admin = undefined;
    await admin?.close().catch(() => {});
  }
}
