import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { stringify } from 'yaml';
import { embeddedDefaults } from '../config/load.js';
import type { Logger } from '../observe/log.js';
import { KafkaBroker } from './kafkaBroker.js';
import { PostgresCluster } from './postgresCluster.js';
import { StackSecurity, stackKafkaUser } from './stackSecurity.js';

export interface StackPorts {
  sourcePort: number;
  targetPort: number;
  kafkaPort: number;
  controllerPort: number;
}

export type StackPart = 'source' | 'target' | 'kafka';

/**
 * The embedded stack: two real PostgreSQL clusters and one real Kafka broker under one root.
 * Processes left running (by `stack up`, or by a tunnel that crashed) are reused, never restarted.
 */
export class LocalStack {
  readonly source: PostgresCluster;
  readonly target: PostgresCluster;
  readonly kafka: KafkaBroker;
  /** Set in secure mode: TLS and passwords on PostgreSQL, SASL_SSL on Kafka (opt-in; the demo is trust-on-loopback). */
  readonly security: StackSecurity | undefined;

  constructor(home: string, private readonly log: Logger, ports: StackPorts = embeddedDefaults, root = home, options: { secure?: boolean } = {}) {
    this.security = options.secure ? new StackSecurity(root) : undefined;
    this.source = new PostgresCluster('source', path.join(root, 'pg'), ports.sourcePort, log, this.security);
    this.target = new PostgresCluster('target', path.join(root, 'pg'), ports.targetPort, log, this.security);
    this.kafka = new KafkaBroker(path.join(root, 'kafka'), path.join(home, 'kafka', 'libs'), ports.kafkaPort, ports.controllerPort, log, this.security);
  }

  /** Starts what is not running; returns the parts this call started (only those may be stopped by it). */
  async up(sourceDb: string = embeddedDefaults.sourceDb, targetDb: string = embeddedDefaults.targetDb): Promise<StackPart[]> {
    const started: StackPart[] = [];
    await this.security?.ensure(this.log);
    const [s, t, k] = await Promise.allSettled([this.source.start(), this.target.start(), this.kafka.start()]);
    for (const [part, result] of [['source', s], ['target', t], ['kafka', k]] as const) {
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

  async down(parts: StackPart[] = ['source', 'target', 'kafka']): Promise<void> {
    const stops: Promise<void>[] = [];
    // Kafka first is not required: each part stops on its own.
    if (parts.includes('kafka')) stops.push(this.kafka.stop());
    if (parts.includes('source')) stops.push(this.source.stop());
    if (parts.includes('target')) stops.push(this.target.stop());
    const results = await Promise.allSettled(stops);
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
  }

  status(): Record<StackPart, { running: boolean; address: string }> {
    return {
      source: { running: this.source.isRunning(), address: this.source.url(embeddedDefaults.sourceDb) },
      target: { running: this.target.isRunning(), address: this.target.url(embeddedDefaults.targetDb) },
      kafka: { running: this.kafka.isRunning(), address: `${this.kafka.bootstrap}${this.security ? ' (SASL_SSL, SCRAM-SHA-512, client certificate)' : ''}` },
    };
  }
}
