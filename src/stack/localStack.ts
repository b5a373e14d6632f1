import path from 'node:path';
import { embeddedDefaults } from '../config/load.js';
import type { Logger } from '../observe/log.js';
import { KafkaBroker } from './kafkaBroker.js';
import { PostgresCluster } from './postgresCluster.js';
import { StackSecurity } from './stackSecurity.js';

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
      kafka: { running: this.kafka.isRunning(), address: this.kafka.bootstrap },
    };
  }
}
