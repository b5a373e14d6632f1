import type pg from 'pg';
import { classify } from '../errors.js';
import type { Logger } from '../instruments/log.js';
import { telemetry } from '../instruments/telemetry.js';

let warned = false;
const notReplica = 'the target role may not set session_replication_role: foreign keys are checked per applied set, so a child row that arrives before its parent becomes a dead letter — fix: GRANT SET ON PARAMETER session_replication_role TO <apply role>';

/**
 * Apply writes as PostgreSQL's own logical replication does: `session_replication_role = replica`, so the
 * target's foreign keys and ordinary triggers do not fire. Tables travel on different topics, so a child
 * row can arrive before its parent; the source already enforced the constraint, and the target converges
 * to the source's state. Needs superuser or (PostgreSQL 15+) `GRANT SET ON PARAMETER
 * session_replication_role TO <role>`; without it, a child that arrives first is refused and becomes a
 * dead letter to replay.
 */
export async function applySession(target: pg.Client, log: Logger): Promise<boolean> {
  try {
    await target.query('SET session_replication_role = replica');
    return true;
  } catch (err) {
    if (classify(err).code !== '42501') throw err;
    // the log says it once per process; the event each time, for whoever watches this tunnel
    telemetry.degraded('apply session', notReplica);
    if (!warned) {
      warned = true;
      log.warn(notReplica);
    }
    return false;
  }
}
