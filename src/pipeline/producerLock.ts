import type pg from 'pg';
import { sqlState } from '../errors.js';
import { lockNames, producerApplicationName } from '../names.js';

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

/** The session holding a table's producer lock, as pg_locks and pg_stat_activity show it. */
export interface LockHolder {
  pid: number;
  applicationName: string | null;
  clientAddr: string | null;
  user: string | null;
  /** Its application_name is this table's producer's: a live pgtunnel leader (a session ends with its process). */
  pgtunnel: boolean;
}

/**
 * Who holds the table's producer lock now, or undefined when nobody does. Without pg_read_all_stats a
 * role sees another role's client address as NULL; the pid is always shown.
 */
export async function producerLockHolder(client: pg.Client, table: string): Promise<LockHolder | undefined> {
  // a two-key advisory lock: classid and objid hold the keys (as oid), objsubid is 2
  const { rows } = await client.query<{ pid: number; application_name: string | null; client_addr: string | null; usename: string | null }>(
    `SELECT l.pid, a.application_name, host(a.client_addr) AS client_addr, a.usename
     FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
     WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
       AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
       AND l.classid = hashtext($1)::oid AND l.objid = hashtext($2)::oid AND l.pid <> pg_backend_pid()
     LIMIT 1`,
    [lockNames.producer, table],
  );
  const r = rows[0];
  if (!r) return undefined;
  const name = r.application_name;
  // application_name is cut at 63 bytes: a long table id's name arrives as a prefix
  const pgtunnel = name !== null && name.length > 0 && producerApplicationName(table).startsWith(name) && name.startsWith(producerApplicationName(''));
  return { pid: r.pid, applicationName: name, clientAddr: r.client_addr, user: r.usename, pgtunnel };
}

/**
 * Waits until this session holds the table's producer lock; only its holder publishes. A standby waits in
 * a blocking `pg_advisory_lock` (in lock_timeout slices, so a stop is seen within a second), which the
 * server grants the moment the leader's session ends — polling added up to its interval to each takeover.
 * After each slice `standingBy` hears who holds the lock (a pgtunnel leader, or a squatter). Returns false
 * when stopped first.
 */
export async function becomeLeader(client: pg.Client, table: string, signal: AbortSignal, standingBy: (holder: LockHolder | undefined) => Promise<void>): Promise<boolean> {
  await guardSession(client);
  if (await tryProducerLock(client, table)) return true;
  await standingBy(await producerLockHolder(client, table));
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
    await standingBy(await producerLockHolder(client, table));
  }
  return false;
}
