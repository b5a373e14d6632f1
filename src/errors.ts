import pg from 'pg';
import { capText, redact } from './redact.js';

/** Exit codes of the CLI, documented in docs/cli.md. */
export const exitCodes = {
  ok: 0,
  verifyDifference: 1,
  usage: 2,
  unreachable: 3,
  failure: 4,
} as const;

export type ErrorClass = 'config' | 'unreachable' | 'retryable' | 'fatal' | 'poison';

/** What the tunnel does after an error: try again, send the one record to the DLQ, stop its table, or stop the process. */
export type Decision = 'retry' | 'dead-letter' | 'stop-table' | 'stop-process';

/** Why one change became a dead letter (its DLQ header, telemetry and replay speak these). */
export type DeadLetterClass = 'rule' | 'bad-action' | 'poison' | 'target' | 'missing-key' | 'parked' | 'too-large' | 'unencodable';

/** The one error type of pgtunnel: a code, whether retrying can help, and a hint that names the fix. */
export class TunnelError extends Error {
  readonly code: string;
  readonly errorClass: ErrorClass;
  readonly decision: Decision;
  readonly hint?: string;
  /** In no policy table: a bug, or a case pgtunnel does not know; it stops the process with its stack. */
  readonly unexpected: boolean;

  constructor(code: string, message: string, options: { errorClass?: ErrorClass; decision?: Decision; hint?: string; cause?: unknown; unexpected?: boolean } = {}) {
    super(message, { cause: options.cause });
    this.name = 'TunnelError';
    this.code = code;
    this.errorClass = options.errorClass ?? 'fatal';
    this.hint = options.hint;
    this.decision = options.decision ?? decisionOfClass[this.errorClass];
    this.unexpected = options.unexpected ?? false;
  }

  get retryable(): boolean {
    return this.decision === 'retry';
  }
}

const decisionOfClass: Record<ErrorClass, Decision> = { retryable: 'retry', unreachable: 'retry', poison: 'dead-letter', config: 'stop-process', fatal: 'stop-process' };

interface Policy {
  decision: Decision;
  errorClass: ErrorClass;
  hint?: string;
}

const retry: Policy = { decision: 'retry', errorClass: 'retryable' };
/** One change's values: the target refused that change, not the connection; bisection finds it and it becomes a dead letter. */
const refused: Policy = { decision: 'dead-letter', errorClass: 'fatal' };
/** The whole target table is unusable (dead-lettering record after record would only empty the topic into the DLQ). */
const tableWide: Policy = { decision: 'stop-table', errorClass: 'fatal' };
const missingRelation: Policy = { ...tableWide, hint: 'create the table or database, or fix the name in PGTUNNEL_TABLES / pgtunnel.yaml' };
const login: Policy = { decision: 'stop-process', errorClass: 'config' };

/**
 * THE error policy, by SQLSTATE (five characters) or SQLSTATE class (two): the most specific entry wins;
 * a code in none of them is unexpected and stops the process. Record-level bisection (dead letters) is
 * allowed only for the refused changes here and for poison records.
 */
export const sqlStatePolicy: Record<string, Policy> = {
  '08': retry, // connection exception
  '40001': retry, // serialization_failure
  '40P01': retry, // deadlock_detected
  '55P03': retry, // lock_not_available
  '55006': retry, // object_in_use: a replication slot a dead producer's walsender still holds for a moment
  '57P01': retry, // admin_shutdown
  '57P02': retry, // crash_shutdown
  '57P03': retry, // cannot_connect_now
  '53300': retry, // too_many_connections
  '22': refused, // data exception: a value the column cannot hold
  '23': refused, // integrity constraint violation
  '42804': refused, // datatype_mismatch
  '42P01': missingRelation, // undefined_table
  '3D000': missingRelation, // invalid_catalog_name
  '42703': tableWide, // undefined_column
  '42P10': tableWide, // invalid_column_reference (no unique key for ON CONFLICT)
  '42883': tableWide, // undefined_function
  '42501': { ...tableWide, errorClass: 'config' }, // insufficient_privilege (hint from the message)
  // read_only_sql_transaction: a standby, or a server turned read-only under a running tunnel
  '25006': { decision: 'stop-process', errorClass: 'config', hint: 'the server is read-only (a standby, or default_transaction_read_only = on): point the URL at the primary' },
  '28000': login, // invalid_authorization_specification
  '28P01': login, // invalid_password
};

