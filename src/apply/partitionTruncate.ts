import type pg from 'pg';
import { partitionOf } from '../transport/partitions.js';
import type { TableStatements } from './statements.js';

/** A source TRUNCATE arrives once per partition; each copy clears the target keys of its partition. */
export async function truncatePartitionKeys(client: pg.Client, statements: TableStatements, partitionCount: number, partition: number): Promise<void> {
  const { rows } = await client.query<{ k: string }>(statements.keysSql);
  const mine = rows.map((r) => r.k).filter((k) => partitionOf(k, partitionCount) === partition);
  if (mine.length > 0) await client.query(statements.deleteSql, [`[${mine.join(',')}]`]);
}
