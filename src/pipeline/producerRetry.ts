import { describeError, type TunnelError } from '../errors.js';
import type { Health } from '../instruments/health.js';
import type { Logger } from '../instruments/log.js';
import { telemetry } from '../instruments/telemetry.js';
import { sleep, type Backoff } from '../retry.js';

/** A producer's retryable failure (trigger or logical capture): counted, shown in health and the log, waited out. */
export async function waitToRetry(e: TunnelError, backoff: Backoff, part: { id: string; name: string; health: Health; log: Logger }, signal: AbortSignal): Promise<void> {
  const wait = backoff.next();
  telemetry.retried('producer', e.errorClass);
  part.health.set(part.name, 'waiting', describeError(e));
  part.log.warn({ table: part.id, code: e.code, retryInMs: wait }, `producer waiting: ${describeError(e)}`);
  await sleep(wait, signal);
}