/** By Kafka protocol error id, anywhere in the chain; ids not here follow the client's own `canRetry`. */
export const kafkaIdPolicy: Record<string, Policy> = {
  // a group rebalance: the consumer rejoins and reads on from the target's offsets (@platformatic/kafka 2.x
  // ends the stream with it when an offset commit meets one); FENCED_INSTANCE_ID: another process took
  // this consumer's groupInstanceId, it claims another one as it rejoins
  MEMBER_ID_REQUIRED: retry,
  UNKNOWN_MEMBER_ID: retry,
  REBALANCE_IN_PROGRESS: retry,
  ILLEGAL_GENERATION: retry,
  FENCED_INSTANCE_ID: retry,
  BROKER_NOT_AVAILABLE: { decision: 'retry', errorClass: 'unreachable' }, // a broker restarting
  // the broker lost the idempotent producer's session (a restart, expired state): BatchSender retries in a new
  // session only when no later send is queued behind; otherwise the producer starts over from its checkpoint
  UNKNOWN_PRODUCER_ID: retry,
  OUT_OF_ORDER_SEQUENCE_NUMBER: retry,
  MESSAGE_TOO_LARGE: { decision: 'stop-process', errorClass: 'fatal' },
  RECORD_LIST_TOO_LARGE: { decision: 'stop-process', errorClass: 'fatal' },
  TOPIC_AUTHORIZATION_FAILED: login,
  GROUP_AUTHORIZATION_FAILED: login,
  CLUSTER_AUTHORIZATION_FAILED: login,
  TRANSACTIONAL_ID_AUTHORIZATION_FAILED: login,
};

/** Network failures of Node's sockets: the peer is down or unreachable. */
const networkCodes = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENOTFOUND', 'EAI_AGAIN']);

/** The SQLSTATE PostgreSQL sent (node-postgres's DatabaseError), also when a TunnelError carries that error. */
export function sqlState(err: unknown): string | undefined {
  const cause = err instanceof TunnelError ? err.cause : err;
  return cause instanceof pg.DatabaseError ? cause.code : undefined;
}

/** The policy entry of a SQLSTATE, most specific first. */
function sqlStateEntry(code: string): Policy | undefined {
  if (!/^[0-9A-Z]{5}$/.test(code)) return undefined;
  return sqlStatePolicy[code] ?? sqlStatePolicy[code.slice(0, 2)];
}

/**
 * A target error caused by one change's values (data exception 22xxx, integrity violation 23xxx, datatype
 * mismatch): that change is refused, not the connection, so it becomes a dead letter instead of a retry.
 */
export function isRefusedChange(err: unknown): err is Error & { code: string } {
  const code = sqlState(err);
  return code !== undefined && sqlStateEntry(code) === refused;
}

export function isTableLevel(err: unknown): boolean {
  const code = sqlState(err);
  return code !== undefined && sqlStateEntry(code)?.decision === 'stop-table';
}

/** What to do after `err` (see the tables above). */
export function decide(err: unknown): Decision {
  return classify(err).decision;
}

export function coerceError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}

/**
 * The SQLSTATE of an error or of the first error in its chain that has one: a PostgreSQL error wrapped by
 * another layer is decided by what PostgreSQL said.
 */
function sqlStateIn(err: unknown): { code: string; at: Error & { code: string } } | undefined {
  for (const e of errorChain(err)) {
    if (typeof e.code === 'string' && sqlStateEntry(e.code)) return { code: e.code, at: e as unknown as Error & { code: string } };
  }
  return undefined;
}

