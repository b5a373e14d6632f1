import { Admin, Consumer, FetchIsolationLevels, Producer, connectionsConnectsChannel, stringSerializer, type Connection } from './kafkaLib.js';
import { kafkaClientSecurity, type KafkaSecurity } from '../config/kafkaSecurity.js';
import { TunnelError, classify, kafkaProtocolIds } from '../errors.js';
import type { WireMessage } from '../contracts/envelope.js';
import { BatchSender, type OpenTransaction, type PartitionRecords } from './batchSender.js';
import { placeRequests, sendInWindow } from './recordPages.js';
import { clientIds } from '../names.js';
import { sleep } from '../retry.js';

/** The largest record pgtunnel writes (topics it creates accept it); larger rows become dead letters. */
export const maxMessageBytes = 16 * 1024 * 1024;

/** Broker calls fail fast and are retried by our loops, which know what they are waiting for. */
const clientDefaults = { retries: 3, retryDelay: 250, timeout: 10_000, connectTimeout: 5_000 };

/**
 * A connection that fails during TLS or SASL (a broker closing it for a missing client certificate)
 * can emit 'error' twice, and @platformatic/kafka 1.35 listens once: the second would crash the
 * process. The failure itself still reaches the caller through the client's callback.
 */
const guarded = new WeakSet<Connection>();
connectionsConnectsChannel.start.subscribe((context) => {
  const connection = (context as { connection?: Connection }).connection;
  if (connection && !guarded.has(connection)) {
    guarded.add(connection);
    connection.on('error', () => {});
  }
});

/** Where Kafka is and how to reach it securely: a TunnelConfig fits. */
export interface KafkaAccess {
  kafkaBrokers: string[];
  kafkaSecurity?: KafkaSecurity;
  /** The producer's record-batch compression (default lz4). */
  kafkaCompression?: 'lz4' | 'none';
}

/** The options every client pgtunnel creates shares: brokers, SASL and TLS. */
export function kafkaClientOptions(kafka: KafkaAccess) {
  return { bootstrapBrokers: kafka.kafkaBrokers, ...kafkaClientSecurity(kafka.kafkaSecurity) };
}

export function unreachableBroker(brokers: string[], err: unknown): TunnelError {
  const e = classify(err);
  // A refused login or certificate is not an outage: retrying cannot help, the configuration can.
  if (e.errorClass === 'config') return e;
  return new TunnelError('PGT_KAFKA_UNREACHABLE', `cannot reach Kafka at ${brokers.join(',')}: ${e.message}`, {
    errorClass: 'unreachable',
    hint: 'start the broker (pgtunnel stack up for the embedded one), or fix PGTUNNEL_KAFKA_BROKERS; a broker that closes every connection at once may want TLS or SASL (kafkaTls, kafkaSasl)',
    cause: err,
  });
}

/** Creates the table topics and their DLQ topics when missing; existing topics are left as they are. */
export async function ensureTopics(kafka: KafkaAccess, topics: string[], partitions: number, configs: { name: string; value: string }[] = []): Promise<void> {
  const admin = new Admin({ clientId: clientIds.admin, ...kafkaClientOptions(kafka), ...clientDefaults });
  try {
    let existing: string[];
    try {
      existing = await admin.listTopics();
    } catch (err) {
      throw unreachableBroker(kafka.kafkaBrokers, err);
    }
    const missing = topics.filter((t) => !existing.includes(t));
    if (missing.length === 0) return;
    try {
      // Rows of TOAST-sized values (MBs) must fit: the broker's default record limit is 1 MiB.
      await admin.createTopics({ topics: missing, partitions, replicas: -1, configs: [{ name: 'max.message.bytes', value: String(maxMessageBytes) }, ...configs] });
    } catch (err) {
      // Another tunnel may be creating them at the same moment (processes started together): a topic that
      // already exists is fine, even before the listing shows it; only a topic still missing is an error.
      const ids = kafkaProtocolIds(err);
      if (ids.length > 0 && ids.every((id) => id === 'TOPIC_ALREADY_EXISTS')) return;
      const now = await admin.listTopics();
      if (missing.some((t) => !now.includes(t))) throw classify(err);
    }
    await untilKnown(admin, missing);
  } finally {
    await admin.close().catch(() => {});
  }
}

