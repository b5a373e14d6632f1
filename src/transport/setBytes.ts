/** What the apply reads of a fetched message: where it is and its key and value bytes. */
export interface FetchedBytes {
  topic: string;
  partition: number;
  offset: bigint;
  key: Buffer | undefined;
  value: Buffer | undefined;
}

/** The bytes of a set's keys and values. */
export function setBytesOf(messages: readonly Pick<FetchedBytes, 'key' | 'value'>[]): number {
  let total = 0;
  for (const m of messages) total += (m.key?.length ?? 0) + (m.value?.length ?? 0);
  return total;
}

/**
 * The set's keys and values copied into one buffer (`bytes`, at least their size), each record a view of it.
 * The client's key and value are views of the fetch responses (2 MB each, read from the socket): a set that
 * outlives its write's awaits would otherwise keep every response it touched alive, and a single record
 * kept (a dead letter, a parked key) a whole response. One copy per set.
 */
export function compactSet<M extends FetchedBytes>(messages: M[], bytes: Buffer = Buffer.allocUnsafeSlow(setBytesOf(messages))): FetchedBytes[] {
  let at = 0;
  const copied = (b: Buffer | null | undefined): Buffer | undefined => {
    if (b === undefined || b === null) return undefined;
    b.copy(bytes, at);
    at += b.length;
    return bytes.subarray(at - b.length, at);
  };
  return messages.map((m) => ({ topic: m.topic, partition: m.partition, offset: m.offset, key: copied(m.key), value: copied(m.value) }));
}

/**
 * The buffers sets are compacted into, reused set after set: the consumer has at most one set decoding and
 * one writing, so two buffers of a full set's size serve every set, and external memory stays at them
 * instead of a new buffer per set floating up to V8's external-memory trigger for a major GC (bench/RESULTS.md
 * rss2). Outside the small-buffer pool: its 8 KB slabs are shared with buffers that live on. A buffer is given
 * back only when nothing refers to its set's records any more; one never given back is simply collected.
 */
export class SetBuffers {
  private readonly spare: Buffer[] = [];

  constructor(private readonly size: number, private readonly kept = 2) {}

  /** A buffer for a set of `bytes`: a spare one; a set larger than `size` (one big record) gets its own, never kept. */
  take(bytes: number): Buffer {
    if (bytes > this.size) return Buffer.allocUnsafeSlow(bytes);
    return this.spare.pop() ?? Buffer.allocUnsafeSlow(this.size);
  }

  /** Gives a set's buffer back once the set is written: its records are read no more. */
  give(buffer: Buffer): void {
    if (buffer.length !== this.size || this.spare.length >= this.kept || this.spare.includes(buffer)) return;
    this.spare.push(buffer);
  }
}
