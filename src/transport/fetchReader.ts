import { TunnelError } from '../errors.js';
import { wakeOrAbort } from '../retry.js';
import { partitionId } from '../names.js';
import { unreachableBroker } from './kafka.js';
import { ConnectionPool, Consumer, ListOffsetTimestamps, ProtocolError, Writer, kGetApi, kGetConnection, kOptions, type ClusterMetadata, type Connection } from './kafkaLib.js';
import { RecordSpans, fetchAnswers, walkPartition } from './recordWalk.js';
import type { FetchedBytes } from './setBytes.js';

/** The long-poll while records flow, and the longest it grows to while none do. */
export const activeWaitMs = 500;
export const idleWaitMs = 4000;

/** Bytes one fetch may return (a larger first batch still comes whole): a catch-up's memory stays near one set. */
export const maxFetchBytes = 2 * 1024 * 1024;

const fetchApiKey = 1;
const offsetOutOfRange = 1;
/** Partition errors that mean the leader moved or is moving: metadata again, then fetch again. */
const leaderErrors = new Set([3, 5, 6, 56, 74, 75, 78, 100]); // UNKNOWN_TOPIC_OR_PARTITION, LEADER_NOT_AVAILABLE, NOT_LEADER_OR_FOLLOWER, KAFKA_STORAGE_ERROR, FENCED/UNKNOWN_LEADER_EPOCH, OFFSET_NOT_AVAILABLE, UNKNOWN_TOPIC_ID
const leaderRetryMs = 250;

/** Where an assigned partition is read from next. */
interface Position {
  topic: string;
  partition: number;
  offset: number;
}

/** A Fetch in flight to one node. */
interface Poll {
  pool: ConnectionPool;
  waitMs: number;
  /** The offset each partition was asked from: an answer for a position that moved since is not walked. */
  asked: Map<string, number>;
}

/** A set of records taken from the reader, in the set layout of setBytes.ts. */
export interface FetchedSet {
  records: FetchedBytes[];
  /** The buffer the records are views of. */
  bytes: Buffer;
  arrivedAt: number;
}

type AnyConsumer = Consumer<any, any, any, any>;

/** Where a Fetch asks one topic's partitions from. */
export interface FetchTopic {
  topicId: string;
  partitions: { partition: number; offset: number }[];
}

/** A Fetch response's bytes (a whole response, or a view of the connection's chunk) and where its body starts. */
export interface FetchResponseBytes {
  buffer: Buffer;
  position: number;
}

const call = <T>(fn: (cb: (error: Error | null | undefined, result?: T) => void) => void): Promise<T> =>
  new Promise((resolve, reject) => fn((error, result) => (error ? reject(error) : resolve(result as T))));

/**
 * One read_committed Fetch (v15–v17: flexible, topic ids, sessionless) on a connection of `pool`, at most `maxBytes`
 * per partition and in all; the answer's bytes, not parsed (the client's own parser makes an object per record).
 */
export async function fetchResponse(consumer: AnyConsumer, pool: ConnectionPool, broker: { host: string; port: number }, waitMs: number, maxBytes: number, topics: FetchTopic[]): Promise<FetchResponseBytes> {
  const connection = await call<Connection>((cb) => pool.get(broker, cb as never));
  const api = await call<{ version: number }>((cb) => consumer[kGetApi]('Fetch', cb as never));
  if (api.version < 15) {
    throw new TunnelError('PGT_KAFKA_TOO_OLD', `the broker speaks Fetch v${api.version}; the consumer reads v15 and later (Kafka 3.5+)`, { errorClass: 'config', hint: 'upgrade the Kafka cluster to 3.5 or later' });
  }
  const request = () => Writer.create()
    // max wait, min bytes, max bytes, isolation level (read_committed), session id, session epoch (none)
    .appendInt32(waitMs).appendInt32(1).appendInt32(maxBytes).appendInt8(1).appendInt32(0).appendInt32(-1)
    .appendArray(topics, (w, t) => w.appendUUID(t.topicId).appendArray(t.partitions, (w, p) => {
      // partition, current leader epoch, fetch offset, last fetched epoch, log start offset, partition max bytes
      w.appendInt32(p.partition).appendInt32(-1).appendInt64(BigInt(p.offset)).appendInt32(-1).appendInt64(-1n).appendInt32(maxBytes);
    }))
    .appendArray([], () => {}) // forgotten topics
    .appendString('') // rack
    .appendTaggedFields();
  // the parser runs on the connection's buffer: only the bytes are kept, walked once the answer is the reader's
  const parser = (_c: number, _k: number, _v: number, reader: { buffer: { buffer: Buffer }; position: number }): FetchResponseBytes => ({ buffer: reader.buffer.buffer, position: reader.position });
  return call((cb) => connection.send(fetchApiKey, Math.min(api.version, 17), request as never, parser as never, true, true, cb as never));
}

