import { redact } from './observe/redact.js';

/** Exit codes of the CLI, documented in the README. */
export const exitCodes = {
  ok: 0,
  verifyDifference: 1,
  usage: 2,
  unreachable: 3,
  failure: 4,
} as const;

export type ErrorClass = 'config' | 'unreachable' | 'retryable' | 'fatal' | 'poison';

/** The one error type of pgtunnel: a code, whether retrying can help, and a hint that names the fix. */
export class TunnelError extends Error {
  readonly code: string;
  readonly errorClass: ErrorClass;
  readonly hint?: string;

  constructor(code: string, message: string, options: { errorClass?: ErrorClass; hint?: string; cause?: unknown } = {}) {
    super(message, { cause: options.cause });
    this.name = 'TunnelError';
    this.code = code;
    this.errorClass = options.errorClass ?? 'fatal';
    this.hint = options.hint;
  }

  get retryable(): boolean {
    return this.errorClass === 'retryable' || this.errorClass === 'unreachable';
  }
}

/** SQLSTATEs after which the same work may succeed when tried again. */
const retryableSqlStates = new Set([
  '40001', // serialization_failure
  '40P01', // deadlock_detected
  '55P03', // lock_not_available
  '57P01', // admin_shutdown
  '57P02', // crash_shutdown
  '57P03', // cannot_connect_now
  '53300', // too_many_connections
]);

const networkCodes = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENOTFOUND', 'EAI_AGAIN']);

/**
 * A target error caused by one change's values (data exception 22xxx, integrity violation 23xxx, datatype
 * mismatch): that change is refused, not the connection, so it becomes a dead letter instead of a retry.
 */
export function isRefusedChange(err: unknown): err is Error & { code: string } {
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' && (code.startsWith('22') || code.startsWith('23') || code === '42804');
}

/**
 * SQLSTATEs that concern a whole target table, not one change: the table or a column is missing, a
 * privilege or a unique key for ON CONFLICT is lacking. Dead-lettering record after record would only
 * empty the topic into the DLQ; the table stops with the error instead.
 */
const tableLevelSqlStates = new Set(['42P01', '42703', '42501', '42P10', '3D000', '42883']);

export function isTableLevel(err: unknown): boolean {
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' && tableLevelSqlStates.has(code);
}

export function coerceError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}

/** Sorts any thrown value into one of our classes, so callers decide between retry, dead letter and stop. */
const rejoinIds = new Set(['MEMBER_ID_REQUIRED', 'UNKNOWN_MEMBER_ID', 'REBALANCE_IN_PROGRESS', 'ILLEGAL_GENERATION']);

export function classify(err: unknown): TunnelError {
  if (err instanceof TunnelError) return err;
  const e = coerceError(err) as Error & { code?: unknown; canRetry?: boolean; errors?: unknown[] };
  const code = typeof e.code === 'string' ? e.code : '';
  const message = redact(e.message);
  if (networkCodes.has(code) || /connect|Connection terminated|socket/i.test(e.message) && !code.match(/^[0-9A-Z]{5}$/)) {
    return new TunnelError(code || 'PGT_NETWORK', message, { errorClass: 'unreachable', cause: err });
  }
  if (/^08/.test(code) || retryableSqlStates.has(code)) {
    return new TunnelError(code, message, { errorClass: 'retryable', cause: err });
  }
  if (code === '42P01' || code === '3D000') {
    return new TunnelError(code, message, {
      errorClass: 'fatal',
      hint: 'create the table or database, or fix the name in PGTUNNEL_TABLES / pgtunnel.yaml',
      cause: err,
    });
  }
  if (code === '42501') {
    return new TunnelError(code, message, {
      errorClass: 'config',
      hint: 'connect as the table owner or a role with CREATE on the database and schema and TRIGGER on the table (install), SELECT/DELETE on the change table (run), and INSERT/UPDATE/DELETE on the target table',
      cause: err,
    });
  }
  const kafka = kafkaProtocolIds(e);
  if (kafka.some((id) => id === 'MESSAGE_TOO_LARGE' || id === 'RECORD_LIST_TOO_LARGE')) {
    return new TunnelError('PGT_KAFKA_TOO_LARGE', `Kafka refused a record as too large (${kafka.join(', ')})`, {
      errorClass: 'fatal',
      hint: "raise the topic's max.message.bytes (pgtunnel creates topics with 16 MiB), or exclude the wide column (tables: [{ name: …, exclude: [col] }])",
      cause: err,
    });
  }
  if (kafka.some((id) => /AUTHORIZATION_FAILED|SASL_AUTHENTICATION_FAILED|ILLEGAL_SASL_STATE|UNSUPPORTED_SASL_MECHANISM/.test(id))) {
    return new TunnelError('PGT_KAFKA_DENIED', `Kafka denied the request (${kafka.join(', ')})`, {
      errorClass: 'config',
      hint: 'grant the tunnel\'s principal the ACLs in the README\'s Security section, or fix the Kafka credentials',
      cause: err,
    });
  }
  // A group rebalance: the consumer rejoins and reads on from the target's offsets. @platformatic/kafka 2.x
  // ends the consumer's stream with this error when an offset commit meets a rebalance.
  if (kafka.some((id) => rejoinIds.has(id))) {
    return new TunnelError(code || 'PGT_KAFKA_REBALANCE', message, { errorClass: 'retryable', cause: err });
  }
  if (code.startsWith('PLT_KFK_')) {
    return new TunnelError(code, message, { errorClass: e.canRetry === false ? 'fatal' : 'retryable', cause: err });
  }
  return new TunnelError(code || 'PGT_UNEXPECTED', message, { errorClass: 'fatal', cause: err });
}

/** The Kafka protocol error ids anywhere in an error's chain (cause, aggregated errors). */
export function kafkaProtocolIds(err: unknown, depth = 0): string[] {
  if (typeof err !== 'object' || err === null || depth > 8) return [];
  const e = err as { apiId?: unknown; errors?: unknown[]; cause?: unknown };
  const own = typeof e.apiId === 'string' ? [e.apiId] : [];
  const nested = [...(Array.isArray(e.errors) ? e.errors : []), ...(e.cause ? [e.cause] : [])];
  return [...new Set([...own, ...nested.flatMap((n) => kafkaProtocolIds(n, depth + 1))])];
}

export function describeError(err: unknown): string {
  const e = classify(err);
  return redact(e.hint ? `${e.message}\n  fix: ${e.hint}` : e.message);
}
