import { readFileSync } from 'node:fs';
import path from 'node:path';
import { registerSecret } from '../redact.js';
import type { FileConfig } from './schema.js';

export type SaslMechanism = 'PLAIN' | 'SCRAM-SHA-256' | 'SCRAM-SHA-512';

/** How every Kafka client of pgtunnel authenticates and encrypts; {} is plaintext without SASL. */
export interface KafkaSecurity {
  sasl?: { mechanism: SaslMechanism; username: string; password: string };
  /** PEM contents, read once at start. */
  tls?: { ca?: string; cert?: string; key?: string; serverName?: string };
}

type SaslInput = NonNullable<FileConfig['kafkaSasl']>;
type TlsInput = Exclude<NonNullable<FileConfig['kafkaTls']>, boolean>;

/** PGTUNNEL_KAFKA_SASL_* and PGTUNNEL_KAFKA_TLS* as the yaml keys kafkaSasl and kafkaTls. */
export function kafkaSecurityEnv(env: NodeJS.ProcessEnv): Pick<FileConfig, 'kafkaSasl' | 'kafkaTls'> {
  const out: Pick<FileConfig, 'kafkaSasl' | 'kafkaTls'> = {};
  const sasl: Record<string, string> = {};
  for (const [name, key] of [['MECHANISM', 'mechanism'], ['USERNAME', 'username'], ['PASSWORD', 'password'], ['PASSWORD_FILE', 'passwordFile']] as const) {
    const value = env[`PGTUNNEL_KAFKA_SASL_${name}`];
    if (value) sasl[key] = key === 'mechanism' ? value.toUpperCase() : value;
  }
  if (Object.keys(sasl).length > 0) out.kafkaSasl = sasl as SaslInput;
  const tls: Record<string, string> = {};
  for (const [name, key] of [['CA', 'ca'], ['CERT', 'cert'], ['KEY', 'key'], ['SERVER_NAME', 'serverName']] as const) {
    const value = env[`PGTUNNEL_KAFKA_TLS_${name}`];
    if (value) tls[key] = value;
  }
  if (Object.keys(tls).length > 0) out.kafkaTls = tls;
  else if (env.PGTUNNEL_KAFKA_TLS) out.kafkaTls = !/^(0|false|no|off)$/i.test(env.PGTUNNEL_KAFKA_TLS);
  return out;
}

function readGiven(file: string, cwd: string, key: string, envName: string, errors: string[]): string | undefined {
  const full = path.resolve(cwd, file);
  try {
    return readFileSync(full, 'utf8');
  } catch (err) {
    errors.push(`${key}: cannot read ${full} (${(err as NodeJS.ErrnoException).code ?? 'error'}) — fix: point ${key} or ${envName} at a readable file`);
    return undefined;
  }
}

/**
 * Merges the file's and the environment's Kafka security key by key (the environment wins), reads
 * the files it names and registers the SASL password with the redaction; problems go to `errors`.
 */
export function resolveKafkaSecurity(
  file: Pick<FileConfig, 'kafkaSasl' | 'kafkaTls'>,
  env: Pick<FileConfig, 'kafkaSasl' | 'kafkaTls'>,
  cwd: string,
  errors: string[],
): KafkaSecurity {
  const out: KafkaSecurity = {};
  // both, even when one overrides the other: a password written anywhere must never print
  registerSecret(file.kafkaSasl?.password);
  registerSecret(env.kafkaSasl?.password);
  // A password given by the environment replaces the file's, whichever form either has.
  const envGivesPassword = env.kafkaSasl?.password !== undefined || env.kafkaSasl?.passwordFile !== undefined;
  const fromFile = envGivesPassword ? { ...file.kafkaSasl, password: undefined, passwordFile: undefined } : file.kafkaSasl;
  const sasl: SaslInput | undefined = file.kafkaSasl || env.kafkaSasl ? { ...fromFile, ...env.kafkaSasl } : undefined;
  if (sasl) {
    let password = sasl.password;
    if (sasl.passwordFile !== undefined) {
      // A trailing newline is how editors and `echo` write a one-line file; it is not part of the password.
      password = readGiven(sasl.passwordFile, cwd, 'kafkaSasl.passwordFile', 'PGTUNNEL_KAFKA_SASL_PASSWORD_FILE', errors)?.replace(/\r?\n$/, '');
      registerSecret(password);
    }
    const missing = [
      !sasl.mechanism && 'mechanism (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512; PGTUNNEL_KAFKA_SASL_MECHANISM)',
      !sasl.username && 'username (PGTUNNEL_KAFKA_SASL_USERNAME)',
      sasl.password === undefined && sasl.passwordFile === undefined && 'password or passwordFile (PGTUNNEL_KAFKA_SASL_PASSWORD or _PASSWORD_FILE)',
    ].filter(Boolean);
    if (missing.length > 0) errors.push(`kafkaSasl: missing ${missing.join(', ')} — fix: give all three, e.g. kafkaSasl: { mechanism: SCRAM-SHA-512, username: pgtunnel, passwordFile: /run/secrets/kafka.pw }`);
    else if (password !== undefined) out.sasl = { mechanism: sasl.mechanism!, username: sasl.username!, password };
  }
  const asObject = (v: FileConfig['kafkaTls']): TlsInput | undefined => (v === true ? {} : v === false ? undefined : v);
  const tlsOff = env.kafkaTls === false || (env.kafkaTls === undefined && file.kafkaTls === false);
  const fileTls = asObject(file.kafkaTls);
  const envTls = asObject(env.kafkaTls);
  if (!tlsOff && (fileTls || envTls)) {
    const tls: TlsInput = { ...fileTls, ...envTls };
    if ((tls.cert === undefined) !== (tls.key === undefined)) {
      errors.push('kafkaTls: cert and key go together (a client certificate and its private key) — fix: give both, or neither');
    }
    const read = (key: 'ca' | 'cert' | 'key') => (tls[key] === undefined ? undefined : readGiven(tls[key]!, cwd, `kafkaTls.${key}`, `PGTUNNEL_KAFKA_TLS_${key.toUpperCase()}`, errors));
    out.tls = { ca: read('ca'), cert: read('cert'), key: read('key'), serverName: tls.serverName };
  }
  return out;
}

/** The connection options of a @platformatic/kafka client (Producer, Consumer, Admin) for this security. */
export function kafkaClientSecurity(security: KafkaSecurity | undefined) {
  if (!security) return {};
  const { sasl, tls } = security;
  return {
    ...(sasl ? { sasl: { mechanism: sasl.mechanism, username: sasl.username, password: sasl.password } } : {}),
    ...(tls
      ? {
          tls: { ...(tls.ca ? { ca: tls.ca } : {}), ...(tls.cert ? { cert: tls.cert, key: tls.key } : {}) },
          ...(tls.serverName ? { tlsServerName: tls.serverName } : {}),
        }
      : {}),
  };
}
