import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { TunnelError } from '../errors.js';
import type { KafkaSecurity } from '../config/kafkaSecurity.js';
import { registerSecret } from '../redact.js';
import type { Logger } from '../instruments/log.js';
import { run } from './processes.js';

/** The Kafka user of the secure stack (SCRAM credential made at format time, PLAIN user in JAAS). */
export const stackKafkaUser = 'pgtunnel';

/**
 * The secure embedded stack's material, made once at first start under `<root>/secure` (mode 0700):
 * a self-signed CA, one server certificate for 127.0.0.1 and localhost (PostgreSQL and Kafka), a client
 * certificate for the tunnel, and random passwords for the `postgres` role and the Kafka user.
 */
export class StackSecurity {
  readonly dir: string;

  constructor(root: string) {
    this.dir = path.join(root, 'secure');
  }

  file(name: 'ca.crt' | 'server.crt' | 'server.key' | 'server.p12' | 'client.crt' | 'client.key' | 'postgres.pw' | 'kafka.pw' | 'keystore.pw'): string {
    return path.join(this.dir, name);
  }

  private secret(name: 'postgres.pw' | 'kafka.pw' | 'keystore.pw'): string {
    const value = readFileSync(this.file(name), 'utf8').trim();
    registerSecret(value);
    return value;
  }

  get postgresPassword(): string {
    return this.secret('postgres.pw');
  }

  get kafkaPassword(): string {
    return this.secret('kafka.pw');
  }

  get keystorePassword(): string {
    return this.secret('keystore.pw');
  }

  /** What a Kafka client of this stack needs: SCRAM-SHA-512 over TLS with the client certificate. */
  kafkaClient(): KafkaSecurity {
    const read = (f: 'ca.crt' | 'client.crt' | 'client.key') => readFileSync(this.file(f), 'utf8');
    return {
      sasl: { mechanism: 'SCRAM-SHA-512', username: stackKafkaUser, password: this.kafkaPassword },
      tls: { ca: read('ca.crt'), cert: read('client.crt'), key: read('client.key') },
    };
  }

  /** Makes the CA, certificates and passwords unless they exist; built aside, then moved in whole. */
  async ensure(log: Logger): Promise<void> {
    if (existsSync(path.join(this.dir, 'kafka.pw'))) return;
    mkdirSync(path.dirname(this.dir), { recursive: true });
    const tmp = mkdtempSync(`${this.dir}.tmp-`);
    try {
      log.info({ dir: this.dir }, 'making a self-signed CA, certificates and passwords for the secure stack (openssl)');
      await makeCertificates(tmp);
      const keystorePassword = randomBytes(16).toString('hex');
      await openssl(['pkcs12', '-export', '-in', path.join(tmp, 'server.crt'), '-inkey', path.join(tmp, 'server.key'), '-certfile', path.join(tmp, 'ca.crt'),
        '-name', 'server', '-out', path.join(tmp, 'server.p12'), '-passout', `pass:${keystorePassword}`]);
      // hex only: the passwords go into properties files and kafka-storage arguments unquoted
      writeFileSync(path.join(tmp, 'keystore.pw'), `${keystorePassword}\n`, { mode: 0o600 });
      writeFileSync(path.join(tmp, 'postgres.pw'), `${randomBytes(16).toString('hex')}\n`, { mode: 0o600 });
      writeFileSync(path.join(tmp, 'kafka.pw'), `${randomBytes(16).toString('hex')}\n`, { mode: 0o600 });
      for (const f of ['ca.key', 'server.key', 'client.key', 'server.p12']) chmodSync(path.join(tmp, f), 0o600);
      chmodSync(tmp, 0o700);
      renameSync(tmp, this.dir);
    } catch (err) {
      rmSync(tmp, { recursive: true, force: true });
      throw err;
    }
  }
}

async function openssl(args: string[]): Promise<void> {
  try {
    await run('openssl', args);
  } catch (err) {
    const missing = (err as { cause?: { code?: string } }).cause?.code === 'ENOENT';
    throw new TunnelError('PGT_OPENSSL', missing ? 'openssl is not installed' : (err as Error).message, {
      errorClass: 'fatal',
      hint: 'install openssl (apt-get install openssl); the secure stack makes its CA and certificates with it',
      cause: err,
    });
  }
}

/** ECDSA P-256 keys: quick to make, and PostgreSQL, Kafka (Java 17) and Node all accept them. */
async function makeCertificates(dir: string): Promise<void> {
  const p = (f: string) => path.join(dir, f);
  const newKey = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  await openssl(['req', '-x509', ...newKey, '-keyout', p('ca.key'), '-out', p('ca.crt'), '-days', '825', '-subj', '/CN=pgtunnel embedded stack CA',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
  const leaves = [
    ['server', '/CN=127.0.0.1', 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n'],
    ['client', `/CN=${stackKafkaUser}`, 'extendedKeyUsage=clientAuth\n'],
  ] as const;
  for (const [name, subject, extensions] of leaves) {
    writeFileSync(p(`${name}.ext`), `basicConstraints=CA:FALSE\n${extensions}`);
    await openssl(['req', ...newKey, '-keyout', p(`${name}.key`), '-out', p(`${name}.csr`), '-subj', subject]);
    await openssl(['x509', '-req', '-in', p(`${name}.csr`), '-CA', p('ca.crt'), '-CAkey', p('ca.key'), '-CAcreateserial', '-days', '825',
      '-extfile', p(`${name}.ext`), '-out', p(`${name}.crt`)]);
    rmSync(p(`${name}.csr`));
    rmSync(p(`${name}.ext`));
  }
}
