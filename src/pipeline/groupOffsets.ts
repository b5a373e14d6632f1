import { classify, describeError } from '../errors.js';
import type { Health } from '../instruments/health.js';
import type { Logger } from '../instruments/log.js';
import { telemetry } from '../instruments/telemetry.js';
import { partitionId } from '../names.js';
import { Backoff, sleep } from '../retry.js';

/** A consumed message that can commit its offset + 1 as the group's offset. */
export interface Committable {
  topic: string;
  partition: number;
  commit(): unknown;
}

/** Consecutive failed commits after which the failure is a warning and the health part is degraded. */
export const warnAfterFailures = 3;
const part = 'group offsets';

/**
 * The group's offsets in Kafka follow the target's, after each commit there, so Kafka's own tools see the
 * group's progress; the target stays the truth. Off the apply path (awaited per partition they held every
 * set 23 ms at p50). Each set asks only for its last offset per partition; FetchReader.commitPast keeps one
 * commit in flight and merges later asks into the next.
 * A failed commit is retried on a timer (an idle partition gets no newer commit to carry it) until a newer
 * one of its partition is asked for; failures are counted, and a run of them is a warning and a degraded
 * health part, so a group lag that Kafka's tools show but the target does not have is explained.
 */
export class GroupOffsets {
  private readonly inFlight = new Set<Promise<void>>();
  /** The newest message whose offset was asked for, per partition. */
  private readonly latest = new Map<string, Committable>();
  private readonly failed = new Map<string, Committable>();
  private failures = 0;
  private readonly backoff = new Backoff(500, 30_000);
  private retryTimer: NodeJS.Timeout | undefined;
  private closed = false;

  private health: Health | undefined;

  constructor(private readonly log: Logger) {}

  /** Asks Kafka to commit past the set; a run of failures shows in `health` (the consumer process's). */
  note(set: Committable[], health?: Health): void {
    this.health ??= health;
    const last = new Map<string, Committable>();
    for (const m of set) last.set(partitionId(m.topic, m.partition), m);
    for (const [key, m] of last) {
      this.latest.set(key, m);
      this.failed.delete(key);
      this.commit(key, m);
    }
  }

  private commit(key: string, m: Committable): void {
    const commit: Promise<void> = Promise.resolve()
      .then(() => m.commit())
      .then(() => this.succeeded(), (err: unknown) => this.failedCommit(key, m, err))
      .finally(() => this.inFlight.delete(commit));
    this.inFlight.add(commit);
  }

  private succeeded(): void {
    if (this.failures >= warnAfterFailures || this.health?.parts[part]?.state === 'degraded') {
      this.log.info({ after: this.failures }, 'group offset commits succeed again');
      this.health?.set(part, 'ok');
    }
    this.failures = 0;
    this.backoff.reset();
  }

  private failedCommit(key: string, m: Committable, err: unknown): void {
    this.failures++;
    telemetry.groupCommitFailed();
    const reason = describeError(classify(err)).split('\n')[0]!;
    this.log.debug({ err: reason, failures: this.failures }, 'group offset commit failed; retried, the target offsets stay authoritative');
    if (this.failures === warnAfterFailures) {
      this.log.warn({ failures: this.failures }, `${this.failures} group offset commits failed in a row (${reason}); retrying — Kafka's tools show the group behind until one succeeds, the target's offsets stay authoritative`);
      this.health?.set(part, 'degraded', `group offsets not committed to Kafka (${this.failures}+ failures in a row): ${reason}`);
    }
    if (this.closed || this.latest.get(key) !== m) return;
    this.failed.set(key, m);
    this.retryTimer ??= setTimeout(() => this.retry(), this.backoff.next());
    this.retryTimer.unref();
  }

  private retry(): void {
    this.retryTimer = undefined;
    if (this.closed) return;
    const again = [...this.failed];
    this.failed.clear();
    for (const [key, m] of again) if (this.latest.get(key) === m) this.commit(key, m);
  }

  /** Waits (bounded) for the commits asked for, so a clean stop leaves the group's offsets current. */
  async settle(ms: number): Promise<void> {
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    if (this.failed.size > 0) this.retry();
    this.closed = true;
    if (this.inFlight.size > 0) await Promise.race([Promise.all(this.inFlight), sleep(ms)]);
  }
}
