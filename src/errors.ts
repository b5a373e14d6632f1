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

export function coerceError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}

/** Sorts any thrown value into one of our classes, so callers decide between retry, dead letter and stop. */
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
  if (code.startsWith('PLT_KFK_')) {
    return new TunnelError(code, message, { errorClass: e.canRetry === false ? 'fatal' : 'retryable', cause: err });
  }
  return new TunnelError(code || 'PGT_UNEXPECTED', message, { errorClass: 'fatal', cause: err });
}

export function describeError(err: unknown): string {
  const e = classify(err);
  return redact(e.hint ? `${e.message}\n  fix: ${e.hint}` : e.message);
}
