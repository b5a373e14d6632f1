import type pg from 'pg';
import { compositeKey } from '../names.js';
import type { DeadLetterItem, RawRecord } from './deadLetters.js';

/**
 * The supersede guard's bookkeeping (`pgtunnel.lettered_keys`): which keys have unresolved dead letters and
 * the newest original offset applied to the target for each since. Written in the consumer's transaction,
 * so it is exactly as current as the target rows; `dlq replay` reads it under a row lock.
 */

/** Where a change sits in its table topic; offsets compare only within one partition. */
export interface OriginalPosition {
  partition: number;
  offset: string;
}

export interface AppliedPosition {
  partition: number;
  appliedOffset: string | null;
}

function isTruncate(value: string): boolean {
  try {
    return (JSON.parse(value) as { op?: unknown }).op === 't';
  } catch {
    return false;
  }
}

/**
 * Called once per applied set, inside its transaction: counts the set's new letters per key, then moves the
 * applied offset of lettered keys that the set applied (or truncated). When no key of these topics has a
 * letter, that is one probe of an empty table per set, nothing per row.
 */
export async function recordLetteredKeys(client: pg.Client, fresh: RawRecord[], letters: Pick<DeadLetterItem, 'record'>[]): Promise<void> {
  const counts = new Map<string, { topic: string; key: string; partition: number; n: number }>();
  const lettered = new Set<string>();
  for (const { record: r } of letters) {
    lettered.add(compositeKey(r.topic, r.partition, r.offset));
    if (r.key === undefined) continue;
    const id = compositeKey(r.topic, r.key);
    const c = counts.get(id) ?? { topic: r.topic, key: r.key, partition: r.partition, n: 0 };
    c.n++;
    counts.set(id, c);
  }
  if (counts.size > 0) {
    const rows = [...counts.values()];
    await client.query(
      `INSERT INTO pgtunnel.lettered_keys (topic, key, partition, dead_letters)
       SELECT * FROM unnest($1::text[], $2::text[], $3::int[], $4::int[])
       ON CONFLICT (topic, key) DO UPDATE SET dead_letters = pgtunnel.lettered_keys.dead_letters + EXCLUDED.dead_letters,
         applied_offset = CASE WHEN pgtunnel.lettered_keys.partition = EXCLUDED.partition THEN pgtunnel.lettered_keys.applied_offset END,
         partition = EXCLUDED.partition`,
      [rows.map((r) => r.topic), rows.map((r) => r.key), rows.map((r) => r.partition), rows.map((r) => r.n)],
    );
  }
  const topics = [...new Set(fresh.map((r) => r.topic))];
  if (topics.length === 0) return;
  const { rows: probe } = await client.query<{ any: boolean }>('SELECT EXISTS (SELECT 1 FROM pgtunnel.lettered_keys WHERE topic = ANY($1::text[])) AS any', [topics]);
  if (!probe[0]?.any) return;
  // Newest applied offset per key; a tombstone is not a change (its delete may itself be a letter).
  const newest = new Map<string, { topic: string; key: string; partition: number; offset: bigint }>();
  const truncates: { topic: string; partition: number; offset: bigint }[] = [];
  for (const r of fresh) {
    if (r.value === undefined || r.value === null || lettered.has(compositeKey(r.topic, r.partition, r.offset))) continue;
    if (r.key === undefined) {
      if (isTruncate(r.value)) truncates.push(r);
      continue;
    }
    const id = compositeKey(r.topic, r.key);
    const n = newest.get(id);
    if (!n || r.offset > n.offset) newest.set(id, { topic: r.topic, key: r.key, partition: r.partition, offset: r.offset });
  }
  if (newest.size > 0) {
    const rows = [...newest.values()];
    await client.query(
      `UPDATE pgtunnel.lettered_keys l SET applied_offset = GREATEST(l.applied_offset, p.applied_offset)
       FROM unnest($1::text[], $2::text[], $3::int[], $4::bigint[]) AS p(topic, key, partition, applied_offset)
       WHERE l.topic = p.topic AND l.key = p.key AND l.partition = p.partition`,
      [rows.map((r) => r.topic), rows.map((r) => r.key), rows.map((r) => r.partition), rows.map((r) => r.offset.toString())],
    );
  }
  // A truncate replaces every key of its partition: older letters of those keys are superseded too.
  for (const t of truncates) {
    await client.query(
      'UPDATE pgtunnel.lettered_keys SET applied_offset = GREATEST(applied_offset, $3::bigint) WHERE topic = $1 AND partition = $2',
      [t.topic, t.partition, t.offset.toString()],
    );
  }
}

/** Locks the key's row for the rest of the transaction, so the consumer cannot apply the key in between. */
export async function lockAppliedPosition(client: pg.Client, topic: string, key: string, forUpdate = true): Promise<AppliedPosition | undefined> {
  const { rows } = await client.query<{ partition: number; applied_offset: string | null }>(
    `SELECT partition, applied_offset::text FROM pgtunnel.lettered_keys WHERE topic = $1 AND key = $2${forUpdate ? ' FOR UPDATE' : ''}`,
    [topic, key],
  );
  return rows[0] ? { partition: rows[0].partition, appliedOffset: rows[0].applied_offset } : undefined;
}

/** True when the target already holds a newer change of the key than the letter's. */
export function isSuperseded(applied: AppliedPosition | undefined, letter: OriginalPosition): boolean {
  if (!applied || applied.appliedOffset === null || applied.partition !== letter.partition) return false;
  return BigInt(applied.appliedOffset) > BigInt(letter.offset);
}

/** A replayed letter is now the key's newest applied change (unless something newer is). */
export async function noteReplayApplied(client: pg.Client, topic: string, key: string, letter: OriginalPosition): Promise<void> {
  await client.query(
    'UPDATE pgtunnel.lettered_keys SET applied_offset = GREATEST(applied_offset, $4::bigint) WHERE topic = $1 AND key = $2 AND partition = $3',
    [topic, key, letter.partition, letter.offset],
  );
}