/** Sorts any thrown value into one of our classes and decisions (retry, dead letter, stop table, stop process). */
export function classify(err: unknown): TunnelError {
  if (err instanceof TunnelError) return err;
  const e = coerceError(err) as Error & { code?: unknown };
  const code = typeof e.code === 'string' ? e.code : '';
  // a target error can echo a whole forged value: cut before the work on it
  const message = redact(capText(e.message));
  // Before the network test: a refused login or certificate arrives wrapped in "cannot connect" errors.
  const transport = transportSecurityError(e);
  if (transport) return transport;
  const chainCodes = errorCodes(e);
  if (chainCodes.some((c) => networkCodes.has(c)) || (/connect|Connection terminated|socket/i.test(e.message) && !/^[0-9A-Z]{5}$/.test(code))) {
    return new TunnelError(code || 'PGT_NETWORK', message, { errorClass: 'unreachable', cause: err });
  }
  const sql = sqlStateIn(e);
  if (sql) {
    const policy = sqlStateEntry(sql.code)!;
    const hint = sql.code === '42501' ? privilegeHint(sql.at.message) : login === policy ? loginHint(sql.at.message) : policy.hint;
    return new TunnelError(sql.code, sql.at === e ? message : `${message}: ${redact(sql.at.message)}`, { ...policy, hint, cause: err });
  }
  return kafkaError(e, message) ?? new TunnelError(code || 'PGT_UNEXPECTED', message, { errorClass: 'fatal', cause: err, unexpected: true });
}

function loginHint(message: string): string {
  return /no encryption/.test(message)
    ? 'the server accepts only TLS connections: add sslmode=verify-full&sslrootcert=/path/to/ca.crt to the URL'
    : "fix the user or password (PGTUNNEL_SOURCE_PASSWORD_FILE / PGTUNNEL_TARGET_PASSWORD_FILE), or allow this host and user in the server's pg_hba.conf";
}

/**
 * A @platformatic/kafka error: by protocol id (table above), then by the client's `canRetry` over the whole
 * chain (an aggregate's own `canRetry` is unset, its members say it). Timeouts and network errors retry.
 */
function kafkaError(e: Error, message: string): TunnelError | undefined {
  const chain = errorChain(e);
  if (!chain.some((c) => typeof c.code === 'string' && c.code.startsWith('PLT_KFK_'))) return undefined;
  const ids = kafkaProtocolIds(e);
  const known = ids.map((id) => [id, kafkaIdPolicy[id]] as const).filter((x): x is readonly [string, Policy] => x[1] !== undefined);
  const own = (e as { code?: unknown }).code;
  const code = typeof own === 'string' ? own : '';
  const stop = known.find(([, p]) => p.decision !== 'retry');
  if (stop && /TOO_LARGE/.test(stop[0])) {
    return new TunnelError('PGT_KAFKA_TOO_LARGE', `Kafka refused a record as too large (${ids.join(', ')})`, {
      ...stop[1],
      hint: "raise the topic's max.message.bytes (pgtunnel creates topics with 16 MiB), or exclude the wide column (tables: [{ name: …, exclude: [col] }])",
      cause: e,
    });
  }
  if (stop) {
    return new TunnelError('PGT_KAFKA_DENIED', `Kafka denied the request (${ids.join(', ')})`, {
      ...stop[1],
      hint: 'grant the tunnel\'s principal the ACLs in docs/security.md (Threat model)',
      cause: e,
    });
  }
  if (known.length > 0) return new TunnelError(code || 'PGT_KAFKA_REBALANCE', message, { ...known[0]![1], cause: e });
  const refusesRetry = chain.some((c) => c.canRetry === false && c.code !== 'PLT_KFK_NETWORK');
  const errorClass = refusesRetry ? 'fatal' : chain.some((c) => c.code === 'PLT_KFK_NETWORK') ? 'unreachable' : 'retryable';
  return new TunnelError(code || 'PGT_KAFKA', message, { errorClass, cause: e });
}

/**
 * The fix for a `permission denied` PostgreSQL reports from the middle of work (`pgtunnel run` checks the
 * runtime privileges at start and names the exact GRANTs; this covers what only shows later).
 */
export function privilegeHint(message: string): string {
  const see = "docs/security.md (Least privileges) lists each role's exact GRANTs";
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

/** The stack of an unexpected error's original, for the report of a bug; undefined for known errors. */
export function unexpectedStack(err: unknown): string | undefined {
  const e = classify(err);
  if (!e.unexpected) return undefined;
  const stack = e.cause instanceof Error ? e.cause.stack : e.stack;
  return stack === undefined ? undefined : redact(stack);
}
