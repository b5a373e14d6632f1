import { checkKeyForm, decodeEnvelope, keyedEnvelope, keyOfImage, PoisonError, rowValues, type Envelope } from '../contracts/envelope.js';
import { firstFailure, type CompiledRule } from '../validate/rules.js';
import type { DeadLetter, RawRecord } from '../validate/deadLetters.js';
import type { DecodedRecord } from './reduce.js';
import { keyId, partitionId } from '../names.js';

/** A record's envelope and canonical key (empty for a truncate), or its poison letter. */
export type Decoded = { envelope: Envelope; key: string } | { poison: DeadLetter };

/** What routing needs of a target table. */
export interface RouteTable {
  /** schema.table, for metrics */
  table: string;
  key: string[];
  types: Record<string, string>;
  rules: CompiledRule[];
  orderPolicy: 'park' | 'continue';
  onMissingKey?: 'upsert' | 'dead-letter';
}

/** Keys longer than this are poison: they could not be parked (btree limit) and no real key is this long. */
const maxKeyBytes = 2048;

/** Pure: the one strict decoder, and the canonical key every later step uses. */
export function decodeRecord(r: RawRecord, table: RouteTable): Decoded {
  if (r.unreadable) return { poison: { errorClass: 'poison', message: `unreadable record: ${r.unreadable}` } };
  try {
    const envelope = r.decoded ? keyedEnvelope(r.decoded, table.key) : decodeEnvelope(r.key, r.value!, table.key);
    if (envelope.op === 't') return { envelope, key: '' };
    const row = (envelope.op === 'd' ? envelope.before : envelope.after)!;
    checkKeyForm(row, table.key, table.types);
    const key = keyOfImage(row, table.key);
    if (Buffer.byteLength(key) > maxKeyBytes) throw new PoisonError(`key is longer than ${maxKeyBytes} bytes`);
    return { envelope, key };
  } catch (err) {
    if (!(err instanceof PoisonError)) throw err;
    return { poison: { errorClass: 'poison', message: `not a pgtunnel envelope: ${err.message}` } };
  }
}

/** One step of a set's work, in the set's order. */
export type Step =
  | { kind: 'dead'; record: RawRecord; letter: DeadLetter; park: boolean }
  | { kind: 'truncate'; record: RawRecord; table: string }
  | { kind: 'write'; records: DecodedRecord[] };

/**
 * Pure: the records with each partition's together, partitions in order of first appearance, each in its
 * own order. A set is several fetches (partition 0, 1, 2, 0 again, …) and Kafka orders nothing across
 * partitions; a truncate orders only its own partition's records, so one copy of it must not split another
 * partition's run and write a key of that partition twice in the transaction.
 */
export function byPartition<R extends { topic: string; partition: number }>(records: R[]): R[] {
  const runs = new Map<string, R[]>();
  for (const r of records) {
    const id = partitionId(r.topic, r.partition);
    const run = runs.get(id);
    if (run) run.push(r);
    else runs.set(id, [r]);
  }
  return runs.size <= 1 ? records : [...runs.values()].flat();
}

/**
 * Pure: each record's fate in its partition's order (byPartition) — written (runs of records between
 * truncates become one write step), truncated, or a dead letter (poison, parked behind an earlier letter of
 * its key, a rule). `parked` is read as the steps are taken: a letter the caller records for a key parks
 * that key's later records. `unrecorded`: truncates the source's capture did not record, never honoured.
 */
export function* route(
  fresh: RawRecord[],
  decoded: Map<RawRecord, Decoded>,
  tableOf: (topic: string) => RouteTable,
  parked: { has(keyId: string): boolean },
  unrecorded: Set<RawRecord> = new Set(),
): Generator<Step> {
  let segment: DecodedRecord[] = [];
  for (const r of byPartition(fresh)) {
    const d = decoded.get(r);
    if (d === undefined) continue; // a tombstone only tells compaction to forget the key
    if ('poison' in d) {
      yield { kind: 'dead', record: r, letter: d.poison, park: false };
      continue;
    }
    const table = tableOf(r.topic);
    const { envelope, key } = d;
    if (envelope.op === 't') {
      if (unrecorded.has(r)) {
        yield { kind: 'dead', record: r, letter: { errorClass: 'poison', message: `a truncate the source's capture did not record (txId ${envelope.source.txId}, lsn ${envelope.source.lsn}) is not honoured` }, park: false };
        continue;
      }
      if (segment.length > 0) yield { kind: 'write', records: segment };
      segment = [];
      yield { kind: 'truncate', record: r, table: table.table };
      continue;
    }
    const park = table.orderPolicy === 'park';
    if (park && parked.has(keyId(r.topic, key))) {
      yield { kind: 'dead', record: { ...r, key }, letter: { errorClass: 'parked', message: `key ${key} has an earlier dead letter; parked behind it until \`pgtunnel dlq replay\`` }, park: true };
      continue;
    }
    const letter = ruleLetter(envelope, table.rules);
    if (letter) {
      yield { kind: 'dead', record: { ...r, key }, letter, park };
      continue;
    }
    segment.push({ topic: r.topic, partition: r.partition, offset: r.offset, key, value: r.value!, envelope });
  }
  if (segment.length > 0) yield { kind: 'write', records: segment };
}

/** Pure: the rule letter of a change whose new row fails a rule (a delete has no new row to check). */
export function ruleLetter(envelope: Envelope, rules: CompiledRule[]): DeadLetter | undefined {
  const failure = envelope.op === 'd' || rules.length === 0 ? undefined : firstFailure(rules, rowValues(envelope.after!));
  return failure && { errorClass: 'rule', rule: failure.rule, message: `rule ${failure.rule}: ${failure.message}` };
}

/**
 * Pure: the keys of a write step whose presence in the target decides their fate under onMissingKey:
 * dead-letter — updates of keys not created earlier in the same step.
 */
export function missingKeyCandidates(records: DecodedRecord[], table: RouteTable): Set<string> {
  const created = new Set<string>();
  const candidates = new Set<string>();
  if (table.onMissingKey !== 'dead-letter') return candidates;
  for (const r of records) {
    if (r.envelope.op === 'c' || r.envelope.op === 'r') created.add(r.key);
    else if (r.envelope.op === 'u' && !created.has(r.key)) candidates.add(r.key);
  }
  return candidates;
}

/** Pure: a write step split by the candidates the target lacks: the records kept, and the missing-key letters. */
export function missingKeyDecisions(records: DecodedRecord[], missing: Set<string>, table: RouteTable): { kept: DecodedRecord[]; dead: Extract<Step, { kind: 'dead' }>[] } {
  if (missing.size === 0) return { kept: records, dead: [] };
  const park = table.orderPolicy === 'park';
  const dead = records.filter((r) => missing.has(r.key)).map((r) => ({
    kind: 'dead' as const,
    record: { topic: r.topic, partition: r.partition, offset: r.offset, key: r.key, value: r.value },
    letter: { errorClass: 'missing-key' as const, message: `update of key ${r.key}, which the target does not have (onMissingKey: dead-letter)` },
    park,
  }));
  return { kept: records.filter((r) => !missing.has(r.key)), dead };
}
