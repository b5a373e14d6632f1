import type pg from 'pg';
import type { Records } from './batchPublisher.js';

/** Where a chunk read starts: the checkpoint it follows (`prev`) and the last key already published. */
export interface ChunkStart {
  prev: string | null;
  lastKey: string | null;
}

/**
 * One snapshot chunk read in a REPEATABLE READ transaction of its own on the producer's reads connection,
 * beside the session that stores checkpoints. Its first part is asked for on creation, so a chunk made
 * while the previous one is published, acknowledged and checkpointed is read meanwhile (issue 21 item 2).
 * `parts` fills in what the chunk found (snapshot, last key, done) as it reads.
 */
export class ChunkRead {
  private readonly parts: AsyncGenerator<Records, void, number>;
  private first: Promise<IteratorResult<Records, void>> | undefined;

  /** `begin`: the chunk's REPEATABLE READ transaction (capture/snapshotReader.ts chunkTransaction). */
  constructor(readonly reads: pg.Client, readonly start: ChunkStart, private readonly begin: string, parts: AsyncGenerator<Records, void, number>) {
    this.parts = this.inTransaction(parts);
    this.first = this.parts.next(0);
    this.first.catch(() => {}); // seen by `records`
  }

  /** Whether this read continues from `start` on `reads` (a new leadership or an error leaves it stale). */
  follows(reads: pg.Client, start: ChunkStart): boolean {
    return this.reads === reads && this.start.prev === start.prev && this.start.lastKey === start.lastKey;
  }

  private async *inTransaction(parts: AsyncGenerator<Records, void, number>): AsyncGenerator<Records, void, number> {
    await this.reads.query(this.begin);
    let open = true;
    try {
      yield* parts;
      await this.reads.query('COMMIT');
      open = false;
    } finally {
      // a read given up (a failed publish, a stale read-ahead) leaves no transaction on the connection
      if (open) await this.reads.query('ROLLBACK').catch(() => {});
    }
  }

  /** The chunk's parts in order, for the publish step; the transaction has committed when they end. */
  async *records(): AsyncGenerator<Records, void, number> {
    let next = this.first ?? this.parts.next(0);
    this.first = undefined;
    for (;;) {
      const part = await next;
      if (part.done) return;
      next = this.parts.next(yield part.value);
    }
  }

  /** Gives the read up: its transaction is rolled back once a part being read arrived. */
  async discard(): Promise<void> {
    await this.first?.catch(() => {});
    this.first = undefined;
    // an async generator queues `return` behind a pending `next`
    await this.parts.return(undefined).catch(() => {});
  }
}