/**
 * The apply consumer's own fetches (issue 21): Fetch v15–v17 read_committed, sessionless, to each assigned
 * partition's leader, the record batches walked in the response bytes straight into the set layout (recordWalk.ts),
 * no object per record until a set is taken. Group membership stays the client's: it joins, heartbeats, holds the
 * assignment and commits; this reader fetches what `consumer.assignments` lists, from the group's committed offset
 * (the earliest when none), and forgets a revoked partition's position. Records of a revoked partition already
 * read still go into sets: the target's stored offsets make its new owner skip what they apply.
 *
 * Pacing (issue 22: an idle tunnel's fetch rate): each empty long-poll doubles the next one's wait up to
 * `idleWaitMs`, the first record brings it back to `activeWaitMs`. The broker answers one connection's requests in
 * order, so a partition gained in a rebalance would wait out a long poll: a join drops every long poll in flight
 * (its answer is ignored, the positions did not move) and the next fetch to that node goes on the other pool at
 * `activeWaitMs` until the dropped answer is back. Only a poll sent while none is dropped waits long, so two pools
 * suffice.
 */
export class FetchReader {
  private readonly spans = new RecordSpans();
  private readonly positions = new Map<string, Position>();
  private readonly polls = new Map<number, Poll>();
  /** Per node, the pool of a poll dropped at a join whose broker answer is still due. */
  private readonly dropped = new Map<number, ConnectionPool>();
  private readonly pools: [ConnectionPool, ConnectionPool];
  private readonly topicIds = new Map<string, string>();
  /** Partitions whose position fell out of the log without the answer saying where it starts. */
  private readonly toEarliest = new Set<string>();
  private waitMs = activeWaitMs;
  /** Fetches sent so far. */
  fetches = 0;
  private arrivedAt = 0;
  private failure: unknown;
  private wake: (() => void) | undefined;
  private readonly toCommit = new Map<string, { topic: string; partition: number; offset: bigint; waiters: { resolve: () => void; reject: (err: unknown) => void }[] }>();
  private committing = false;
  private planning = false;
  private planAgain = false;
  private staleMetadata = false;
  private closed = false;
  private readonly onJoin = () => this.cutLongPolls();
  private readonly onRebalance = () => this.pump();
  private readonly onError = (err: unknown) => this.fail(err);

  constructor(
    private readonly consumer: AnyConsumer,
    private readonly topics: string[],
    private readonly brokers: string[],
    private readonly maxRecords: number,
    private readonly maxBytes: number,
  ) {
    const options = { ...consumer[kOptions], ownerId: consumer.instanceId };
    this.pools = [new ConnectionPool(consumer.clientId, options), new ConnectionPool(consumer.clientId, options)];
  }

  /** Joins the group through the client (no client fetches) and starts reading the assignment. */
  async start(): Promise<void> {
    this.consumer.topics.trackAll(...this.topics);
    try {
      await this.consumer.joinGroup({});
    } catch (err) {
      throw unreachableBroker(this.brokers, err);
    }
    this.consumer.on('consumer:group:join', this.onJoin);
    this.consumer.on('consumer:group:rebalance', this.onRebalance);
    this.consumer.on('error', this.onError);
    this.pump();
  }

  /** The longest wait of the polls in flight (0: none); a rebalance must not wait on one longer than `activeWaitMs`. */
  get longestPollMs(): number {
    return Math.max(0, ...[...this.polls.values()].map((p) => p.waitMs));
  }

