/**
 * Where capture stands in the source's history. `prev` is the checkpoint: every transaction visible in
 * it has been published. While a batch is published in pages, `cur` is that batch's snapshot and
 * `lastChangeId` the last change acknowledged from it.
 */
export interface Position {
  prev: string | null;
  cur: string | null;
  lastChangeId: number;
}

/**
 * Pure: how many changes to read next. A batch's first page reads `batchSize`; while pages come back
 * full the size doubles (a large transaction is read in fewer pages), up to 8 × batchSize. A batch
 * resumed after a restart starts again at `batchSize`: a zero limit would read nothing and close the batch.
 */
export function nextPageSize(position: Position, previous: number, batchSize: number): number {
  if (position.cur === null) return batchSize;
  return Math.min(Math.max(previous, batchSize) * 2, batchSize * 8);
}

/** Pure: the position after a page of `count` changes read with snapshot `curUsed`. */
export function advance(position: Position, curUsed: string, count: number, lastChangeId: number | undefined, pageSize: number): Position {
  if (pageSize < 1) throw new Error(`page size must be positive, got ${pageSize}`);
  if (count >= pageSize && lastChangeId !== undefined) {
    return { prev: position.prev, cur: curUsed, lastChangeId };
  }
  return { prev: curUsed, cur: null, lastChangeId: 0 };
}

/** True when a batch of the given position is complete, so the rows it covered can be cleaned up. */
export function isBatchComplete(position: Position): boolean {
  return position.cur === null;
}
