/** What the apply reads of a fetched message: where it is and its key and value bytes. */
export interface FetchedBytes {
  topic: string;
  partition: number;
  offset: bigint;
  key: Buffer | undefined;
  value: Buffer | undefined;
}

/**
 * The set's keys and values copied into one buffer of their exact size, each record a view of it. The
 * client's key and value are views of the fetch responses (2 MB each, read from the socket): a set that
 * outlives its write's awaits would otherwise keep every response it touched alive, and a single record
 * kept (a dead letter, a parked key) a whole response. One allocation and one copy per set.
 */
export function compactSet<M extends FetchedBytes>(messages: M[]): FetchedBytes[] {
  let total = 0;
  for (const m of messages) total += (m.key?.length ?? 0) + (m.value?.length ?? 0);
  // outside the small-buffer pool: the pool's 8 KB slabs are shared with other buffers that live on
  const bytes = Buffer.allocUnsafeSlow(total);
  let at = 0;
  const copied = (b: Buffer | null | undefined): Buffer | undefined => {
    if (b === undefined || b === null) return undefined;
    b.copy(bytes, at);
    at += b.length;
    return bytes.subarray(at - b.length, at);
  };
  return messages.map((m) => ({ topic: m.topic, partition: m.partition, offset: m.offset, key: copied(m.key), value: copied(m.value) }));
}
