import diagnostics from 'node:diagnostics_channel';
import type { DeadLetterClass } from '../errors.js';

/**
 * What the running tunnel counts, published on named `node:diagnostics_channel` channels: every part calls
 * `telemetry.captured(...)` etc.; the Prometheus metrics (metrics.ts), the dashboard's live history
 * (liveHistory.ts) or any other code in the process subscribe by channel name. With nobody subscribed a
 * call costs one `hasSubscribers` check: no event object is built.
 */

export interface RecentDeadLetter {
  time: string;
  table: string;
  errorClass: DeadLetterClass;
  rule?: string;
  key?: string;
  message: string;
}

/** Each channel's name and the message it carries. */
export interface TelemetryEvents {
  'pgtunnel:captured': { table: string; ops: Record<string, number> };
  /** Changes a row filter excluded, by op (c: dropped, u: published as a delete). */
  'pgtunnel:filtered': { table: string; ops: Record<string, number> };
  'pgtunnel:produced': { table: string; n: number; pageSize?: number };
  'pgtunnel:checkpoint': { table: string };
  'pgtunnel:snapshot': { table: string; done: number; total: number | null };
  'pgtunnel:applied': { table: string; op: string; n: number };
  /** Source commit to target commit, per streamed change (snapshot rows have no capture time). */
  'pgtunnel:latencies': { latenciesMs: number[] };
  'pgtunnel:applied-set': { size: number };
  'pgtunnel:group-commit-failed': Record<string, never>;
  'pgtunnel:dead-lettered': RecentDeadLetter;
  'pgtunnel:retried': { part: string; errorClass: string };
  /** A new partition assignment of this process's consumer: a rebalance. */
  'pgtunnel:assigned': { instanceId: string; assigned: Map<string, number[]>; generation: number };
  /** A table's capture phase as its producer reports it (`snapshot`, then `streaming`). */
  'pgtunnel:phase': { table: string; phase: string };
  /** A producer's hold on its table's lock: `standby` while another instance publishes, then `leading`. */
  'pgtunnel:leadership': { table: string; state: 'standby' | 'leading' };
  /** A change table measured: changes waiting to be published, its size, and how long its oldest change has waited. */
  'pgtunnel:change-table': ChangeTableSize;
  /** A part runs, but less well than it could until a user acts (the warning's words, with the fix). */
  'pgtunnel:degraded': { part: string; table?: string; reason: string };
  /** An incremental snapshot (a signal) of a table: its rows published so far, and its state. */
  'pgtunnel:backfill': { table: string; signalId: string; done: number; total: number | null; state: string };
  /** One page's, set's or wait's stage durations in milliseconds (one event for several stages). */
  'pgtunnel:stages': { ms: Partial<Record<Stage, number>> };
  /** A logical capture's replication slot measured: WAL it retains and WAL not yet confirmed. */
  'pgtunnel:slot': SlotSize;
}

export interface SlotSize {
  table: string;
  slot: string;
  retainedWalBytes: number;
  lagBytes: number;
  /** Invalidated: the source removed WAL it needed. */
  lost: boolean;
}

export interface ChangeTableSize {
  table: string;
  rows: number;
  bytes: number;
  /** Seconds since the oldest waiting change was captured; null when none waits. */
  oldestSeconds: number | null;
}

/**
 * The stages of a change, each timed so a slow change is attributed without debug logs: the producer's
 * poll (waiting in the source for a commit), wait (logical capture: the page's oldest change from its source
 * commit until its page is formed), read (a page or chunk from the source), publish (until Kafka
 * acknowledged it), checkpoint (the source state saved); the consumer's queue (fetched until taken), decode
 * (bytes to rows or COPY lines), apply (the writes in the target transaction), commit.
 */
export const stages = ['poll', 'wait', 'read', 'publish', 'checkpoint', 'queue', 'decode', 'apply', 'commit'] as const;
export type Stage = (typeof stages)[number];

export type TelemetryChannel = keyof TelemetryEvents;

const channel = <K extends TelemetryChannel>(name: K) => diagnostics.channel(name);
const channels = {
  captured: channel('pgtunnel:captured'),
  filtered: channel('pgtunnel:filtered'),
  produced: channel('pgtunnel:produced'),
  checkpoint: channel('pgtunnel:checkpoint'),
  snapshot: channel('pgtunnel:snapshot'),
  applied: channel('pgtunnel:applied'),
  latencies: channel('pgtunnel:latencies'),
  appliedSet: channel('pgtunnel:applied-set'),
  groupCommitFailed: channel('pgtunnel:group-commit-failed'),
  deadLettered: channel('pgtunnel:dead-lettered'),
  retried: channel('pgtunnel:retried'),
  assigned: channel('pgtunnel:assigned'),
  phase: channel('pgtunnel:phase'),
  leadership: channel('pgtunnel:leadership'),
  changeTable: channel('pgtunnel:change-table'),
  degraded: channel('pgtunnel:degraded'),
  backfill: channel('pgtunnel:backfill'),
  stages: channel('pgtunnel:stages'),
  slot: channel('pgtunnel:slot'),
};

