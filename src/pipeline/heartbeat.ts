import type { TunnelConfig } from '../config/load.js';
import { heartbeatTopic } from '../names.js';
import type { EnvelopeProducer } from '../transport/kafka.js';

/**
 * Heartbeats (Debezium's heartbeat topic as the model), opt-in with `heartbeatIntervalMs`: while a table
 * has nothing to publish, its producer writes a record `{"ts_ms", "table", "topic"}` keyed by the table on
 * `<prefix>.heartbeat` once per interval. `ts_ms` is when the empty read began, so every change of the table
 * committed before it is already in the table's topic: a consumer seeing heartbeats and no changes knows the
 * table is idle, and one seeing neither knows its producer is stuck or down. On their own topic, not the
 * table's partitions, so the table topics' consumers (Debezium's included) never meet an unknown record.
 */
export class Heartbeat {
  private readonly topic: string;
  private lastAt = Date.now();

  constructor(
    private readonly config: TunnelConfig,
    private readonly table: string,
    private readonly tableTopic: string,
    private readonly producer: EnvelopeProducer,
  ) {
    this.topic = heartbeatTopic(config.topicPrefix);
  }

  /** Something was published: the table's topic itself shows the producer is alive. */
  busy(): void {
    this.lastAt = Date.now();
  }

  /** After a read that found nothing (begun at `readAt`), a heartbeat when the interval has passed. */
  async idle(readAt: number): Promise<void> {
    if (this.config.heartbeatIntervalMs === 0 || readAt - this.lastAt < this.config.heartbeatIntervalMs) return;
    const key = JSON.stringify({ table: this.table });
    await this.producer.publish([{ topic: this.topic, key, value: JSON.stringify({ ts_ms: readAt, table: this.table, topic: this.tableTopic }) }]);
    this.lastAt = readAt;
  }
}
