import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { stringify } from 'yaml';
import { embeddedDefaults } from '../config/load.js';
import type { Logger } from '../instruments/log.js';
import { KafkaBroker } from './kafkaBroker.js';
import { PostgresCluster } from './postgresCluster.js';
import { registryAppDir, SchemaRegistryServer, type RegistryServerOptions } from './schemaRegistry.js';
import { StackSecurity, stackKafkaUser } from './stackSecurity.js';

export interface StackPorts {
  sourcePort: number;
  targetPort: number;
  kafkaPort: number;
  controllerPort: number;
  /** The optional schema registry's API and management (health) ports; 8081 and 8082 by default. */
  registryPort?: number;
  registryManagementPort?: number;
}

export type StackPart = 'source' | 'target' | 'kafka' | 'registry';

export interface StackOptions {
  secure?: boolean;
  /** Topic names of the registry's storage (several registries on one broker). */
  registry?: RegistryServerOptions;
}

/**
 * The embedded stack: two real PostgreSQL clusters and one real Kafka broker under one root, and on
 * request (`stack up --registry`) a schema registry storing its schemas in that broker.
 * Processes left running (by `stack up`, or by a tunnel that crashed) are reused, never restarted.
 */
export class LocalStack {
  readonly source: PostgresCluster;
  readonly target: PostgresCluster;
  readonly kafka: KafkaBroker;
  readonly registry: SchemaRegistryServer;
  /** Set in secure mode: TLS and passwords on PostgreSQL, SASL_SSL on Kafka (opt-in; the demo is trust-on-loopback). */
  readonly security: StackSecurity | undefined;

  constructor(home: string, private readonly log: Logger, ports: StackPorts = embeddedDefaults, root = home, options: StackOptions = {}) {
    this.security = options.secure ? new StackSecurity(root) : undefined;
    this.source = new PostgresCluster('source', path.join(root, 'pg'), ports.sourcePort, log, this.security);
    this.target = new PostgresCluster('target', path.join(root, 'pg'), ports.targetPort, log, this.security);
    this.kafka = new KafkaBroker(path.join(root, 'kafka'), path.join(home, 'kafka', 'libs'), ports.kafkaPort, ports.controllerPort, log, this.security);
    this.registry = new SchemaRegistryServer(path.join(root, 'registry'), registryAppDir(home), ports.registryPort ?? embeddedDefaults.registryPort,
      ports.registryManagementPort ?? embeddedDefaults.registryManagementPort, this.kafka.bootstrap, log, options.registry);
  }

  /** Starts what is not running; returns the parts this call started (only those may be stopped by it). */
  async up(sourceDb: string = embeddedDefaults.sourceDb, targetDb: string = embeddedDefaults.targetDb, withRegistry = false): Promise<StackPart[]> {
    const started: StackPart[] = [];
    await this.security?.ensure(this.log);
    if (withRegistry && this.security) throw new Error('the secure stack has no schema registry');
    // the registry stores its schemas in Kafka: it starts once the broker is ready
    const kafkaThenRegistry = this.kafka.start().then(async (k) => {
      if (k) started.push('kafka');
      if (withRegistry && (await this.registry.start())) started.push('registry');
    });
    const [s, t, k] = await Promise.allSettled([this.source.start(), this.target.start(), kafkaThenRegistry]);
    for (const [part, result] of [['source', s], ['target', t]] as const) {
      if (result.status === 'fulfilled' && result.value) started.push(part);
    }
    const failed = [s, t, k].find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) {
      await this.down(started);
      throw failed.reason;
    }
    await this.source.ensureDatabase(sourceDb);
    await this.target.ensureDatabase(targetDb);
    return started;
  }

  /**
   * In secure mode, writes `secure/pgtunnel.yaml` (mode 0600): the stack's URLs with sslmode=verify-full
   * and the CA, the password files, and Kafka's SASL_SSL settings, ready for `pgtunnel --config`.
   */
  writeClientConfig(sourceDb: string = embeddedDefaults.sourceDb, targetDb: string = embeddedDefaults.targetDb): string {
    const security = this.security;
    if (!security) throw new Error('writeClientConfig is for the secure stack');
    const file = path.join(security.dir, 'pgtunnel.yaml');
    const config = {
      sourceUrl: this.source.url(sourceDb),
      sourcePasswordFile: security.file('postgres.pw'),
      targetUrl: this.target.url(targetDb),
      targetPasswordFile: security.file('postgres.pw'),
      kafkaBrokers: [this.kafka.bootstrap],
      kafkaSasl: { mechanism: 'SCRAM-SHA-512', username: stackKafkaUser, passwordFile: security.file('kafka.pw') },
      kafkaTls: { ca: security.file('ca.crt'), cert: security.file('client.crt'), key: security.file('client.key') },
    };
    writeFileSync(file, `# the secure embedded stack (pgtunnel stack up --secure); use with pgtunnel --config ${file}\n${stringify(config)}`, { mode: 0o600 });
    return file;
  }

  async down(parts: StackPart[] = ['source', 'target', 'kafka', 'registry']): Promise<void> {
    const stops: Promise<void>[] = [];
    // The registry before its broker (it would wait for Kafka at shutdown); the rest stop on their own.
    const registry = parts.includes('registry') ? this.registry.stop() : Promise.resolve();
    stops.push(registry);
    if (parts.includes('kafka')) stops.push(registry.catch(() => {}).then(() => this.kafka.stop()));
    if (parts.includes('source')) stops.push(this.source.stop());
    if (parts.includes('target')) stops.push(this.target.stop());
    const results = await Promise.allSettled(stops);
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
  }

  /** The parts and their addresses; the optional registry only when asked for. */
  status(withRegistry = false): Partial<Record<StackPart, { running: boolean; address: string }>> {
    const registry = withRegistry ? { registry: { running: this.registry.isRunning(), address: this.registry.url } } : {};
    return {
      source: { running: this.source.isRunning(), address: this.source.url(embeddedDefaults.sourceDb) },
      target: { running: this.target.isRunning(), address: this.target.url(embeddedDefaults.targetDb) },
      kafka: { running: this.kafka.isRunning(), address: `${this.kafka.bootstrap}${this.security ? ' (SASL_SSL, SCRAM-SHA-512, client certificate)' : ''}` },
      ...registry,
    };
  }
}
