import { classify, describeError, unexpectedStack } from '../errors.js';
import type { Health } from '../instruments/health.js';
import type { Logger } from '../instruments/log.js';
import { telemetry } from '../instruments/telemetry.js';
import { sleep, type Backoff } from '../retry.js';

/**
 * A consumer's failure (per-partition or transactional apply): a retryable one is counted, shown in health and the
 * log, and waited out; any other (a table-wide error or a bug) is logged and thrown, and the consumer stops.
 */
export async function retryOrStop(err: unknown, backoff: Backoff, health: Health, log: Logger, signal: AbortSignal): Promise<void> {
  const e = classify(err);
  if (!e.retryable) {
    log.error({ code: e.code, decision: e.decision, stack: unexpectedStack(e) }, `consumer stopped: ${describeError(e)}`);
    throw e;
  }
  const wait = backoff.next();
  telemetry.retried('consumer', e.errorClass);
  health.set('consumer', 'waiting', describeError(e));
  log.warn({ code: e.code, retryInMs: wait }, `consumer waiting: ${describeError(e)}`);
  await sleep(wait, signal);
}
