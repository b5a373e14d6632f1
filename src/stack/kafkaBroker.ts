import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync, closeSync } from 'node:fs';
import path from 'node:path';
import { Admin } from '@platformatic/kafka';
import { TunnelError } from '../errors.js';
import type { Logger } from '../observe/log.js';
import { sleep } from '../pipeline/retry.js';
import { portOpen, processAlive, run, tail, waitFor } from './processes.js';

const mainClass = 'kafka.Kafka';

/** One real Apache Kafka broker in KRaft mode (a single combined broker+controller node). */
export class KafkaBroker {
  readonly dataDir: string;
  readonly logFile: string;
  private readonly pidFile: string;
  private readonly propertiesFile: string;

  constructor(root: string, private readonly libsDir: string, readonly port: number, readonly controllerPort: number, private readonly log: Logger) {
    this.dataDir = path.join(root, 'data');
    this.logFile = path.join(root, 'kafka.log');
    this.pidFile = path.join(root, 'kafka.pid');
    this.propertiesFile = path.join(root, 'server.properties');
  }

  get bootstrap(): string {
    return `127.0.0.1:${this.port}`;
  }

  pid(): number | undefined {
    if (!existsSync(this.pidFile)) return undefined;
    const pid = Number(readFileSync(this.pidFile, 'utf8').trim());
    return pid > 0 && processAlive(pid, mainClass) ? pid : undefined;
  }

  isRunning(): boolean {
    return this.pid() !== undefined;
  }

  private checkLibs(): void {
    if (!existsSync(this.libsDir) || !readdirSync(this.libsDir).some((f) => f.startsWith('kafka_2.13-'))) {
      throw new TunnelError('PGT_KAFKA_JARS', `the Kafka broker jars are missing from ${this.libsDir}`, {
        errorClass: 'fatal',
        hint: 'run `bash scripts/setup.sh` (npm start and npm test do): it resolves them from Maven Central',
      });
    }
  }

  private writeConfig(): void {
    mkdirSync(this.dataDir, { recursive: true });
    const root = path.dirname(this.propertiesFile);
    writeFileSync(
      this.propertiesFile,
      [
        'process.roles=broker,controller',
        'node.id=1',
        `controller.quorum.bootstrap.servers=127.0.0.1:${this.controllerPort}`,
        `listeners=PLAINTEXT://127.0.0.1:${this.port},CONTROLLER://127.0.0.1:${this.controllerPort}`,
        `advertised.listeners=PLAINTEXT://127.0.0.1:${this.port}`,
        'controller.listener.names=CONTROLLER',
        'inter.broker.listener.name=PLAINTEXT',
        'listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT',
        `log.dirs=${this.dataDir}`,
        'num.partitions=3',
        'offsets.topic.replication.factor=1',
        'offsets.topic.num.partitions=5',
        'transaction.state.log.replication.factor=1',
        'transaction.state.log.min.isr=1',
        'group.initial.rebalance.delay.ms=0',
        'auto.create.topics.enable=false',
        '',
      ].join('\n'),
    );
    writeFileSync(
      path.join(root, 'log4j2.properties'),
      ['status = warn', 'appender.out.type = Console', 'appender.out.name = out', 'appender.out.layout.type = PatternLayout',
        'appender.out.layout.pattern = [%d] %p %m (%c)%n', 'rootLogger.level = INFO', 'rootLogger.appenderRef.out.ref = out',
        'logger.kafka.name = kafka', 'logger.kafka.level = WARN', 'logger.apache.name = org.apache.kafka', 'logger.apache.level = WARN', ''].join('\n'),
    );
  }

  private javaArgs(main: string, args: string[]): string[] {
    const root = path.dirname(this.propertiesFile);
    return ['-Xms128m', '-Xmx512m', '-Djava.awt.headless=true', `-Dlog4j2.configurationFile=${path.join(root, 'log4j2.properties')}`,
      '-cp', `${this.libsDir}/*`, main, ...args];
  }

  /** Starts the broker unless it already runs; returns true when this call started it. */
  async start(): Promise<boolean> {
    if (this.isRunning()) return false;
    this.checkLibs();
    if (await portOpen(this.port)) {
      throw new TunnelError('PGT_PORT_BUSY', `port ${this.port} for the Kafka broker is taken by another process`, {
        errorClass: 'fatal',
        hint: `stop whatever listens on 127.0.0.1:${this.port}, or point pgtunnel at that broker with PGTUNNEL_KAFKA_BROKERS`,
      });
    }
    this.writeConfig();
    if (!existsSync(path.join(this.dataDir, 'meta.properties'))) {
      this.log.info({ dataDir: this.dataDir }, 'formatting Kafka storage (KRaft)');
      const clusterId = randomBytes(16).toString('base64url');
      await run('java', this.javaArgs('kafka.tools.StorageTool', ['format', '--standalone', '--ignore-formatted', '-t', clusterId, '-c', this.propertiesFile]));
    }
    this.log.info({ port: this.port }, 'starting Kafka');
    const out = openSync(this.logFile, 'a');
    // detached: Ctrl-C on the tunnel's terminal must not kill the broker; `stop` ends it by pid.
    const child = spawn('java', this.javaArgs(mainClass, [this.propertiesFile]), { detached: true, stdio: ['ignore', out, out] });
    closeSync(out);
    child.unref();
    writeFileSync(this.pidFile, String(child.pid));
    let exited = false;
    child.once('exit', () => (exited = true));
    await waitFor('Kafka', async () => {
      if (exited) throw new TunnelError('PGT_KAFKA_START', `the Kafka broker exited at start; its log ends:\n${tail(this.logFile)}`);
      return (await portOpen(this.port)) && (await this.metadataReady());
    }, 120_000, () => tail(this.logFile));
    return true;
  }

  private async metadataReady(): Promise<boolean> {
    const admin = new Admin({ clientId: 'pgtunnel-stack', bootstrapBrokers: [this.bootstrap], retries: 0, timeout: 3000 });
    try {
      await admin.listTopics();
      return true;
    } catch {
      return false;
    } finally {
      await admin.close().catch(() => {});
    }
  }

  async stop(): Promise<void> {
    const pid = this.pid();
    if (pid === undefined) return;
    this.log.info({ pid }, 'stopping Kafka');
    process.kill(pid, 'SIGTERM');
    const deadline = Date.now() + 30_000;
    while (processAlive(pid, mainClass) && Date.now() < deadline) await sleep(100);
    if (processAlive(pid, mainClass)) process.kill(pid, 'SIGKILL');
    rmSync(this.pidFile, { force: true });
  }
}
