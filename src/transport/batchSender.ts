import { Writer, kGetApi, kGetConnection, kMetadata, kPerformWithRetry, produceV9, produceV10, produceV11, NetworkError, type Producer, type ClusterMetadata, type Connection } from './kafkaLib.js';
import { TunnelError, kafkaProtocolIds } from '../errors.js';
import { RecordBatchEncoder, type RecordBytes } from './recordBatch.js';

/** The records of one partition of one topic, in order. */
export interface PartitionRecords {
  topic: string;
  partition: number;
  records: RecordBytes[];
}

/**
 * A bound on produce sends unacknowledged at once, shared by every sender of the isolate (every table's
 * producer, exactly-once ones and the dead letters' too): each send holds its encoded batches until the
 * broker acknowledges them, so with many tables the bytes in flight stay two sends' worth instead of
 * growing with the tables. First come, first served: a table waits only until any send is acknowledged.
 */
export class SendWindow {
  private held = 0;
  /** The most sends ever unacknowledged at once (what tests read). */
  peak = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(readonly size: number) {}

  async acquire(): Promise<void> {
    if (this.held < this.size) this.held++;
    // a release hands its place straight to the first waiter: `held` stays as it was
    else await new Promise<void>((resolve) => this.waiting.push(resolve));
    this.peak = Math.max(this.peak, this.held);
  }

  release(): void {
    const next = this.waiting.shift();
    if (next) next();
    else this.held--;
  }
}

/** At most two produce sends unacknowledged in this isolate (issue 21 item 5): one on the wire while the next is built. */
export const sendWindow = new SendWindow(2);

/** Sequences wrap from Int32 max to 0, as the broker expects. */
const sequenceWrap = 2 ** 31;
const lostSession = 'lost';
const earlierSendFailed = () =>
  new TunnelError('PGT_KAFKA_SEND_ORDER', 'an earlier send to this topic failed while this one waited: not sent, so it cannot land before that one is re-sent', {
    errorClass: 'retryable',
    hint: 'the producer resumes from its checkpoint and sends both again, in order',
  });
/** Refusals that mean the broker no longer knows this producer session's sequences. */
const stateLost = new Set(['UNKNOWN_PRODUCER_ID', 'OUT_OF_ORDER_SEQUENCE_NUMBER']);

type ProduceResponse = ReturnType<typeof produceV11.parseResponse>;
/** Flexible Produce versions (brokers since 2.8): the request layout we write is the same for these. */
const responseParsers: Record<number, (c: number, k: number, v: number, r: never) => ProduceResponse> = {
  9: produceV9.parseResponse as never,
  10: produceV10.parseResponse as never,
  11: produceV11.parseResponse as never,
};

/* eslint-disable @typescript-eslint/no-explicit-any -- the client's own extension points, typed loosely in its .d.ts */
type Client = Producer<any, any, any, any>;
/** The client's open transaction (its class is not exported). */
export type OpenTransaction = NonNullable<Client['transaction']>;

const call = <T>(fn: (cb: (error: Error | null | undefined, result?: T) => void) => void): Promise<T> =>
  new Promise((resolve, reject) => fn((error, result) => (error ? reject(error) : resolve(result as T))));

/**
 * Produces pre-built v2 record batches over @platformatic/kafka's own connections, metadata and retries:
 * the client stays the owner of producer ids, epochs and transactions (InitProducerId, AddPartitionsToTxn,
 * EndTxn), and this sender owns the sequence numbers of the partitions it writes. No record of these
 * partitions may go through the client's `send`, whose sequences would then collide with ours.
 */
export class BatchSender {
  private readonly encoder = new RecordBatchEncoder();
  private readonly sequences = new Map<string, number>();
  private identity = '';
  private turn: Promise<void> = Promise.resolve();
  /** Sends that took a turn so far: a failed send may retry only while no later one took a turn. */
  private turns = 0;
  /** Sends that failed so far, and the newest failure per topic: see `send`. */
  private failures = 0;
  private readonly topicFailures = new Map<string, number>();
  private opening: Promise<void> | undefined;

  constructor(private readonly producer: Client, private readonly options: { compression: 'lz4' | 'none'; timeoutMs: number }) {}