/**
 * A created topic reaches the broker's metadata a moment later (seconds on a loaded machine); a producer
 * asking before then gets "Unknown topic", which is not retried. So creation ends when metadata has it.
 */
async function untilKnown(admin: Admin, topics: string[], timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const metadata = await admin.metadata({ topics, forceUpdate: true });
      if (topics.every((t) => (metadata.topics.get(t)?.partitionsCount ?? 0) > 0)) return;
    } catch (err) {
      if (Date.now() > deadline) throw classify(err);
    }
    if (Date.now() > deadline) throw new TunnelError('PGT_TOPIC_MISSING', `the topics ${topics.join(', ')} were created but the broker's metadata does not show them after ${timeoutMs / 1000} s`, { errorClass: 'retryable', hint: 'check the broker\'s log; the start is retried' });
    await sleep(100);
  }
}

/** Which of the topics exist; reads metadata only, so it never creates one. */
export async function existingTopics(kafka: KafkaAccess, topics: string[]): Promise<string[]> {
  const admin = new Admin({ clientId: clientIds.admin, ...kafkaClientOptions(kafka), ...clientDefaults });
  try {
    const existing = new Set(await admin.listTopics());
    return topics.filter((t) => existing.has(t));
  } catch (err) {
    throw unreachableBroker(kafka.kafkaBrokers, err);
  } finally {
    await admin.close().catch(() => {});
  }
}

export async function deleteTopics(kafka: KafkaAccess, topics: string[]): Promise<void> {
  const admin = new Admin({ clientId: clientIds.admin, ...kafkaClientOptions(kafka), ...clientDefaults });
  try {
    const existing = await admin.listTopics();
    const present = topics.filter((t) => existing.includes(t));
    if (present.length > 0) await admin.deleteTopics({ topics: present });
  } finally {
    await admin.close().catch(() => {});
  }
}

/** Closes a consumer even while its streams are open; errors at close change nothing for us. */
export function closeConsumer(consumer: Consumer<any, any, any, any>): Promise<void> {
  return new Promise((resolve) => consumer.close(true, () => resolve()));
}

/** Reads end offsets with one client kept open between reads (the status poller asks every few seconds). */
export class EndOffsetReader {
  private consumer: Consumer<any, any, any, any> | undefined;

  constructor(private readonly kafka: KafkaAccess) {}

  /** The end (next to be written) offset of every partition of the topics; `uncommitted`: the high watermark, past open transactions. */
  async read(topics: string[], uncommitted = false): Promise<Map<string, bigint[]>> {
    this.consumer ??= new Consumer({ clientId: clientIds.status, groupId: clientIds.status, ...kafkaClientOptions(this.kafka), ...clientDefaults });
    try {
      return await this.consumer.listOffsets({ topics, ...(uncommitted ? { isolationLevel: FetchIsolationLevels.READ_UNCOMMITTED } : {}) });
    } catch (err) {
      await this.close();
      throw unreachableBroker(this.kafka.kafkaBrokers, err);
    }
  }

  async close(): Promise<void> {
    const consumer = this.consumer;
    this.consumer = undefined;
    if (consumer) await closeConsumer(consumer);
  }
}

/** The end offset of every partition of the topics, with a client opened for this one read. */
export async function endOffsets(kafka: KafkaAccess, topics: string[]): Promise<Map<string, bigint[]>> {
  const reader = new EndOffsetReader(kafka);
  try {
    return await reader.read(topics);
  } finally {
    await reader.close();
  }
}

type Bytes = string | Buffer;

/**
 * Produce requests of about this many bytes: fewer round trips than one per 2000 records, and each
 * partition's record batch stays far below the topics' max.message.bytes.
 */
const requestBytes = 1024 * 1024;
/**
 * Record batches are lz4-compressed by default (WebAssembly in @platformatic/kafka, no native add-on; every
 * Kafka client reads it): JSON envelopes shrink several times, so the client copies, the broker writes and the
 * consumers fetch far fewer bytes. Producer alone, 1M-row snapshot: 1.7x faster than uncompressed; zstd 1.5x.
 */
