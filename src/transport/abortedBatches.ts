import { Consumer, IS_CONTROL, IS_TRANSACTIONAL, type CallbackWithPromise, type FetchOptions as Options, type fetchV17 } from './kafkaLib.js';

type FetchOptions = Options<Buffer, Buffer, string, string>;
type FetchResponse = fetchV17.FetchResponse;
type FetchCallback = CallbackWithPromise<FetchResponse>;

/**
 * Kafka's Java consumer's read_committed rule over one partition's batches, met in offset order: a transaction a
 * Fetch response lists as aborted covers its producer's transactional batches from its first offset up to that
 * producer's next abort marker, wherever that marker lies (also in a later response: the list is per response).
 */
export class AbortedRanges<T extends number | bigint> {
  private readonly open = new Set<T>();
  private next = 0;

  /** `listed`: the response's aborted transactions of the partition, sorted by first offset. */
  constructor(private readonly listed: readonly { producerId: T; firstOffset: T }[]) {}

  /** Every batch, control or not, in order: opens the listed transactions starting at or before its last offset. */
  reach(lastOffset: T): void {
    while (this.next < this.listed.length && this.listed[this.next]!.firstOffset <= lastOffset) this.open.add(this.listed[this.next++]!.producerId);
  }

  /** An abort marker of `producerId`: its aborted transaction ends. */
  abortMarker(producerId: T): void {
    this.open.delete(producerId);
  }

  /** Whether a transactional batch of `producerId` belongs to an aborted transaction. */
  aborted(producerId: T): boolean {
    return this.open.has(producerId);
  }
}

/**
 * Empties, in a read_committed fetch response, every batch of an aborted transaction, as Kafka's Java consumer
 * reads the response's aborted list: a transaction listed there is aborted from its first offset up to its
 * producer's next abort marker, wherever that marker lies. @platformatic/kafka 2.12 keeps a listed transaction's
 * records when its marker is not in the same response (a transaction cut by the fetch's byte limit), and one range
 * per producer: a consumer would apply records of a publish that never committed (fetch1's bench: 11,650 of
 * 20,000 aborted records delivered). A batch is emptied, not removed: the messages stream takes the next fetch
 * offset from the response's last batch, so the aborted records are stepped over, never fetched again.
 */
export function dropAbortedBatches(response: fetchV17.FetchResponse): void {
  for (const topic of response.responses) {
    for (const partition of topic.partitions) {
      const listed = partition.abortedTransactions;
      if (!listed?.length || !partition.records?.length) continue;
      const aborted = [...listed].sort((a, b) => (a.firstOffset < b.firstOffset ? -1 : a.firstOffset > b.firstOffset ? 1 : 0));
      const ranges = new AbortedRanges(aborted);
      partition.records = partition.records.map((batch) => {
        ranges.reach(batch.firstOffset + BigInt(batch.lastOffsetDelta));
        if (batch.attributes & IS_CONTROL) {
          // the control record's key: version int16, type int16 (0 abort, 1 commit)
          if (batch.records[0]?.key?.readInt16BE(2) === 0) ranges.abortMarker(batch.producerId);
          return batch;
        }
        return batch.attributes & IS_TRANSACTIONAL && ranges.aborted(batch.producerId) ? { ...batch, records: [] } : batch;
      });
    }
  }
}

/**
 * A client consumer whose read_committed fetches never deliver an aborted transaction's records: the transactional
 * applier's, which still reads through the client's stream (the apply consumer reads through FetchReader).
 */
export class CommittedConsumer extends Consumer<Buffer, Buffer, string, string> {
  override fetch(options: FetchOptions): Promise<FetchResponse>;
  override fetch(options: FetchOptions, callback: FetchCallback): void;
  override fetch(options: FetchOptions, callback?: FetchCallback): Promise<FetchResponse> | void {
    if (!callback) {
      return super.fetch(options).then((response) => {
        dropAbortedBatches(response);
        return response;
      });
    }
    super.fetch(options, (error, response) => {
      if (!error && response) dropAbortedBatches(response);
      callback(error, response);
    });
  }
}