/** Every channel's name: a worker thread forwards them all to the main thread (pipeline/sideThread.ts). */
export const telemetryChannels = Object.values(channels).map((c) => c.name as TelemetryChannel);

/** Publishes an event that another thread published (forwarded as a message): subscribers here see it as their own. */
export function republish<K extends TelemetryChannel>(name: K, event: TelemetryEvents[K]): void {
  const target = diagnostics.channel(name);
  if (target.hasSubscribers) target.publish(event);
}

/** Subscribes to one channel; returns the unsubscribe. */
export function subscribe<K extends TelemetryChannel>(name: K, on: (event: TelemetryEvents[K]) => void): () => void {
  const listener = (message: unknown) => on(message as TelemetryEvents[K]);
  diagnostics.subscribe(name, listener);
  return () => void diagnostics.unsubscribe(name, listener);
}

/** The publishing side: one method per channel, each a no-op while nobody listens. */
export class Telemetry {
  captured(table: string, ops: Record<string, number>): void {
    if (channels.captured.hasSubscribers) channels.captured.publish({ table, ops });
  }

  filtered(table: string, ops: Record<string, number>): void {
    if (channels.filtered.hasSubscribers) channels.filtered.publish({ table, ops });
  }

  produced(table: string, n: number, pageSize?: number): void {
    if (channels.produced.hasSubscribers) channels.produced.publish({ table, n, pageSize });
  }

  checkpoint(table: string): void {
    if (channels.checkpoint.hasSubscribers) channels.checkpoint.publish({ table });
  }

  backfill(table: string, signalId: string, done: number, total: number | null, state: string): void {
    if (channels.backfill.hasSubscribers) channels.backfill.publish({ table, signalId, done, total, state });
  }

  snapshot(table: string, done: number, total: number | null): void {
    if (channels.snapshot.hasSubscribers) channels.snapshot.publish({ table, done, total });
  }

  applied(table: string, op: string, n: number): void {
    if (channels.applied.hasSubscribers) channels.applied.publish({ table, op, n });
  }

  observeLatencies(latenciesMs: number[]): void {
    if (channels.latencies.hasSubscribers) channels.latencies.publish({ latenciesMs });
  }

  appliedSet(size: number): void {
    if (channels.appliedSet.hasSubscribers) channels.appliedSet.publish({ size });
  }

  groupCommitFailed(): void {
    if (channels.groupCommitFailed.hasSubscribers) channels.groupCommitFailed.publish({});
  }

  deadLettered(letter: RecentDeadLetter): void {
    if (channels.deadLettered.hasSubscribers) channels.deadLettered.publish(letter);
  }

  retried(part: string, errorClass: string): void {
    if (channels.retried.hasSubscribers) channels.retried.publish({ part, errorClass });
  }

  assigned(instanceId: string, assigned: Map<string, number[]>, generation: number): void {
    if (channels.assigned.hasSubscribers) channels.assigned.publish({ instanceId, assigned, generation });
  }

  phase(table: string, phase: string): void {
    if (channels.phase.hasSubscribers) channels.phase.publish({ table, phase });
  }

  leadership(table: string, state: 'standby' | 'leading'): void {
    if (channels.leadership.hasSubscribers) channels.leadership.publish({ table, state });
  }

  changeTable(size: ChangeTableSize): void {
    if (channels.changeTable.hasSubscribers) channels.changeTable.publish(size);
  }

  degraded(part: string, reason: string, table?: string): void {
    if (channels.degraded.hasSubscribers) channels.degraded.publish({ part, table, reason });
  }

  stages(ms: Partial<Record<Stage, number>>): void {
    if (channels.stages.hasSubscribers) channels.stages.publish({ ms });
  }

  /** Whether anyone listens for stage timings (a caller may skip taking the time). */
  get timingStages(): boolean {
    return channels.stages.hasSubscribers;
  }

  slot(size: SlotSize): void {
    if (channels.slot.hasSubscribers) channels.slot.publish(size);
  }
}

/** The process's publisher: the parts call it; subscribers decide what is kept. */
export const telemetry = new Telemetry();
