import type { Consumer } from '@platformatic/kafka';
import type pg from 'pg';
import { TunnelError } from '../errors.js';
import { groupInstanceId, groupSlotLock, lockNames } from '../names.js';
import type { Logger } from '../instruments/log.js';
import { telemetry } from '../instruments/telemetry.js';

/** How many consumers of one group may claim an instance id slot. */
const maxSlots = 1000;

/**
 * The consumer's static membership in its group (Kafka's groupInstanceId): a consumer restarted with the
 * same id gets its partitions back at once, where a new member waits for the dead one's session timeout.
 * Configured ids are the user's to keep unique; otherwise the lowest free slot `<groupId>-<n>`, held as an
 * advisory lock on the consumer's target session: unique across machines (they share the target), and the
 * slot a killed process leaves is the one its restart (or the next process) takes.
 */
export async function claimInstanceId(target: pg.Client, groupId: string, configured: string | undefined): Promise<string> {
  if (configured) return configured;
  for (let slot = 0; slot < maxSlots; slot++) {
    const { rows } = await target.query<{ ok: boolean }>('SELECT pg_try_advisory_lock(hashtext($1), hashtext($2)) AS ok', [lockNames.consumer, groupSlotLock(groupId, slot)]);
    if (rows[0]!.ok) return groupInstanceId(groupId, slot);
  }
  throw new TunnelError('PGT_GROUP_FULL', `${maxSlots} consumers of group ${groupId} already run against this target`, {
    errorClass: 'retryable',
    hint: 'stop consumers you do not need (a group uses at most as many as the topics have partitions), or set groupInstanceId',
  });
}

type Assignment = Map<string, number[]>;

function assignmentOf(consumer: Consumer<any, any, any, any>): Assignment {
  const out: Assignment = new Map();
  for (const a of consumer.assignments ?? []) if (a.partitions.length > 0) out.set(a.topic, [...a.partitions].sort((x, y) => x - y));
  return out;
}

/** `topic[0,2]` per topic, or `none`. */
function describe(assignment: Assignment): string {
  return assignment.size === 0 ? 'none' : [...assignment].map(([topic, partitions]) => `${topic}[${partitions.join(',')}]`).join(' ');
}

function minus(a: Assignment, b: Assignment): Assignment {
  const out: Assignment = new Map();
  for (const [topic, partitions] of a) {
    const left = partitions.filter((p) => !b.get(topic)?.includes(p));
    if (left.length > 0) out.set(topic, left);
  }
  return out;
}

/**
 * Logs and counts every change of the consumer's assignment (a rebalance), from the client's group events.
 * The partitions a consumer lost may still be in its current set: the target's stored offsets make the
 * new owner skip what that set applies, so a rebalance never applies a record twice.
 */
export function watchAssignment(consumer: Consumer<any, any, any, any>, instanceId: string, log: Logger): void {
  let current: Assignment = new Map();
  const update = (next: Assignment = assignmentOf(consumer)) => {
    const assigned = minus(next, current);
    const revoked = minus(current, next);
    if (assigned.size === 0 && revoked.size === 0) return;
    current = next;
    telemetry.assigned(instanceId, next, consumer.generationId);
    log.info({ instanceId, generation: consumer.generationId, assigned: describe(assigned), revoked: describe(revoked), partitions: describe(next) },
      `consumer ${instanceId} partitions assigned: ${describe(assigned)}; revoked: ${describe(revoked)}; now: ${describe(next)}`);
  };
  consumer.on('consumer:group:join', () => update());
  consumer.on('consumer:group:rebalance', () => update());
  consumer.on('consumer:group:leave', () => update(new Map()));
}