  /** Whether `count` records (or the byte cap) are waiting: a set worth decoding while another is written. */
  holds(count: number): boolean {
    return this.spans.count >= count || this.spans.bytes >= this.maxBytes;
  }

  /**
   * The next set: up to `maxRecords` records and `maxBytes` of keys and values (one larger record alone), copied
   * into the buffer `bufferFor` gives for their size. Waits for a record; undefined once `signal` aborts.
   */
  async take(signal: AbortSignal, bufferFor: (bytes: number) => Buffer = (n) => Buffer.allocUnsafeSlow(n)): Promise<FetchedSet | undefined> {
    while (this.spans.count === 0 && !signal.aborted && this.failure === undefined) {
      await wakeOrAbort(signal, (wake) => (this.wake = wake));
      this.wake = undefined;
    }
    if (this.failure !== undefined) throw this.failure;
    if (signal.aborted) return undefined;
    const { count, bytes } = this.spans.fitting(this.maxRecords, this.maxBytes);
    const buffer = bufferFor(bytes);
    const set = { records: this.spans.take(count, buffer), bytes: buffer, arrivedAt: this.arrivedAt };
    if (this.spans.count > 0) this.arrivedAt = Date.now();
    this.pump();
    return set;
  }

  /**
   * Commits `offset + 1` as the group's offset of the partition (GroupOffsets' Committable). One OffsetCommit in
   * flight at a time, the partitions asked for meanwhile merged into the next (the highest offset each), as the
   * client's stream did.
   */
  commitPast(topic: string, partition: number, offset: bigint): Promise<void> {
    return new Promise((resolve, reject) => {
      const key = partitionId(topic, partition);
      const asked = this.toCommit.get(key);
      if (!asked) this.toCommit.set(key, { topic, partition, offset: offset + 1n, waiters: [{ resolve, reject }] });
      else {
        if (asked.offset < offset + 1n) asked.offset = offset + 1n;
        asked.waiters.push({ resolve, reject });
      }
      this.flushCommits();
    });
  }

  /**
   * One OffsetCommit to the group's coordinator, in the group's current generation. Not `consumer.commit`: on an
   * error that means a rebalance the client joins the group again itself, alongside the join its heartbeat starts,
   * and the two joins of one member left partitions with two owners (scaleOut.test). A failed commit is GroupOffsets'
   * to retry; the group's offsets follow the target's and are read only at a partition's assignment.
   */
  private async offsetCommit(batch: { topic: string; partition: number; offset: bigint }[]): Promise<void> {
    const coordinator = this.consumer.coordinatorId;
    const broker = coordinator === null ? undefined : (await this.consumer.metadata({ topics: this.topics })).brokers.get(coordinator);
    if (!broker || this.consumer.memberId === null) throw new TunnelError('PGT_GROUP_REJOINING', 'the consumer is between group memberships: the offsets are committed after the next set', { errorClass: 'retryable' });
    const topics = new Map<string, { name: string; partitions: { partitionIndex: number; committedOffset: bigint; committedLeaderEpoch: number; committedMetadata: null }[] }>();
    for (const { topic, partition, offset } of batch) {
      if (!topics.has(topic)) topics.set(topic, { name: topic, partitions: [] });
      topics.get(topic)!.partitions.push({ partitionIndex: partition, committedOffset: offset, committedLeaderEpoch: -1, committedMetadata: null });
    }
    const connection = await call<Connection>((cb) => this.consumer[kGetConnection](broker, cb as never));
    const api = await call<(...args: unknown[]) => void>((cb) => this.consumer[kGetApi]('OffsetCommit', cb as never));
    await call((cb) => api(connection, this.consumer.groupId, this.consumer.generationId, this.consumer.memberId, null, [...topics.values()], cb));
  }