const defaultCompression = 'lz4' as const;
const bytes = (v: Bytes | undefined): Buffer | undefined => (v === undefined ? undefined : typeof v === 'string' ? Buffer.from(v) : v);
/** Keys and values as JSON text or as encoded bytes (the wire format); headers are text. */
const bytesSerializers = { key: bytes, value: bytes, headerKey: stringSerializer, headerValue: stringSerializer };

/** Kafka errors that end a transactional producer's session: another instance took its transactionalId over, or the coordinator aborted. */
const fencedIds = new Set(['PRODUCER_FENCED', 'INVALID_PRODUCER_EPOCH', 'INVALID_TXN_STATE', 'TRANSACTIONAL_ID_NOT_FOUND', 'INVALID_PRODUCER_ID_MAPPING', 'TRANSACTION_ABORTABLE']);

/** The transaction coordinator still starting or moving: wait and begin again. */
const coordinatorIds = new Set(['COORDINATOR_NOT_AVAILABLE', 'NOT_COORDINATOR', 'COORDINATOR_LOAD_IN_PROGRESS', 'CONCURRENT_TRANSACTIONS']);

/**
 * InitProducerId as a new session (-1/-1): @platformatic/kafka sends 0/0 by default, which the broker
 * reads as "bump producer 0", refused once the transactionalId belongs to another producer id.
 */
const newSession = { producerId: -1n, producerEpoch: -1 };
/** The broker aborts a transaction open longer than this (a snapshot chunk is one transaction). */
const transactionTimeout = 30_000;

/** The messages of one Kafka transaction: invisible to read_committed consumers until `commit`. */
export interface EnvelopeTransaction {
  publish(messages: WireMessage[]): Promise<void>;
  commit(): Promise<void>;
  abort(): Promise<void>;
}

/**
 * Idempotent producer with acks=all: a publish resolves only when every message is durably in Kafka.
 * With a `transactionalId` it publishes in transactions (`begin`); a new producer with the same id fences
 * the old one, so a zombie leader cannot commit after its successor started.
 */
export class EnvelopeProducer {
  private readonly producer: Producer<Bytes, Bytes, string, string>;
  private readonly sender: BatchSender;

  constructor(private readonly kafka: KafkaAccess, clientId: string, options: { transactionalId?: string } = {}) {
    const compression = kafka.kafkaCompression ?? defaultCompression;
    this.producer = new Producer({
      clientId,
      ...kafkaClientOptions(kafka),
      idempotent: true,
      acks: -1,
      serializers: bytesSerializers,
      compression,
      ...clientDefaults,
      ...(options.transactionalId ? { transactionalId: options.transactionalId, timeout: transactionTimeout } : {}),
    });
    this.sender = new BatchSender(this.producer, { compression, timeoutMs: options.transactionalId ? transactionTimeout : clientDefaults.timeout });
  }

  /** Starts a transaction; the first one of this producer fences older producers of its transactionalId. */
  async begin(): Promise<EnvelopeTransaction> {
    let tx: Awaited<ReturnType<typeof this.producer.beginTransaction>>;
    try {
      tx = await this.producer.beginTransaction(newSession);
    } catch (err) {
      throw this.failure(err);
    }
    return {
      publish: async (messages) => {
        try {
          await this.publishRecords(await this.requests(messages), tx);
        } catch (err) {
          throw this.failure(err);
        }
      },
      commit: async () => {
        try {
          await tx.commit();
        } catch (err) {
          throw this.failure(err);
        }
      },
      // an abort that fails leaves the broker to abort at the transaction timeout, or the next begin's fencing
      abort: async () => {
        if (tx.completed) return;
        await tx.abort().catch(() => tx.cancel().catch(() => {}));
      },
    };
  }

  /** Fences older producers of this transactionalId now (aborting their open transaction), before any read of what they committed. */
  async fence(): Promise<void> {
    try {
      await (await this.producer.beginTransaction(newSession)).cancel();
    } catch (err) {
      throw this.failure(err);
    }
  }

