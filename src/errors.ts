import { redact } from './redact.js';

/** Exit codes of the CLI, documented in the README. */
export const exitCodes = {
  ok: 0,
  verifyDifference: 1,
  usage: 2,
  unreachable: 3,
  failure: 4,
} as const;

export type ErrorClass = 'config' | 'unreachable' | 'retryable' | 'fatal' | 'poison';

/** Why one change became a dead letter (its DLQ header, telemetry and replay speak these). */
export type DeadLetterClass = 'rule' | 'bad-action' | 'poison' | 'target' | 'missing-key' | 'parked' | 'too-large' | 'unencodable';

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
const rejoinIds = new Set(['MEMBER_ID_REQUIRED', 'UNKNOWN_MEMBER_ID', 'REBALANCE_IN_PROGRESS', 'ILLEGAL_GENERATION', 'FENCED_INSTANCE_ID']);

export function classify(err: unknown): TunnelError {
  if (err instanceof TunnelError) return err;
  const e = coerceError(err) as Error & { code?: unknown; canRetry?: boolean; errors?: unknown[] };
  const code = typeof e.code === 'string' ? e.code : '';
  const message = redact(e.message);
  // Before the network test: a refused login or certificate arrives wrapped in "cannot connect" errors.
  const transport = transportSecurityError(e);
  if (transport) return transport;
  if (networkCodes.has(code) || /connect|Connection terminated|socket/i.test(e.message) && !code.match(/^[0-9A-Z]{5}$/)) {
    return new TunnelError(code || 'PGT_NETWORK', message, { errorClass: 'unreachable', cause: err });
  }
  if (/^08/.test(code) || retryableSqlStates.has(code)) {
    return new TunnelError(code, message, { errorClass: 'retryable', cause: err });
  }
  if (code === '28000' || code === '28P01') {
    return new TunnelError(code, message, {
      errorClass: 'config',
      hint: /no encryption/.test(e.message)
        ? 'the server accepts only TLS connections: add sslmode=verify-full&sslrootcert=/path/to/ca.crt to the URL'
        : "fix the user or password (PGTUNNEL_SOURCE_PASSWORD_FILE / PGTUNNEL_TARGET_PASSWORD_FILE), or allow this host and user in the server's pg_hba.conf",
      cause: err,
    });
  }
  if (code === '42P01' || code === '3D000') {
    return new TunnelError(code, message, {
      errorClass: 'fatal',
      hint: 'create the table or database, or fix the name in PGTUNNEL_TABLES / pgtunnel.yaml',
      cause: err,
    });
  }
  if (code === '42501') return new TunnelError(code, message, { errorClass: 'config', hint: privilegeHint(e.message), cause: err });
  const kafka = kafkaProtocolIds(e);
  if (kafka.some((id) => id === 'MESSAGE_TOO_LARGE' || id === 'RECORD_LIST_TOO_LARGE')) {
    return new TunnelError('PGT_KAFKA_TOO_LARGE', `Kafka refused a record as too large (${kafka.join(', ')})`, {
      errorClass: 'fatal',
      hint: "raise the topic's max.message.bytes (pgtunnel creates topics with 16 MiB), or exclude the wide column (tables: [{ name: …, exclude: [col] }])",
      cause: err,
    });
  }
  if (kafka.some((id) => /AUTHORIZATION_FAILED/.test(id))) {
    return new TunnelError('PGT_KAFKA_DENIED', `Kafka denied the request (${kafka.join(', ')})`, {
      errorClass: 'config',
      hint: 'grant the tunnel\'s principal the ACLs in the README\'s Security section',
      cause: err,
    });
  }
  // A group rebalance: the consumer rejoins and reads on from the target's offsets. @platformatic/kafka 2.x
  // ends the consumer's stream with this error when an offset commit meets a rebalance. FENCED_INSTANCE_ID:
  // another process took this consumer's groupInstanceId; it claims another one as it rejoins.
  if (kafka.some((id) => rejoinIds.has(id))) {
    return new TunnelError(code || 'PGT_KAFKA_REBALANCE', message, { errorClass: 'retryable', cause: err });
  }
  if (code.startsWith('PLT_KFK_')) {
    return new TunnelError(code, message, { errorClass: e.canRetry === false ? 'fatal' : 'retryable', cause: err });
  }
  return new TunnelError(code || 'PGT_UNEXPECTED', message, { errorClass: 'fatal', cause: err });
}

/**
 * The fix for a `permission denied` PostgreSQL reports from the middle of work (`pgtunnel run` checks the
 * runtime privileges at start and names the exact GRANTs; this covers what only shows later).
 */
export function privilegeHint(message: string): string {
  const see = "README: Security → Least privileges lists each role's exact GRANTs";
  const parameter = /permission denied to set parameter "([^"]+)"/.exec(message);
  if (parameter) return `GRANT SET ON PARAMETER ${parameter[1]} TO <role>; (${see})`;
  const owner = /must be owner of (table|relation|schema|function|database) (\S+)/.exec(message);
  if (owner) return `only the owner of ${owner[1]} ${owner[2]} may do this: connect as the installer role, or GRANT <owner of ${owner[2]}> TO <role>; (${see})`;
  const object = /permission denied for (table|schema|database|sequence|function) (\S+)/.exec(message);
  if (object) return `GRANT the privilege this step needs ON ${object[1].toUpperCase()} ${object[2]} TO <role>; (${see})`;
  return see;
}