  /**
   * Opens what the first send would wait for (issue 21: the first change after start paid ~0.3 s of InitProducerId
   * and a new connection): this session's producer id, the topics' metadata, a connection to each leader.
   */
  async warm(topics: string[]): Promise<void> {
    if (this.producer.producerId === undefined) await this.openSession();
    const metadata = await call<ClusterMetadata>((cb) => this.producer[kMetadata]({ topics }, cb as never));
    const leaders = new Set(topics.flatMap((t) => (metadata.topics.get(t)?.partitions ?? []).map((p) => p?.leader)));
    await Promise.all([...leaders].map((id) => metadata.brokers.get(id!)).filter((b) => b !== undefined).map((broker) => call<Connection>((cb) => this.producer[kGetConnection](broker, cb as never))));
  }

  /** A new idempotent producer session; sends that ask at once share one InitProducerId. */
  private openSession(): Promise<void> {
    this.opening ??= this.producer.initIdempotentProducer({}).then(() => undefined).finally(() => (this.opening = undefined));
    return this.opening;
  }

  /** Whether the broker speaks a Produce version whose request we write; older ones keep the client's path. */
  async supported(): Promise<boolean> {
    const api = await call<{ version: number }>((cb) => this.producer[kGetApi]('Produce', cb as never));
    return api.version in responseParsers;
  }

  /**
   * One Produce request per leader, acks=all; resolves when all are acknowledged. Sends may overlap: each
   * takes its sequences and reaches the connections' queues in call order (`turn`), so the broker sees a
   * partition's batches in order; the acknowledgements are awaited outside the turn. Sequences advance
   * before the send: a failed request leaves a gap the broker refuses (OUT_OF_ORDER_SEQUENCE), so after a
   * failure the next send starts a new producer session (idempotent) or the caller aborts (transactional).
   * Each send holds a place in `sendWindow` from before its batches are encoded until they are acknowledged.
   */
  async send(parts: PartitionRecords[], transaction?: OpenTransaction, queued?: () => void): Promise<void> {
    const turn = this.turns;
    const seen = this.failures;
    try {
      await this.sendOnce(parts, transaction, seen, queued);
    } catch (err) {
      // as the client does: the broker lost this session's state (a restart), so a new session sends the
      // same records once more; a transaction cannot change session and is aborted by its caller instead.
      // Not when a later send took its turn since (the retry would land after it), nor when another send failed
      // meanwhile (an earlier one's re-send must come first): the caller re-sends from its checkpoint instead.
      if (transaction || this.turns !== turn + 1 || this.failures !== seen + 1 || !kafkaProtocolIds(err).some((id) => stateLost.has(id))) throw err;
      await this.sendOnce(parts, undefined, this.failures);
    }
  }

  /**
   * Whether a send to one of these topics failed after `seen`. With two pages in flight, a page that waited
   * while the page before it failed must not be sent: it would land before that page's re-send.
   */
  private failedSince(parts: PartitionRecords[], seen: number): boolean {
    return parts.some((p) => (this.topicFailures.get(p.topic) ?? 0) > seen);
  }

  /** Recorded before the failed send gives up its window place, so the send that takes the place sees it. */
  private failed(parts: PartitionRecords[], transaction: OpenTransaction | undefined): void {
    this.failures++;
    for (const p of parts) this.topicFailures.set(p.topic, this.failures);
    if (!transaction) this.identity = lostSession;
  }

  /**
   * `queued`: called once the batches are on their connections' queues (or the send failed before): a send
   * started after it reaches the broker after these batches.
   */
  private async sendOnce(parts: PartitionRecords[], transaction: OpenTransaction | undefined, seen: number, queued?: () => void): Promise<void> {
    if (parts.length === 0) return queued?.();
    this.turns++;
    const previous = this.turn;
    let release!: () => void;
    this.turn = new Promise((resolve) => (release = resolve));
    let acks: Promise<unknown>[];
    let placed = false;
    try {
      await previous;
      await sendWindow.acquire();
      placed = true;
      if (this.failedSince(parts, seen)) throw earlierSendFailed();
      const { metadata, topics, batches } = await this.prepare(parts, transaction);
      if (this.failedSince(parts, seen)) throw earlierSendFailed();
      const onConnections: Promise<void>[] = [];
      acks = [...byLeader(metadata, batches).values()].map((group) => {
        let onQueued!: () => void;
        onConnections.push(new Promise((resolve) => (onQueued = resolve)));
        const ack = this.produce(topics, group, transaction?.id, onQueued);
        ack.catch(onQueued);
        return ack;
      });
      await Promise.all(onConnections);
    } catch (err) {
      this.failed(parts, transaction);
      if (placed) sendWindow.release();
      throw err;
    } finally {
      release();
      queued?.();
    }
    try {
      await Promise.all(acks);
    } catch (err) {
      this.failed(parts, transaction);
      throw err;
    } finally {
      sendWindow.release();
    }
  }

