/** What the apply reads of a fetched message: where it is and its key and value bytes. */
export interface FetchedBytes {
  topic: string;
  partition: number;
  offset: bigint;
  key: Buffer | undefined;
  value: Buffer | undefined;
}

/**
 * The buffers sets are copied into (FetchReader.take: keys and values out of the fetch responses, so that no
 * record keeps a 2 MB response alive), reused set after set: the consumer has at most one set decoding and
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
