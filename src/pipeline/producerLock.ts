import type pg from 'pg';
import { sqlState } from '../errors.js';
import { lockNames } from '../names.js';

/** How long one blocking wait for the lock lasts before the standby looks at its stop signal again. */
const waitSliceMs = 1000;

const lockArgs = 'hashtext($1), hashtext($2)';

/**
 * The server ends the session of a client it cannot reach (a dead machine, a cut network) after a few
 * seconds of silence instead of the kernel's two hours, and checks the client during long statements:
 * the table's lock is then free for the standby in seconds. A killed process on a live machine closes its
 * socket, and its lock is free at once.
 */
async function guardSession(client: pg.Client): Promise<void> {
  await client.query(`SELECT set_config('tcp_keepalives_idle', '2', false), set_config('tcp_keepalives_interval', '1', false),
    set_config('tcp_keepalives_count', '2', false),
    CASE WHEN current_setting('server_version_num')::int >= 140000 THEN set_config('client_connection_check_interval', '1000', false) END`);
}

/** Takes the table's producer lock if no producer holds it; held until the session ends. */
export async function tryProducerLock(client: pg.Client, table: string): Promise<boolean> {
  const { rows } = await client.query<{ ok: boolean }>(`SELECT pg_try_advisory_lock(${lockArgs}) AS ok`, [lockNames.producer, table]);
  return rows[0]!.ok;
}

/**
 * Waits until this session holds the table's producer lock; only its holder publishes. A standby waits in
 * a blocking `pg_advisory_lock` (in lock_timeout slices, so a stop is seen within a second), which the
 * server grants the moment the leader's session ends — polling added up to its interval to each takeover.
 * Returns false when stopped first.
 */
export async function becomeLeader(client: pg.Client, table: string, signal: AbortSignal, standingBy: () => Promise<void>): Promise<boolean> {
  await guardSession(client);
  if (await tryProducerLock(client, table)) return true;
  await standingBy();
  await client.query(`SET lock_timeout = ${waitSliceMs}`);
  while (!signal.aborted) {
    try {
      await client.query(`SELECT pg_advisory_lock(${lockArgs})`, [lockNames.producer, table]);
      await client.query('RESET lock_timeout');
      return true;
    } catch (err) {
      // 55P03: the slice ended with the lock still held by the leader
      if (sqlState(err) !== '55P03') throw err;
    }
  }
  return false;
}
