import type pg from 'pg';
import type { DeadLetter, RawRecord } from '../validate/deadLetters.js';
import type { Decoded } from './route.js';

/**
 * Records, in the apply transaction, that the record's partition honours this truncate; a copy of one it
 * already honoured (a replay, or whoever can write the topic repeating a genuine one) is a dead letter.
 * Rows older than 30 days go: by then the source has pruned its record of the truncate (7 days after it
 * was published), so a copy is refused as unrecorded anyway.
 */
export async function replayedTruncate(client: pg.Client, r: RawRecord, d: Decoded | undefined): Promise<DeadLetter | undefined> {
  const source = d && 'envelope' in d ? d.envelope.source : undefined;
  await client.query("DELETE FROM pgtunnel.honoured_truncates WHERE honoured_at < now() - interval '30 days'");
  const { rows } = await client.query(
    'INSERT INTO pgtunnel.honoured_truncates (topic, partition, tx_id, change_id) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING RETURNING 1',
    [r.topic, r.partition, source?.txId ?? '', source?.lsn ?? ''],
  );
  if (rows.length === 1) return undefined;
  return { errorClass: 'poison', message: `a truncate this partition already honoured (txId ${source?.txId}, lsn ${source?.lsn}) is not honoured again` };
}
