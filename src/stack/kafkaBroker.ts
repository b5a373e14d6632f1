import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Admin } from '../transport/kafkaLib.js';
import { TunnelError } from '../errors.js';
import type { Logger } from '../instruments/log.js';
import { kafkaClientOptions } from '../transport/kafka.js';
import { portOpen, processAlive, stopProcess, run, tail, waitFor } from './processes.js';
import { stackKafkaUser, type StackSecurity } from './stackSecurity.js';
import { clientIds } from '../names.js';

const mainClass = 'kafka.Kafka';

/** One real Apache Kafka broker in KRaft mode (a single combined broker+controller node). */
export class KafkaBroker {
  readonly dataDir: string;
  readonly logFile: string;
  private readonly pidFile: string;
  private readonly propertiesFile: string;

  /** With `security`: one SASL_SSL listener (client certificate required) and an SSL controller listener. */
  constructor(root: string, private readonly libsDir: string, readonly port: number, readonly controllerPort: number, private readonly log: Logger,
    private readonly security?: StackSecurity) {
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
    const root = path.dirname(this.propertiesFile);
    mkdirSync(this.dataDir, { recursive: true, mode: 0o700 });
    // the topics' records and the broker's log are the tunnel's data: the owner's alone (also for a stack made before)
    for (const dir of [root, this.dataDir]) chmodSync(dir, 0o700);
    writeFileSync(
      this.propertiesFile,
      [
        'process.roles=broker,controller',
        'node.id=1',
        `controller.quorum.bootstrap.servers=127.0.0.1:${this.controllerPort}`,
        ...this.listeners(),
        'controller.listener.names=CONTROLLER',
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
      // in secure mode it holds the keystore and SCRAM passwords
      { mode: 0o600 },
    );
    writeFileSync(
      path.join(root, 'log4j2.properties'),
      ['status = warn', 'appender.out.type = Console', 'appender.out.name = out', 'appender.out.layout.type = PatternLayout',
        'appender.out.layout.pattern = [%d] %p %m (%c)%n', 'rootLogger.level = INFO', 'rootLogger.appenderRef.out.ref = out',
        'logger.kafka.name = kafka', 'logger.kafka.level = WARN', 'logger.apache.name = org.apache.kafka', 'logger.apache.level = WARN', ''].join('\n'),
    );
  }

  private listeners(): string[] {
    if (!this.security) {
      return [
        `listeners=PLAINTEXT://127.0.0.1:${this.port},CONTROLLER://127.0.0.1:${this.controllerPort}`,
        `advertised.listeners=PLAINTEXT://127.0.0.1:${this.port}`,
        'inter.broker.listener.name=PLAINTEXT',
        'listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT',
      ];
    }
    const s = this.security;
    const user = stackKafkaUser;
    const password = s.kafkaPassword;
    const scram = 'org.apache.kafka.common.security.scram.ScramLoginModule required';
    return [
      `listeners=SASL_SSL://127.0.0.1:${this.port},CONTROLLER://127.0.0.1:${this.controllerPort}`,
      `advertised.listeners=SASL_SSL://127.0.0.1:${this.port}`,
      'inter.broker.listener.name=SASL_SSL',
      // no plaintext port at all: the controller listener is TLS too
      'listener.security.protocol.map=SASL_SSL:SASL_SSL,CONTROLLER:SSL',
      'sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512',
      'sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512',
      `listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username="${user}" password="${password}" user_${user}="${password}";`,
      `listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=${scram};`,
      `listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=${scram} username="${user}" password="${password}";`,
      'listener.name.sasl_ssl.ssl.client.auth=required',
      'ssl.keystore.type=PKCS12',
      `ssl.keystore.location=${s.file('server.p12')}`,
      `ssl.keystore.password=${s.keystorePassword}`,
      'ssl.truststore.type=PEM',
      `ssl.truststore.location=${s.file('ca.crt')}`,
    ];
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
      // A base64url id may begin with '-', which the format tool's argument parser takes for an option.
      const clusterId = randomBytes(16).toString('base64url').replace(/^-/, 'A');
      // SCRAM credentials live in the cluster metadata: the secure stack's user is created with the storage.
      const scram = this.security
        ? ['SCRAM-SHA-256', 'SCRAM-SHA-512'].flatMap((m) => ['--add-scram', `${m}=[name=${stackKafkaUser},password=${this.security!.kafkaPassword}]`])
        : [];
      await run('java', this.javaArgs('kafka.tools.StorageTool', ['format', '--standalone', '--ignore-formatted', '-t', clusterId, '-c', this.propertiesFile, ...scram]));
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
    const admin = new Admin({ clientId: clientIds.stack, ...kafkaClientOptions({ kafkaBrokers: [this.bootstrap], kafkaSecurity: this.security?.kafkaClient() }), retries: 0, timeout: 3000 });
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
    await stopProcess(pid, mainClass, 30_000);
    rmSync(this.pidFile, { force: true });
  }
}
