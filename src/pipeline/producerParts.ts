import type { TableConfig, TunnelConfig } from '../config/load.js';
import type { TableShape } from '../capture/catalog.js';
import type { TableRef } from '../contracts/envelope.js';
import { TableEncoder, type SchemaRegistryClient } from '../contracts/codec.js';
import type { Health } from '../instruments/health.js';
import { tableId } from '../names.js';

/** What every table's producer (trigger or logical capture) derives from its config before it runs. */
export interface ProducerParts {
  id: string;
  /** Its name in health. */
  part: string;
  ref: TableRef;
  masked: Set<string>;
  encoder: TableEncoder;
}

/** A table producer's name in health. */
export const producerPart = (id: string): string => `producer ${id}`;

/** The parts of a table's producer, marked starting in health; `transactions`: envelopes carry transaction blocks. */
export function producerParts(config: TunnelConfig, table: TableConfig, shape: TableShape, health: Health, registry: SchemaRegistryClient | undefined, transactions = false): ProducerParts {
  const id = tableId(table);
  const part = producerPart(id);
  health.set(part, 'starting');
  const db = new URL(config.sourceUrl).pathname.slice(1);
  return {
    id,
    part,
    ref: { db, schema: table.schema, name: table.name, key: shape.key, topic: table.topic, topicPrefix: config.topicPrefix, transactions },
    masked: new Set(Object.keys(table.mask)),
    encoder: new TableEncoder(table.format ?? config.format, table.topic, registry, transactions),
  };
}
