import path from 'node:path';
import { embeddedDefaults } from '../config/load.js';
import type { Logger } from '../observe/log.js';
import { KafkaBroker } from './kafkaBroker.js';
import { PostgresCluster } from './postgresCluster.js';

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

  constructor(home: string, log: Logger, ports: StackPorts = embeddedDefaults, root = home) {
    this.source = new PostgresCluster('source', path.join(root, 'pg'), ports.sourcePort, log);
    this.target = new PostgresCluster('target', path.join(root, 'pg'), ports.targetPort, log);
    this.kafka = new KafkaBroker(path.join(root, 'kafka'), path.join(home, 'kafka', 'libs'), ports.kafkaPort, ports.controllerPort, log);
  }

  /** Starts what is not running; returns the parts this call started (only those may be stopped by it). */
  async up(sourceDb: string = embeddedDefaults.sourceDb, targetDb: string = embeddedDefaults.targetDb): Promise<StackPart[]> {
    const started: StackPart[] = [];
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