  private flushCommits(): void {
    if (this.committing || this.toCommit.size === 0) return;
    this.committing = true;
    const batch = [...this.toCommit.values()];
    this.toCommit.clear();
    this.offsetCommit(batch).then(
      () => batch.forEach((b) => b.waiters.forEach((w) => w.resolve())),
      (err: unknown) => batch.forEach((b) => b.waiters.forEach((w) => w.reject(err))),
    ).finally(() => {
      this.committing = false;
      this.flushCommits();
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    this.consumer.off('consumer:group:join', this.onJoin);
    this.consumer.off('consumer:group:rebalance', this.onRebalance);
    this.consumer.off('error', this.onError);
    this.wake?.();
    await Promise.all(this.pools.map((p) => p.close().catch(() => {})));
  }

  private fail(err: unknown): void {
    this.failure ??= err;
    this.wake?.();
  }

  private full(): boolean {
    return this.spans.count >= this.maxRecords || this.spans.bytes >= this.maxBytes;
  }

  /** Fetches from every node that has assigned partitions and no poll in flight, unless the records wait. */
  private pump(): void {
    if (this.closed || this.failure !== undefined) return;
    if (this.planning) {
      this.planAgain = true;
      return;
    }
    this.planning = true;
    this.plan().catch((err: unknown) => this.fail(err)).finally(() => {
      this.planning = false;
      if (this.planAgain) {
        this.planAgain = false;
        this.pump();
      }
    });
  }

  private async plan(): Promise<void> {
    if (this.full()) return;
    const assigned = await this.follow();
    if (assigned.length === 0 || this.closed) return;
    let metadata: ClusterMetadata;
    try {
      metadata = await this.consumer.metadata({ topics: this.topics, forceUpdate: this.staleMetadata });
    } catch (err) {
      throw unreachableBroker(this.brokers, err);
    }
    this.staleMetadata = false;
    const byNode = new Map<number, Position[]>();
    for (const p of assigned) {
      const topic = metadata.topics.get(p.topic);
      if (!topic) continue;
      this.topicIds.set(topic.id.replaceAll('-', ''), p.topic);
      const node = topic.partitions[p.partition]?.leader ?? -1;
      if (this.polls.has(node)) continue;
      byNode.set(node, [...(byNode.get(node) ?? []), p]);
    }
    for (const [node, partitions] of byNode) this.send(node, partitions, metadata);
  }

  /** The assigned partitions' positions: new ones from the group's committed offsets (the earliest when none). */
  private async follow(): Promise<Position[]> {
    const assigned = new Map<string, { topic: string; partition: number }>();
    for (const a of this.consumer.assignments ?? []) {
      if (!this.topics.includes(a.topic)) continue;
      for (const partition of a.partitions) assigned.set(partitionId(a.topic, partition), { topic: a.topic, partition });
    }
    for (const key of this.positions.keys()) if (!assigned.has(key)) this.positions.delete(key);
    const fresh = [...assigned].filter(([key]) => !this.positions.has(key)).map(([, p]) => p);
    if (fresh.length > 0) {
      const byTopic = new Map<string, number[]>();
      for (const p of fresh) byTopic.set(p.topic, [...(byTopic.get(p.topic) ?? []), p.partition]);
      let committed: Map<string, bigint[]>;
      let earliest: Map<string, bigint[]>;
      try {
        committed = await this.consumer.listCommittedOffsets({ topics: [...byTopic].map(([topic, partitions]) => ({ topic, partitions })) });
        earliest = await this.consumer.listOffsets({ topics: [...byTopic.keys()], partitions: Object.fromEntries(byTopic), timestamp: ListOffsetTimestamps.EARLIEST });
      } catch (err) {
        throw unreachableBroker(this.brokers, err);
      }
      for (const p of fresh) {
        const key = partitionId(p.topic, p.partition);
        // assigned still (a rebalance may have come during the lists), and not positioned meanwhile
        if (!this.sameAssignment(p.topic, p.partition) || this.positions.has(key)) continue;
        const stored = this.toEarliest.delete(key) ? -1n : (committed.get(p.topic)?.[p.partition] ?? -1n);
        const from = stored >= 0n ? stored : (earliest.get(p.topic)?.[p.partition] ?? 0n);
        this.positions.set(key, { topic: p.topic, partition: p.partition, offset: Number(from) });
      }
    }
    return [...this.positions.values()];
  }

  private sameAssignment(topic: string, partition: number): boolean {
    return (this.consumer.assignments ?? []).some((a) => a.topic === topic && a.partitions.includes(partition));
  }

  private send(node: number, partitions: Position[], metadata: ClusterMetadata): void {
    const broker = metadata.brokers.get(node);
    if (!broker) {
      this.staleMetadata = true;
      this.retryLater();
      return;
    }
    const droppedPool = this.dropped.get(node);
    // a dropped poll's pool stays busy at the broker until its answer
    const pool = droppedPool === this.pools[0] ? this.pools[1] : this.pools[0];
    const poll: Poll = { pool, waitMs: this.dropped.size > 0 ? activeWaitMs : this.waitMs, asked: new Map() };
    for (const p of partitions) poll.asked.set(partitionId(p.topic, p.partition), p.offset);
    this.polls.set(node, poll);
    this.fetches++;
    const byTopic = new Map<string, Position[]>();
    for (const p of partitions) byTopic.set(p.topic, [...(byTopic.get(p.topic) ?? []), p]);
    const topics = [...byTopic].map(([topic, ps]) => ({ topicId: metadata.topics.get(topic)!.id, partitions: ps }));
    fetchResponse(this.consumer, pool, broker, poll.waitMs, maxFetchBytes, topics).then(
      (answer) => this.answered(node, poll, answer),
      (err: unknown) => {
        if (this.polls.get(node) === poll) this.fail(err instanceof TunnelError || err instanceof ProtocolError ? err : unreachableBroker(this.brokers, err));
        else this.late(node, poll);
      },
    );
  }

  /** The late answer of a poll dropped at a join: its pool is free again. */
  private late(node: number, poll: Poll): void {
    if (this.dropped.get(node) === poll.pool) this.dropped.delete(node);
    this.pump();
  }

  private answered(node: number, poll: Poll, answer: FetchResponseBytes): void {
    if (this.polls.get(node) !== poll) return this.late(node, poll);
    this.polls.delete(node);
    if (this.closed) return;
    try {
      const before = this.spans.count;
      const { errorCode, partitions } = fetchAnswers(answer.buffer, answer.position);
      if (errorCode !== 0) throw new ProtocolError(errorCode);
      let leaderMoved = false;
      for (const a of partitions) {
        const topic = this.topicIds.get(a.topicId);
        const key = topic === undefined ? undefined : partitionId(topic, a.partition);
        const position = key === undefined ? undefined : this.positions.get(key);
        // revoked, or moved (revoked and assigned again) while the fetch was out
        if (!position || poll.asked.get(key!) !== position.offset) continue;
        if (a.errorCode === 0) {
          position.offset = walkPartition(answer.buffer, a.recordsAt, a.recordsEnd, a.aborted, position.offset, position.topic, position.partition, this.spans);
        } else if (a.errorCode === offsetOutOfRange && a.logStartOffset >= 0) {
          // as the client's fallbackMode earliest: the records are gone (retention), read on from the first kept
          position.offset = a.logStartOffset;
        } else if (a.errorCode === offsetOutOfRange) {
          this.positions.delete(key!);
          this.toEarliest.add(key!);
        } else if (leaderErrors.has(a.errorCode)) {
          leaderMoved = true;
        } else {
          throw new ProtocolError(a.errorCode);
        }
      }
      if (this.spans.count > before) {
        if (before === 0) this.arrivedAt = Date.now();
        this.waitMs = activeWaitMs;
        this.wake?.();
      } else {
        this.waitMs = Math.min(this.waitMs * 2, idleWaitMs);
      }
      if (leaderMoved) {
        this.staleMetadata = true;
        this.retryLater();
        return;
      }
    } catch (err) {
      this.fail(err);
      return;
    }
    this.pump();
  }

  private retryLater(): void {
    setTimeout(() => this.pump(), leaderRetryMs).unref();
  }

  /** Drops every long poll in flight, so the next fetches ask for the new assignment now. */
  private cutLongPolls(): void {
    this.waitMs = activeWaitMs;
    for (const [node, poll] of this.polls) {
      if (poll.waitMs <= activeWaitMs || this.dropped.has(node)) continue;
      this.polls.delete(node);
      this.dropped.set(node, poll.pool);
    }
    this.pump();
  }
}
