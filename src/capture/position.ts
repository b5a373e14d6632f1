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

/** Pure: the position after a page of `count` changes read with snapshot `curUsed`. */
export function advance(position: Position, curUsed: string, count: number, lastChangeId: number | undefined, pageSize: number): Position {
  if (count >= pageSize && lastChangeId !== undefined) {
    return { prev: position.prev, cur: curUsed, lastChangeId };
  }
  return { prev: curUsed, cur: null, lastChangeId: 0 };
}

/** True when a batch of the given position is complete, so the rows it covered can be cleaned up. */
export function isBatchComplete(position: Position): boolean {
  return position.cur === null;
}
