import type pg from 'pg';
import type { StoredLetter } from './dlqReader.js';
import { topicOfDlq } from '../names.js';

/**
 * How a dead letter was resolved, kept in the target (`pgtunnel.dlq_resolved`); Kafka data is never deleted.
 * applied: replay wrote it; superseded: the target already held a newer change of its key; discarded:
 * `dlq discard`; requeued: replay failed again and a new attempt took its place; duplicate: another copy of
 * the same original change (a re-send after a crash) stands for it.
 */
export type Resolution = 'applied' | 'superseded' | 'discarded' | 'requeued' | 'duplicate';

async function record(client: pg.Client, letter: StoredLetter, outcome: Resolution): Promise<boolean> {
  const inserted = await client.query(
    `INSERT INTO pgtunnel.dlq_resolved (topic, partition, "offset", outcome) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING`,
    [letter.dlqTopic, letter.partition, letter.offset, outcome],
  );
  return inserted.rowCount === 1;
}

/** Letters the producer wrote (a bad action in the change table) have no topic position and were never counted. */
export function fromConsumer(letter: StoredLetter): boolean {
  return letter.original.partition >= 0;
}

/** Resolves the letter and, the first time only, takes it off its key's counts; a key with none left is released. */
export async function resolveLetter(client: pg.Client, letter: StoredLetter, outcome: 'applied' | 'superseded' | 'discarded'): Promise<void> {
  if (!(await record(client, letter, outcome)) || letter.key === undefined || !fromConsumer(letter)) return;
  // The counts were kept under the topic whose DLQ holds the letter, whatever its headers say; the consumer
  // parks a key for every class of letter but poison, and counts every letter in lettered_keys.
  const topic = topicOfDlq(letter.dlqTopic);
  for (const table of letter.errorClass === 'poison' ? ['lettered_keys'] : ['parked_keys', 'lettered_keys']) {
    await client.query(`UPDATE pgtunnel.${table} SET dead_letters = dead_letters - 1 WHERE topic = $1 AND key = $2`, [topic, letter.key]);
    await client.query(`DELETE FROM pgtunnel.${table} WHERE topic = $1 AND key = $2 AND dead_letters <= 0`, [topic, letter.key]);
  }
}

/** A copy another letter stands for: resolved without touching the counts (the standing copy carries them). */
export async function retireCopy(client: pg.Client, letter: StoredLetter, outcome: 'requeued' | 'duplicate'): Promise<void> {
  await record(client, letter, outcome);
}
