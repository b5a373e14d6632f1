import type pg from 'pg';

/** One wait query's longest time in the source: shutdown and the producer's other duties come between. */
const queryMs = 250;

/**
 * The idle producer's wait: returns true once the source's snapshot moved past `since` (a transaction
 * committed or began writing), false after `maxMs` or on `signal`. The comparison runs in the source
 * (pgtunnel.wait_for_commit, every `stepMs` while recently busy, backing off when idle), in queries of
 * at most 250 ms; a query that saw nothing is followed by the next wait, not by a read of the change
 * table: an idle producer no longer reads an empty page four times a second.
 */
export async function waitForCommit(client: pg.Client, since: string, stepMs: number, maxMs: number, signal: AbortSignal): Promise<boolean> {
  const deadline = Date.now() + maxMs;
  while (!signal.aborted) {
    const left = deadline - Date.now();
    if (left <= 0) return false;
    const { rows } = await client.query<{ moved: boolean }>('SELECT pgtunnel.wait_for_commit($1, $2, $3) AS moved', [since, stepMs, Math.min(queryMs, left)]);
    if (rows[0]!.moved) return true;
  }
  return false;
}
