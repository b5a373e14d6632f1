import { copyFileSync, existsSync, mkdirSync, readFileSync, appendFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { sqlState, TunnelError } from '../errors.js';
import type { Logger } from '../instruments/log.js';
import { asServiceUser, ensureTraversable, isRoot, portOpen, processAlive, run, tail } from './processes.js';
import type { StackSecurity } from './stackSecurity.js';

export function postgresBinDir(): string {
  const dir = process.env.PGTUNNEL_PG_BIN ?? '/usr/lib/postgresql/15/bin';
  if (!existsSync(path.join(dir, 'initdb'))) {
    throw new TunnelError('PGT_PG_MISSING', `PostgreSQL server binaries not found in ${dir}`, {
      errorClass: 'fatal',
      hint: 'run `bash scripts/setup.sh` (it installs postgresql-15 with apt-get), or set PGTUNNEL_PG_BIN to the directory holding initdb and pg_ctl',
    });
  }
  return dir;
}

/** One real PostgreSQL cluster of the embedded stack: initdb once, then pg_ctl start/stop. */
export class PostgresCluster {
  readonly dataDir: string;
  readonly logFile: string;

  /** With `security`: TLS only and scram-sha-256 passwords (the secure stack); without: trust on loopback. */
  constructor(readonly name: string, root: string, readonly port: number, private readonly log: Logger, private readonly security?: StackSecurity) {
    this.dataDir = path.join(root, name);
    this.logFile = path.join(root, `${name}.log`);
  }

  /** The URL users see: in secure mode with the CA to verify the server by, never with the password. */
  url(db: string): string {
    const tls = this.security ? `?sslmode=verify-full&sslrootcert=${encodeURIComponent(this.security.file('ca.crt'))}` : '';
    return `postgres://postgres@127.0.0.1:${this.port}/${db}${tls}`;
  }

  /** The URL to connect with: in secure mode with the password. */
  connectUrl(db: string): string {
    if (!this.security) return this.url(db);
    const u = new URL(this.url(db));
    u.password = encodeURIComponent(this.security.postgresPassword);
    return u.href;
  }

  isRunning(): boolean {
    const pidFile = path.join(this.dataDir, 'postmaster.pid');
    if (!existsSync(pidFile)) return false;
    const pid = Number(readFileSync(pidFile, 'utf8').split('\n')[0]);
    return pid > 0 && processAlive(pid, 'postgres');
  }

  private async initialize(): Promise<void> {
    if (existsSync(path.join(this.dataDir, 'PG_VERSION'))) return;
    const root = path.dirname(this.dataDir);
    mkdirSync(root, { recursive: true });
    ensureTraversable(root, this.log);
    if (isRoot) await run('chown', ['postgres:postgres', root]);
    this.log.info({ cluster: this.name, dataDir: this.dataDir }, 'initdb: creating a PostgreSQL cluster');
    const auth = ['--auth=trust'];
    const pwFile = path.join(root, `${this.name}.pw`);
    if (this.security) {
      writeFileSync(pwFile, this.security.postgresPassword, { mode: 0o600 });
      if (isRoot) await run('chown', ['postgres:postgres', pwFile]);
      auth.splice(0, 1, '--auth=scram-sha-256', `--pwfile=${pwFile}`);
    }
    const [cmd, args] = asServiceUser(path.join(postgresBinDir(), 'initdb'), ['-D', this.dataDir, ...auth, '-U', 'postgres', '-E', 'UTF8', '--locale=C.UTF-8']);
    try {
      await run(cmd, args);
    } finally {
      if (this.security) rmSync(pwFile, { force: true });
    }
    if (this.security) await this.secure();
    appendFileSync(
      path.join(this.dataDir, 'postgresql.conf'),
      [
        '',
        '# pgtunnel embedded stack',
        `port = ${this.port}`,
        "listen_addresses = '127.0.0.1'",
        // TCP only: a socket path under a deep home can exceed the 107-byte limit.
        "unix_socket_directories = ''",
        'wal_level = logical',
        'track_commit_timestamp = on',
        'max_connections = 200',
        'shared_buffers = 256MB',
        '',
      ].join('\n'),
    );
  }

  /** Starts the cluster unless it already runs; returns true when this call started it. */
  async start(): Promise<boolean> {
    await this.initialize();
    if (this.isRunning()) return false;
    if (await portOpen(this.port)) {
      throw new TunnelError('PGT_PORT_BUSY', `port ${this.port} for the ${this.name} cluster is taken by another process`, {
        errorClass: 'fatal',
        hint: `stop whatever listens on 127.0.0.1:${this.port} (e.g. another PostgreSQL), or point pgtunnel at it with PGTUNNEL_*_URL`,
      });
    }
    this.log.info({ cluster: this.name, port: this.port }, 'starting PostgreSQL');
    const [cmd, args] = asServiceUser(path.join(postgresBinDir(), 'pg_ctl'), ['-D', this.dataDir, '-l', this.logFile, '-w', '-t', '60', 'start']);
    try {
      await run(cmd, args);
    } catch (err) {
      throw new TunnelError('PGT_PG_START', `the ${this.name} PostgreSQL cluster did not start; its log ends:\n${tail(this.logFile)}`, { cause: err });
    }
    return true;
  }

  /** TLS with the stack's server certificate, and no connection without TLS or without a password. */
  private async secure(): Promise<void> {
    const security = this.security!;
    for (const f of ['server.crt', 'server.key'] as const) copyFileSync(security.file(f), path.join(this.dataDir, f));
    writeFileSync(path.join(this.dataDir, 'pg_hba.conf'), '# pgtunnel secure stack: TLS and a scram-sha-256 password, loopback only\nhostssl all all 127.0.0.1/32 scram-sha-256\n');
    appendFileSync(
      path.join(this.dataDir, 'postgresql.conf'),
      ['', '# pgtunnel secure stack', 'ssl = on', "ssl_cert_file = 'server.crt'", "ssl_key_file = 'server.key'", "password_encryption = 'scram-sha-256'", ''].join('\n'),
    );
    // PostgreSQL refuses a key file that others can read, or that it does not own.
    if (isRoot) await run('chown', ['postgres:postgres', path.join(this.dataDir, 'server.crt'), path.join(this.dataDir, 'server.key'), path.join(this.dataDir, 'pg_hba.conf')]);
    await run('chmod', ['0600', path.join(this.dataDir, 'server.key')]);
  }

  async stop(): Promise<void> {
    if (!this.isRunning()) return;
    this.log.info({ cluster: this.name }, 'stopping PostgreSQL');
    const [cmd, args] = asServiceUser(path.join(postgresBinDir(), 'pg_ctl'), ['-D', this.dataDir, '-m', 'fast', '-w', '-t', '60', 'stop']);
    await run(cmd, args);
  }

  async ensureDatabase(db: string): Promise<void> {
    const client = new pg.Client({ connectionString: this.connectUrl('postgres') });
    await client.connect();
    try {
      const { rowCount } = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [db]);
      if (rowCount === 0) {
        await client.query(`CREATE DATABASE "${db.replace(/"/g, '""')}"`).catch((err: unknown) => {
          if (sqlState(err) !== '42P04') throw err; // created meanwhile by another process
        });
      }
    } finally {
      await client.end();
    }
  }
}
