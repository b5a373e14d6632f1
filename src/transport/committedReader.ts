import { Consumer, FetchIsolationLevels } from './kafkaLib.js';
import { kafkaClientOptions, unreachableBroker, type KafkaAccess } from './kafka.js';
import { clientIds } from '../names.js';

const transactional = 1 << 4;
const control = 1 << 5;
/** Bytes one fetch may return per partition; doubled while a single batch does not fit. */
const fetchBytes = 4 * 1024 * 1024;

export interface CommittedRecord {
  offset: bigint;
  key: Buffer | null;
  value: Buffer | null;
}

/**
 * Reads a partition as a read_committed consumer sees it, deciding each transaction by its own marker.
 * Not through @platformatic/kafka's read_committed filter: 2.12 keeps an aborted transaction's records
 * when its abort marker lies beyond the fetched bytes, and tracks one aborted range per producer.
 * Used where a duplicate or a phantom would be wrong: the producer's committed position, and tests.
 */
export class CommittedReader {
  private readonly consumer: Consumer<Buffer, Buffer, Buffer, Buffer>;

  constructor(private readonly kafka: KafkaAccess, clientId: string = clientIds.reader) {
    this.consumer = new Consumer({ clientId, groupId: clientId, ...kafkaClientOptions(kafka), retries: 3, retryDelay: 250, timeout: 10_000, connectTimeout: 5_000 });
  }

  /** The high watermark of every partition (records of open transactions included). */
  async ends(topic: string): Promise<bigint[]> {
    try {
      const offsets = await this.consumer.listOffsets({ topics: [topic], isolationLevel: FetchIsolationLevels.READ_UNCOMMITTED });
      return offsets.get(topic) ?? [];
    } catch (err) {
      throw unreachableBroker(this.kafka.kafkaBrokers, err);
    }
  }

  /**
   * The committed records of `[from, until)`, in offset order. Reads on past `until` (up to the high
   * watermark) only while a transaction seen before it still waits for its marker; a transaction still
   * open at the high watermark is not committed.
   */
  async read(topic: string, partition: number, from: bigint, until?: bigint): Promise<CommittedRecord[]> {
    return (await this.scan(topic, partition, from, until)).records;
  }

  /**
   * Whether `[from, until)` holds nothing for a consumer: no committed record and no transaction still open.
   * Kafka answers a commit before its markers are written: until then the records are neither.
   */
  async settled(topic: string, partition: number, from: bigint, until?: bigint): Promise<boolean> {
    const { records, open } = await this.scan(topic, partition, from, until);
    return records.length === 0 && open === 0;
  }

  private async scan(topic: string, partition: number, from: bigint, until?: bigint): Promise<{ records: CommittedRecord[]; open: number }> {
    const end = (await this.ends(topic))[partition] ?? 0n;
    const stop = until === undefined || until > end ? end : until;
    const pending = new Map<bigint, CommittedRecord[]>();
    const out: CommittedRecord[] = [];
    let position = from;
    let bytes = fetchBytes;
    while (position < end && (position < stop || pending.size > 0)) {
      const batches = await this.fetch(topic, partition, position, bytes);
      if (batches.length === 0) {
        bytes *= 2; // one batch larger than the fetch size comes back empty
        if (bytes > 256 * fetchBytes) throw new Error(`no record batch of ${topic}/${partition} at offset ${position} fits in ${bytes / 2} bytes`);
        continue;
      }
      for (const batch of batches) {
        const last = batch.firstOffset + BigInt(batch.lastOffsetDelta);
        if (last < position) continue;
        if (batch.attributes & control) {
          // the control record's key: version int16, type int16 (0 abort, 1 commit)
          const committed = batch.records[0]?.key?.readInt16BE(2) === 1;
          if (committed) out.push(...(pending.get(batch.producerId) ?? []));
          pending.delete(batch.producerId);
        } else {
          const records: CommittedRecord[] = [];
          for (const r of batch.records) {
            const offset = batch.firstOffset + BigInt(r.offsetDelta);
            if (offset >= position && offset < stop) records.push({ offset, key: r.key, value: r.value });
          }
          if (batch.attributes & transactional) pending.set(batch.producerId, [...(pending.get(batch.producerId) ?? []), ...records]);
          else out.push(...records);
        }
        position = last + 1n;
      }
    }
    return { records: out.sort((a, b) => (a.offset < b.offset ? -1 : a.offset > b.offset ? 1 : 0)), open: pending.size };
  }

  private async fetch(topic: string, partition: number, offset: bigint, bytes: number) {
    try {
      const metadata = await this.consumer.metadata({ topics: [topic] });
      const t = metadata.topics.get(topic)!;
      const response = await this.consumer.fetch({
        node: t.partitions[partition]!.leader,
        isolationLevel: FetchIsolationLevels.READ_UNCOMMITTED,
        maxWaitTime: 0,
        maxBytes: bytes,
        topics: [{ topicId: t.id, partitions: [{ partition, currentLeaderEpoch: -1, fetchOffset: offset, lastFetchedEpoch: -1, partitionMaxBytes: bytes }] }],
      });
      return response.responses.flatMap((r) => r.partitions).find((p) => p.partitionIndex === partition)?.records ?? [];
    } catch (err) {
      throw unreachableBroker(this.kafka.kafkaBrokers, err);
    }
  }

  async close(): Promise<void> {
    await this.consumer.close(true).catch(() => {});
  }
}
