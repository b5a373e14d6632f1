import type pg from 'pg';

/**
 * Records that this partition honours this truncate, in the apply transaction; false when it already did.
 * Rows older than 30 days go: by then the source has pruned its record of the truncate (7 days after it
 * was published), so a copy is refused as unrecorded anyway.
 */
export async function firstHonour(client: pg.Client, topic: string, partition: number, txId: string | null, changeId: string | null): Promise<boolean> {
  await client.query("DELETE FROM pgtunnel.honoured_truncates WHERE honoured_at < now() - interval '30 days'");
  const { rows } = await client.query(
    'INSERT INTO pgtunnel.honoured_truncates (topic, partition, tx_id, change_id) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING RETURNING 1',
    [topic, partition, txId ?? '', changeId ?? ''],
  );
  return rows.length === 1;
}
