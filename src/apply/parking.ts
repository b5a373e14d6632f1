import type pg from 'pg';
import { keyId, keyParts } from '../names.js';
import type { SetOutcome } from './setOutcome.js';

/** Whether any key of the topics is parked: one probe per set. */
export async function anyParked(client: pg.Client, topics: string[]): Promise<boolean> {
  const { rows } = await client.query<{ any: boolean }>('SELECT EXISTS (SELECT 1 FROM pgtunnel.parked_keys WHERE topic = ANY($1::text[])) AS any', [topics]);
  return rows[0]?.any === true;
}

/** Which of the keys are parked (they have unresolved dead letters), locked for the set's transaction. */
export async function parkedKeys(client: pg.Client, keys: { topic: string; key: string }[]): Promise<Set<string>> {
  if (keys.length === 0) return new Set();
  // Parked keys are rare: one probe per set, instead of sending every key of the set (thousands) for nothing.
  if (!(await anyParked(client, [...new Set(keys.map((k) => k.topic))]))) return new Set();
  const { rows } = await client.query<{ topic: string; key: string }>(
    `SELECT p.topic, p.key FROM pgtunnel.parked_keys p JOIN unnest($1::text[], $2::text[]) AS k(topic, key) USING (topic, key) FOR SHARE OF p`,
    [keys.map((r) => r.topic), keys.map((r) => r.key)],
  );
  return new Set(rows.map((r) => keyId(r.topic, r.key)));
}

/** Parks the keys that got dead letters in this set (orderPolicy park). */
export async function recordParked(client: pg.Client, outcome: SetOutcome): Promise<void> {
  if (outcome.parkedKeys.size === 0) return;
  const entries = [...outcome.parkedKeys].map(([k, n]) => [...keyParts(k), n] as [string, string, number]);
  await client.query(
    `INSERT INTO pgtunnel.parked_keys (topic, key, dead_letters) SELECT * FROM unnest($1::text[], $2::text[], $3::int[])
     ON CONFLICT (topic, key) DO UPDATE SET dead_letters = pgtunnel.parked_keys.dead_letters + EXCLUDED.dead_letters`,
    [entries.map((e) => e[0]), entries.map((e) => e[1]), entries.map((e) => e[2])],
  );
}
