import type { StoredLetter } from './dlqReader.js';
import { fromConsumer } from './resolutions.js';
import { compositeKey } from '../names.js';

/** One key's unresolved dead letters in the order their changes were published; `selected` by the filters. */
export type KeyQueue = { letter: StoredLetter; selected: boolean }[];

export interface ReplayPlan {
  queues: KeyQueue[];
  /** Copies of a change another letter stands for (an older attempt, or a re-send after a crash). */
  copies: StoredLetter[];
}

function compareOffsets(a: string, b: string): number {
  const x = BigInt(a);
  const y = BigInt(b);
  return x < y ? -1 : x > y ? 1 : 0;
}

/**
 * Orders unresolved letters for replay: grouped by the DLQ that holds them and their key (never by a
 * header, so a header cannot move a letter to another table), each key's letters by ORIGINAL partition and
 * offset — a re-queued letter keeps its place however late it was re-written — and one letter per original
 * change: the newest attempt, then the newest copy.
 */
export function planReplay(letters: StoredLetter[], selected: (l: StoredLetter) => boolean): ReplayPlan {
  const byKey = new Map<string, StoredLetter[]>();
  for (const l of letters) {
    // Letters that are no position in the topic (the producer's) or no change (poison) order nothing.
    const alone = l.key === undefined || !fromConsumer(l) || l.errorClass === 'poison';
    const id = compositeKey(l.dlqTopic, alone ? `\u0001${l.partition}:${l.offset}` : l.key!);
    const group = byKey.get(id);
    if (group) group.push(l);
    else byKey.set(id, [l]);
  }
  const queues: KeyQueue[] = [];
  const copies: StoredLetter[] = [];
  for (const group of byKey.values()) {
    group.sort(
      (a, b) =>
        a.original.partition - b.original.partition ||
        compareOffsets(a.original.offset, b.original.offset) ||
        b.attempt - a.attempt ||
        compareOffsets(b.offset, a.offset),
    );
    const queue: KeyQueue = [];
    let last: StoredLetter | undefined;
    for (const l of group) {
      if (last && last.original.partition === l.original.partition && last.original.offset === l.original.offset) copies.push(l);
      else queue.push({ letter: l, selected: selected(l) });
      last = l;
    }
    queues.push(queue);
  }
  return { queues, copies };
}
