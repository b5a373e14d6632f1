import pg from 'pg';
import { classify, coerceError } from '../errors.js';
import { partitionId } from '../names.js';
import type { DeadLetter, RawRecord } from '../validate/deadLetters.js';
import { recordLetteredKeys } from '../validate/letteredKeys.js';
import { decodeRecord, type RouteTable } from './route.js';
import type { SetOutcome } from './setOutcome.js';
import type { HeldRecord } from './transactionBuffer.js';

/** The dead letter of a change the target refused (a value, a constraint), with the database's own details. */
export function targetLetter(err: unknown): DeadLetter {
  const db = err instanceof pg.DatabaseError ? err : undefined;
  return {
    errorClass: 'target',
    code: db?.code ?? classify(err).code,
    message: `the target refused the source transaction: ${coerceError(err).message}`,
    details: { constraint: db?.constraint, table: db?.table, column: db?.column, detail: db?.detail },
  };
}

/**
 * `apply: transactional` never shows part of a source transaction: when one of its records is a dead letter
 * (a rule, a parked key, a missing key) or the target refuses it, every record of the transaction goes to the
 * DLQ. A record keeps its own letter; the others carry the first one's class and reason, named as the
 * transaction's. Truncate copies beyond partition 0 are not lettered (the truncate counts once, as applied).
 */
export async function letterUnit(
  client: pg.Client,
  unitId: string,
  pieces: AsyncIterable<HeldRecord[]>,
  own: { record: RawRecord; letter: DeadLetter }[],
  refused: DeadLetter | undefined,
  tableOf: (topic: string) => RouteTable,
  outcome: SetOutcome,
): Promise<void> {
  const mine = new Map(own.map((l) => [placeOf(l.record), l.letter]));
  const first = own[0]?.letter ?? refused!;
  const shared: DeadLetter = { ...first, message: `part of source transaction ${unitId}, kept whole: ${first.message}` };
  for await (const piece of pieces) {
    const keyed: RawRecord[] = [];
    const letters: { record: RawRecord; letter: DeadLetter }[] = [];
    for (const r of piece) {
      if (r.value === undefined) continue;
      const table = tableOf(r.topic);
      const d = decodeRecord(r, table);
      if ('envelope' in d && d.envelope.op === 't' && r.partition !== 0) continue;
      const key = 'key' in d && d.envelope.op !== 't' ? d.key : undefined;
      const record = { ...r, key: 'poison' in d ? r.key : key };
      const letter = mine.get(placeOf(r)) ?? shared;
      outcome.dead(record, letter, key !== undefined && table.orderPolicy === 'park');
      if ('poison' in d) continue;
      keyed.push(record);
      letters.push({ record, letter });
    }
    // dlq replay's supersede guard, as the per-partition apply keeps it
    await recordLetteredKeys(client, keyed, letters);
  }
}

function placeOf(r: { topic: string; partition: number; offset: bigint }): string {
  return `${partitionId(r.topic, r.partition)}@${r.offset}`;
}