  /** The producer session, the partitions added to the transaction, and the batches with their sequences. */
  private async prepare(parts: PartitionRecords[], transaction: OpenTransaction | undefined) {
    // a new session after a failed send: its sequences left a gap the broker would refuse
    if (!transaction && (this.producer.producerId === undefined || this.identity === lostSession)) await this.openSession();
    const producerId = this.producer.producerId!;
    const producerEpoch = this.producer.producerEpoch!;
    const identity = `${producerId}:${producerEpoch}`;
    if (identity !== this.identity) {
      this.sequences.clear();
      this.identity = identity;
    }
    const topics = [...new Set(parts.map((p) => p.topic))];
    const metadata = await call<ClusterMetadata>((cb) => this.producer[kMetadata]({ topics }, cb as never));
    if (transaction) await transaction.addPartitions(metadata, parts.map((p) => ({ topic: p.topic, partition: p.partition }) as never));
    const timestamp = Date.now();
    const batches = parts.map((p) => {
      const key = `${p.topic}:${p.partition}`;
      const baseSequence = this.sequences.get(key) ?? 0;
      this.sequences.set(key, (baseSequence + p.records.length) % sequenceWrap);
      const batch = this.encoder.encode(p.records, { producerId, producerEpoch, baseSequence, transactional: !!transaction, compression: this.options.compression, timestamp });
      return { topic: p.topic, partition: p.partition, batch };
    });
    return { metadata, topics, batches };
  }

  private produce(topics: string[], group: Placed[], transactionalId: string | undefined, onQueued: () => void): Promise<ProduceResponse> {
    let refresh = false;
    return call<ProduceResponse>((done) =>
      this.producer[kPerformWithRetry]<ProduceResponse>('produce', (retry) => {
        this.producer[kMetadata]({ topics, forceUpdate: refresh }, (error: Error | null, metadata?: ClusterMetadata) => {
          if (error) return retry(error);
          // a moved leader is found again on retry; the batches and their sequences stay the same
          const leader = metadata!.topics.get(group[0]!.topic)?.partitions[group[0]!.partition]?.leader;
          const broker = leader === undefined ? undefined : metadata!.brokers.get(leader);
          if (!broker) {
            refresh = true;
            return retry(new NetworkError(`no leader known for ${group[0]!.topic}-${group[0]!.partition}`, { canRetry: true } as never));
          }
          this.producer[kGetConnection](broker, (error: Error | null, connection?: Connection) => {
            if (error) {
              refresh = true;
              return retry(error);
            }
            this.producer[kGetApi]('Produce', ((error: Error | null, api: { version: number }) => {
              if (error) return retry(error);
              connection!.send(0, api.version, () => produceRequest(group, transactionalId, this.options.timeoutMs), responseParsers[api.version] as never, true, true, (error: Error | null, response?: ProduceResponse) => {
                refresh = !!error;
                retry(error, response);
              });
              onQueued();
            }) as never);
          });
        });
      }, done as never),
    );
  }
}

type Placed = { topic: string; partition: number; batch: Buffer };

/** Groups batches by the broker leading their partition: one request per broker. */
function byLeader(metadata: ClusterMetadata, batches: Placed[]): Map<number, Placed[]> {
  const out = new Map<number, Placed[]>();
  for (const b of batches) {
    const leader = metadata!.topics.get(b.topic)?.partitions[b.partition]?.leader ?? -1;
    let group = out.get(leader);
    if (!group) out.set(leader, (group = []));
    group.push(b);
  }
  return out;
}

/** Produce v9–v11 request: the batches are appended as they are, never re-encoded. */
export function produceRequest(group: Placed[], transactionalId: string | undefined, timeoutMs: number): Writer {
  const topics = new Map<string, Placed[]>();
  for (const b of group) {
    let list = topics.get(b.topic);
    if (!list) topics.set(b.topic, (list = []));
    list.push(b);
  }
  return Writer.create()
    .appendString(transactionalId ?? null)
    .appendInt16(-1)
    .appendInt32(timeoutMs)
    .appendArray([...topics], (w, [topic, parts]) => {
      w.appendString(topic).appendArray(parts, (w, p) => {
        w.appendInt32(p.partition).appendUnsignedVarInt(p.batch.length + 1).append(p.batch);
      });
    })
    .appendTaggedFields();
}