/** Codes of Node's TLS layer: the peer's certificate was not trusted, or ours was refused, or no TLS was spoken. */
const untrustedPeer = /^(SELF_SIGNED_CERT_IN_CHAIN|DEPTH_ZERO_SELF_SIGNED_CERT|UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT(_LOCALLY)?|CERT_HAS_EXPIRED|CERT_NOT_YET_VALID|CERT_UNTRUSTED|ERR_TLS_CERT_ALTNAME_INVALID)$/;
const refusedByPeer = /^ERR_SSL_.*ALERT_(BAD_CERTIFICATE|CERTIFICATE_REQUIRED|UNKNOWN_CA|CERTIFICATE_UNKNOWN|HANDSHAKE_FAILURE)$/;
const noTls = /^ERR_SSL_(WRONG_VERSION_NUMBER|PACKET_LENGTH_TOO_LONG|RECORD_LAYER_FAILURE)$/;

/** A failed Kafka SASL login, or a TLS handshake that cannot succeed as configured: a config error naming the fix. */
function transportSecurityError(err: Error): TunnelError | undefined {
  const codes = errorCodes(err);
  const kafka = codes.some((c) => c.startsWith('PLT_KFK_'));
  const ids = kafka ? kafkaProtocolIds(err) : [];
  const saslIds = ids.filter((id) => /SASL_AUTHENTICATION_FAILED|ILLEGAL_SASL_STATE|UNSUPPORTED_SASL_MECHANISM/.test(id));
  if (kafka && (saslIds.length > 0 || codes.includes('PLT_KFK_AUTHENTICATION'))) {
    return new TunnelError('PGT_KAFKA_AUTH', `Kafka refused the SASL login (${saslIds.join(', ') || 'authentication failed'})`, {
      errorClass: 'config',
      hint: 'fix kafkaSasl (PGTUNNEL_KAFKA_SASL_MECHANISM, _USERNAME, _PASSWORD or _PASSWORD_FILE): the mechanism must be one the broker enables (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512) and the user must exist for it (kafka-configs --alter --add-config SCRAM-SHA-512=[password=…] --entity-type users --entity-name …)',
      cause: err,
    });
  }
  const service = kafka ? 'Kafka' : 'PostgreSQL';
  const untrusted = codes.find((c) => untrustedPeer.test(c));
  if (untrusted) {
    return new TunnelError('PGT_TLS_UNTRUSTED', `the ${service} server's TLS certificate was not accepted (${untrusted})`, {
      errorClass: 'config',
      hint: kafka
        ? "set kafkaTls.ca (PGTUNNEL_KAFKA_TLS_CA) to the PEM file of the CA that signed the broker's certificate, and kafkaTls.serverName when the certificate names another host than kafkaBrokers"
        : "add sslrootcert=/path/to/ca.crt (the CA that signed the server's certificate) to the URL, with sslmode=verify-full; the URL's host must be a name the certificate carries",
      cause: err,
    });
  }
  const refused = codes.find((c) => refusedByPeer.test(c));
  if (refused) {
    return new TunnelError('PGT_TLS_REFUSED', `the ${service} server refused the TLS handshake (${refused})`, {
      errorClass: 'config',
      hint: kafka
        ? 'the broker wants a client certificate it trusts: set kafkaTls.cert and kafkaTls.key (PGTUNNEL_KAFKA_TLS_CERT, _KEY) to PEM files signed by a CA in its truststore'
        : 'the server wants a client certificate it trusts: add sslcert=/path/client.crt&sslkey=/path/client.key to the URL',
      cause: err,
    });
  }
  const plain = codes.find((c) => noTls.test(c));
  if (plain) {
    return new TunnelError('PGT_TLS_NOT_SPOKEN', `the ${service} server did not answer in TLS (${plain})`, {
      errorClass: 'config',
      hint: kafka ? 'this listener is PLAINTEXT or SASL_PLAINTEXT: drop kafkaTls, or use the broker\'s SSL or SASL_SSL port' : 'drop sslmode from the URL, or enable ssl on the server',
      cause: err,
    });
  }
  return undefined;
}

/** An error and every error in its chain (cause, aggregated errors), as @platformatic/kafka nests them. */
function errorChain(err: unknown, depth = 0): Record<string, unknown>[] {
  if (typeof err !== 'object' || err === null || depth > 8) return [];
  const e = err as { errors?: unknown[]; cause?: unknown };
  const nested = [...(Array.isArray(e.errors) ? e.errors : []), ...(e.cause ? [e.cause] : [])];
  return [err as Record<string, unknown>, ...nested.flatMap((n) => errorChain(n, depth + 1))];
}

const stringsAt = (err: unknown, field: string) => [...new Set(errorChain(err).map((e) => e[field]).filter((v): v is string => typeof v === 'string'))];

/** Every `code` in an error's chain. */
function errorCodes(err: unknown): string[] {
  return stringsAt(err, 'code');
}

/** The Kafka protocol error ids anywhere in an error's chain. */
export function kafkaProtocolIds(err: unknown): string[] {
  return stringsAt(err, 'apiId');
}

export function describeError(err: unknown): string {
  const e = classify(err);
  return redact(e.hint ? `${e.message}\n  fix: ${e.hint}` : e.message);
}