  private failure(err: unknown): TunnelError {
    const ids = kafkaProtocolIds(err);
    if (ids.some((id) => coordinatorIds.has(id))) {
      return new TunnelError('PGT_KAFKA_COORDINATOR', `the Kafka transaction coordinator is not ready (${[...new Set(ids)].join(', ')})`, {
        errorClass: 'retryable',
        hint: 'a broker creates __transaction_state on its first transaction and then answers; if this lasts, check that transaction.state.log.replication.factor and min.isr fit the number of brokers',
        cause: err,
      });
    }
    if (ids.some((id) => fencedIds.has(id))) {
      return new TunnelError('PGT_KAFKA_FENCED', `the Kafka transaction failed: ${classify(err).message}`, {
        errorClass: 'retryable',
        hint: 'another producer instance took this table over (its transactionalId fenced this one), or the broker aborted a transaction open too long; the producer starts over from its checkpoint',
        cause: err,
      });
    }
    return this.sendFailure(err);
  }

  private readonly partitionCounts = new Map<string, number>();

  /** How many partitions a topic has, asked once from the broker. */
  async partitions(topic: string): Promise<number> {
    let count = this.partitionCounts.get(topic);
    if (count === undefined) {
      const metadata = await this.producer.metadata({ topics: [topic] });
      count = metadata.topics.get(topic)?.partitionsCount;
      if (!count) throw new TunnelError('PGT_TOPIC_MISSING', `topic ${topic} does not exist`, { hint: 'run `pgtunnel install` to create it' });
      this.partitionCounts.set(topic, count);
    }
    return count;
  }

  /** Every message placed in its partition, in produce requests of about `requestBytes` each. */
  private async requests(messages: WireMessage[]): Promise<PartitionRecords[][]> {
    const counts = new Map<string, number>();
    for (const m of messages) if (!counts.has(m.topic)) counts.set(m.topic, await this.partitions(m.topic));
    return placeRequests(messages, counts, requestBytes);
  }

  private ownBatches: Promise<boolean> | undefined;

  /**
   * Produces pages of records already placed in partitions, as record batches we encode ourselves (no
   * object or buffer per record), at most two requests unacknowledged. A broker older than Produce v9
   * (Kafka 2.8) gets the client's own path; the choice is made once, so sequences never mix.
   */
  async publishRecords(requests: PartitionRecords[][], transaction?: OpenTransaction, queued?: () => void): Promise<void> {
    this.ownBatches ??= this.sender.supported();
    if (await this.ownBatches) {
      if (requests.length === 0) queued?.();
      let n = 0;
      return sendInWindow(requests, (parts) => this.sender.send(parts, transaction, ++n === requests.length ? queued : undefined));
    }
    try {
      for (const parts of requests) {
        const messages = parts.flatMap((p) => p.records.map((r) => ({ topic: p.topic, partition: p.partition, key: r.key, value: r.value, headers: r.headers })));
        await (transaction ? transaction.send({ messages }) : this.producer.send({ messages }));
      }
    } finally {
      queued?.();
    }
  }

  /**
   * `queued` (optional): called once every record is queued for the broker behind all earlier sends, so a
   * publish started after it lands after them in each partition, even before this one is acknowledged.
   */
  async publish(messages: WireMessage[], queued?: () => void): Promise<void> {
    try {
      await this.publishRecords(await this.requests(messages), undefined, queued);
    } catch (err) {
      throw this.sendFailure(err);
    }
  }

  /**
   * Readies the produce path to `topic` before the first change needs it: its partitions, the Produce
   * version, the idempotent session and a connection to each leader (the first publish after start paid
   * them all, ~0.4 s, in the first change's latency).
   */
  async warm(topic: string): Promise<void> {
    try {
      await this.partitions(topic);
      this.ownBatches ??= this.sender.supported();
      if (await this.ownBatches) await this.sender.warm([topic]);
    } catch (err) {
      throw this.sendFailure(err);
    }
  }

  private sendFailure(err: unknown): TunnelError {
    const e = classify(err);
    return e.retryable && e.code !== 'PGT_KAFKA_SEND_ORDER' ? unreachableBroker(this.kafka.kafkaBrokers, err) : e;
  }

  async close(): Promise<void> {
    await this.producer.close().catch(() => {});
  }
}
