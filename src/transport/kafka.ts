import { Admin, Consumer, Producer, connectionsConnectsChannel, stringSerializer, type Connection } from '@platformatic/kafka';
import { kafkaClientSecurity, type KafkaSecurity } from '../config/kafkaSecurity.js';
import { TunnelError, classify } from '../errors.js';
import type { WireMessage } from './envelope.js';
import { partitionOf } from './partitions.js';

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
export async function ensureTopics(kafka: KafkaAccess, topics: string[], partitions: number): Promise<void> {
  const admin = new Admin({ clientId: 'pgtunnel-admin', ...kafkaClientOptions(kafka), ...clientDefaults });
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
      await admin.createTopics({ topics: missing, partitions, replicas: -1, configs: [{ name: 'max.message.bytes', value: String(maxMessageBytes) }] });
    } catch (err) {
      // Another tunnel may have created them in between; only a topic still missing is an error.
      const now = await admin.listTopics();
      if (missing.some((t) => !now.includes(t))) throw classify(err);
    }
  } finally {
    await admin.close().catch(() => {});
  }
}

/** Which of the topics exist; reads metadata only, so it never creates one. */
export async function existingTopics(kafka: KafkaAccess, topics: string[]): Promise<string[]> {
  const admin = new Admin({ clientId: 'pgtunnel-admin', ...kafkaClientOptions(kafka), ...clientDefaults });
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
  const admin = new Admin({ clientId: 'pgtunnel-admin', ...kafkaClientOptions(kafka), ...clientDefaults });
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

  /** The end (next to be written) offset of every partition of the topics. */
  async read(topics: string[]): Promise<Map<string, bigint[]>> {
    this.consumer ??= new Consumer({ clientId: 'pgtunnel-status', groupId: 'pgtunnel-status', ...kafkaClientOptions(this.kafka), ...clientDefaults });
    try {
      return await this.consumer.listOffsets({ topics });
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
const bytes = (v: Bytes | undefined): Buffer | undefined => (v === undefined ? undefined : typeof v === 'string' ? Buffer.from(v) : v);
/** Keys and values as JSON text or as encoded bytes (the wire format); headers are text. */
const bytesSerializers = { key: bytes, value: bytes, headerKey: stringSerializer, headerValue: stringSerializer };

/** Idempotent producer with acks=all: a publish resolves only when every message is durably in Kafka. */
export class EnvelopeProducer {
  private readonly producer: Producer<Bytes, Bytes, string, string>;

  constructor(private readonly kafka: KafkaAccess, clientId: string) {
    this.producer = new Producer({
      clientId,
      ...kafkaClientOptions(kafka),
      idempotent: true,
      acks: -1,
      serializers: bytesSerializers,
      ...clientDefaults,
    });
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

  /** Every message gets its partition here: by key as the Java client would, or a copy per partition. */
  private async placed(messages: WireMessage[]) {
    const out: { topic: string; key?: Bytes; value?: Bytes; partition: number; headers?: Map<string, string> }[] = [];
    for (const m of messages) {
      const count = await this.partitions(m.topic);
      const base = { topic: m.topic, key: m.keyBytes ?? m.key, value: m.value, headers: m.headers };
      if (m.partition === 'all') for (let p = 0; p < count; p++) out.push({ ...base, partition: p });
      else out.push({ ...base, partition: m.partition ?? (m.key === undefined ? 0 : partitionOf(m.key, count)) });
    }
    return out;
  }

  async publish(messages: WireMessage[], chunk = 2000): Promise<void> {
    try {
      const placed = await this.placed(messages);
      for (let i = 0; i < placed.length; i += chunk) {
        await this.producer.send({ messages: placed.slice(i, i + chunk) });
      }
    } catch (err) {
      const e = classify(err);
      if (e.retryable) throw unreachableBroker(this.kafka.kafkaBrokers, err);
      throw e;
    }
  }

  async close(): Promise<void> {
    await this.producer.close().catch(() => {});
  }
}
