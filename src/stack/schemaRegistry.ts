import { spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { TunnelError } from '../errors.js';
import type { Logger } from '../instruments/log.js';
import { portOpen, processAlive, stopProcess, tail, waitFor } from './processes.js';

/** The Apicurio Registry release scripts/setup.sh --registry fetches from Maven Central. */
export const apicurioVersion = '3.3.3';
const marker = 'quarkus-run.jar';
const minJava = 21;

/** Where setup.sh unpacks Apicurio's Quarkus fast-jar under PGTUNNEL_HOME. */
export function registryAppDir(home: string): string {
  return path.join(home, 'registry', `apicurio-registry-${apicurioVersion}`);
}

export interface RegistryServerOptions {
  /** Prefix of its Kafka topics (journal, snapshots), so several registries can share one broker. */
  topicPrefix?: string;
  /** Further Apicurio/Quarkus settings, passed as -D (e.g. HTTP basic auth with embedded users). */
  properties?: Record<string, string>;
}

/**
 * The embedded schema registry: Apicurio Registry 3 (Confluent-compatible API at /apis/ccompat/v7),
 * bound to 127.0.0.1, its storage in Kafka (kafkasql) so schemas and their ids survive a restart.
 * Apicurio creates its own topics through the admin API: the broker's auto-create stays off.
 */
export class SchemaRegistryServer {
  readonly logFile: string;
  private readonly pidFile: string;

  constructor(private readonly root: string, private readonly appDir: string, readonly port: number, readonly managementPort: number,
    private readonly bootstrap: string, private readonly log: Logger, private readonly options: RegistryServerOptions = {}) {
    this.logFile = path.join(root, 'registry.log');
    this.pidFile = path.join(root, 'registry.pid');
  }

  /** The base URL of its Confluent-compatible API: what registryUrl names. */
  get url(): string {
    return `http://127.0.0.1:${this.port}/apis/ccompat/v7`;
  }

  pid(): number | undefined {
    if (!existsSync(this.pidFile)) return undefined;
    const pid = Number(readFileSync(this.pidFile, 'utf8').trim());
    return pid > 0 && processAlive(pid, marker) ? pid : undefined;
  }

  isRunning(): boolean {
    return this.pid() !== undefined;
  }

  private javaArgs(): string[] {
    const prefix = this.options.topicPrefix ?? 'kafkasql';
    const tmp = path.join(this.root, 'tmp');
    mkdirSync(tmp, { recursive: true });
    return [
      '-Xmx384m',
      `-Djava.io.tmpdir=${tmp}`,
      // both listeners on loopback: without the management settings Quarkus opens 9000 on every interface
      '-Dquarkus.http.host=127.0.0.1',
      `-Dquarkus.http.port=${this.port}`,
      '-Dquarkus.management.host=127.0.0.1',
      `-Dquarkus.management.port=${this.managementPort}`,
      '-Dquarkus.http.access-log.enabled=false',
      // the Kafka clients log their whole configuration at INFO, at every start
      '-Dquarkus.log.category."org.apache.kafka".level=WARN',
      '-Dapicurio.storage.kind=kafkasql',
      `-Dapicurio.kafkasql.bootstrap.servers=${this.bootstrap}`,
      `-Dapicurio.kafkasql.topic=${prefix}-journal`,
      `-Dapicurio.kafkasql.snapshots.topic=${prefix}-snapshots`,
      `-Dapicurio.events.kafka.topic=${prefix}-events`,
      `-Dapicurio.storage.snapshot.location=${tmp}`,
      `-Dapicurio.import.work-dir=${tmp}`,
      ...Object.entries(this.options.properties ?? {}).map(([k, v]) => `-D${k}=${v}`),
      '-jar',
      path.join(this.appDir, marker),
    ];
  }

  /** Starts the registry unless it already runs; returns true when this call started it. */
  async start(): Promise<boolean> {
    if (this.isRunning()) return false;
    if (!existsSync(path.join(this.appDir, marker))) {
      throw new TunnelError('PGT_REGISTRY_MISSING', `the embedded schema registry (Apicurio ${apicurioVersion}) is not installed in ${this.appDir}`, {
        errorClass: 'config',
        hint: 'run `bash scripts/setup.sh --registry`: it fetches io.apicurio:apicurio-registry-app from Maven Central (158 MB, once)',
      });
    }
    const java = findJava();
    for (const port of [this.port, this.managementPort]) {
      if (await portOpen(port)) {
        throw new TunnelError('PGT_PORT_BUSY', `port ${port} for the schema registry is taken by another process`, {
          errorClass: 'fatal',
          hint: `stop whatever listens on 127.0.0.1:${port}, or point pgtunnel at that registry with registryUrl`,
        });
      }
    }
    mkdirSync(this.root, { recursive: true });
    this.log.info({ port: this.port, kafka: this.bootstrap }, 'starting the schema registry (Apicurio)');
    const out = openSync(this.logFile, 'a');
    // detached, as the broker: Ctrl-C on the tunnel's terminal must not kill it; `stop` ends it by pid.
    const child = spawn(java, this.javaArgs(), { cwd: this.root, detached: true, stdio: ['ignore', out, out] });
    closeSync(out);
    child.unref();
    writeFileSync(this.pidFile, String(child.pid));
    let exited = false;
    child.once('exit', () => (exited = true));
    // kafkasql replays its journal before it is ready: 30-60 s on two busy cores
    try {
      await waitFor('the schema registry', async () => {
        if (exited) throw new TunnelError('PGT_REGISTRY_START', `the schema registry exited at start; its log ends:\n${tail(this.logFile)}`);
        return this.ready();
      }, 180_000, () => tail(this.logFile));
    } catch (err) {
      // one that never became ready is not left running: nobody would stop it
      await this.stop();
      throw err;
    }
    return true;
  }

  private async ready(): Promise<boolean> {
    try {
      const response = await fetch(`http://127.0.0.1:${this.managementPort}/health/ready`, { signal: AbortSignal.timeout(2000) });
      await response.body?.cancel();
      return response.ok;
    } catch {
      return false;
    }
  }

  async stop(): Promise<void> {
    const pid = this.pid();
    if (pid === undefined) return;
    this.log.info({ pid }, 'stopping the schema registry');
    await stopProcess(pid, marker, 30_000);
    rmSync(this.pidFile, { force: true });
  }
}

/** The major version a JDK's `release` file names (JAVA_VERSION="25.0.1"), or 0. */
function javaMajor(javaBin: string): number {
  try {
    const release = readFileSync(path.join(path.dirname(path.dirname(realpathSync(javaBin))), 'release'), 'utf8');
    const version = /JAVA_VERSION="(\d+)(?:\.(\d+))?/.exec(release);
    if (!version) return 0;
    // Java 8 and older spell themselves 1.8
    return version[1] === '1' ? Number(version[2]) : Number(version[1]);
  } catch {
    return 0;
  }
}

/** A Java 21+ binary: PGTUNNEL_REGISTRY_JAVA when set, else the newest JDK under /usr/lib/jvm or on PATH. */
export function findJava(env: NodeJS.ProcessEnv = process.env, jvm = '/usr/lib/jvm'): string {
  const candidates: string[] = [];
  if (env.PGTUNNEL_REGISTRY_JAVA) candidates.push(env.PGTUNNEL_REGISTRY_JAVA);
  else {
    if (existsSync(jvm)) for (const dir of readdirSync(jvm)) candidates.push(path.join(jvm, dir, 'bin', 'java'));
    for (const dir of (env.PATH ?? '').split(path.delimiter)) if (dir) candidates.push(path.join(dir, 'java'));
  }
  const found = candidates.filter((c) => existsSync(c)).map((c) => ({ bin: c, major: javaMajor(c) })).sort((a, b) => b.major - a.major)[0];
  if (found && found.major >= minJava) return found.bin;
  throw new TunnelError('PGT_REGISTRY_JAVA', `the schema registry (Apicurio ${apicurioVersion}) needs Java ${minJava} or newer; ${found ? `the newest found is Java ${found.major} (${found.bin})` : 'no Java was found'}`, {
    errorClass: 'config',
    hint: 'install a Java 21+ runtime (apt-get install openjdk-21-jre-headless, or a Temurin 21/25 JDK), or set PGTUNNEL_REGISTRY_JAVA to its bin/java',
  });
}
