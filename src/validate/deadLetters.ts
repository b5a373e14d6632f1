import type { DecodedEnvelope } from '../contracts/envelope.js';
import type { WireMessage } from '../contracts/envelope.js';
import type { EnvelopeProducer } from '../transport/kafka.js';
import { capText, redact } from '../redact.js';
import { dlqTopicOf } from '../names.js';
import type { DeadLetterClass } from '../errors.js';

export interface RawRecord {
  topic: string;
  partition: number;
  offset: bigint;
  key: string | undefined;
  value: string | undefined;
  /**
   * A record that arrived in the wire format (Avro, JSON Schema): its bytes as they arrived, which its dead
   * letter keeps, and the schema id; `key` and `value` are then its JSON texts (format json's envelope).
   */
  wire?: { key?: Buffer; value?: Buffer; format: string; schemaId?: number };
  /** Why the record could not even be read (bad magic byte, unknown schema id, undecodable bytes). */
  unreadable?: string;
  /** An Avro envelope already decoded (src/contracts/avroEnvelope.ts): the apply skips parsing `value`. */
  decoded?: DecodedEnvelope;
  /** The JSON value's bytes as fetched, for the apply's byte scanner (src/contracts/envelopeScanner.ts). */
  valueBytes?: Buffer;
  /** The JSON key's bytes as fetched, when the consumer has them (the scanner reads these, not `key`). */
  keyBytes?: Buffer;
  /**
   * An Avro record not decoded yet (`wire` holds its bytes; `key` and `value` are not its texts): the byte
   * path scans it (src/contracts/avroScanner.ts), the general path decodes it first (TargetWriter).
   */
  deferred?: boolean;
}

export interface DeadLetter {
  errorClass: DeadLetterClass;
  message: string;
  code?: string;
  rule?: string;
  attempt?: number;
  /** Extra reason fields, e.g. a database error's constraint, column and detail. */
  details?: Record<string, string | undefined>;
}

/** The headers every dead letter carries, readable with any Kafka client. */
export const deadLetterHeaders = {
  errorClass: 'pgtunnel.error.class',
  code: 'pgtunnel.error.code',
  rule: 'pgtunnel.rule',
  message: 'pgtunnel.error.message',
  topic: 'pgtunnel.original.topic',
  partition: 'pgtunnel.original.partition',
  offset: 'pgtunnel.original.offset',
  time: 'pgtunnel.time',
  attempt: 'pgtunnel.attempt',
  format: 'pgtunnel.original.format',
  schemaId: 'pgtunnel.original.schema.id',
} as const;


export interface DeadLetterItem {
  record: RawRecord;
  letter: DeadLetter;
  /** Where the change came from when that is not `record` itself (a replayed dead letter). */
  original?: { topic: string; partition: number; offset: string };
}

/** The DLQ message of a dead letter: the original key and value, the reason in headers (redacted: they outlive the process). */
export function deadLetterMessage({ record, letter, original }: DeadLetterItem, now = new Date().toISOString()): WireMessage {
  const headers = new Map<string, string>([
    [deadLetterHeaders.errorClass, letter.errorClass],
    [deadLetterHeaders.message, redact(capText(letter.message))],
    [deadLetterHeaders.topic, original?.topic ?? record.topic],
    [deadLetterHeaders.partition, original ? String(original.partition) : String(record.partition)],
    [deadLetterHeaders.offset, original?.offset ?? String(record.offset)],
    [deadLetterHeaders.time, now],
    [deadLetterHeaders.attempt, String(letter.attempt ?? 1)],
  ]);
  if (letter.code) headers.set(deadLetterHeaders.code, letter.code);
  if (letter.rule) headers.set(deadLetterHeaders.rule, letter.rule);
  for (const [k, v] of Object.entries(letter.details ?? {})) if (v !== undefined) headers.set(`pgtunnel.error.${k}`, redact(capText(v)));
  if (record.wire) {
    // the original bytes; the key stays readable (its JSON text) unless it could not be read
    headers.set(deadLetterHeaders.format, record.wire.format);
    if (record.wire.schemaId !== undefined) headers.set(deadLetterHeaders.schemaId, String(record.wire.schemaId));
    return { topic: dlqTopicOf(record.topic), key: record.key, keyBytes: record.unreadable ? record.wire.key : undefined, value: record.wire.value ?? record.value, headers };
  }
  return { topic: dlqTopicOf(record.topic), key: record.key, value: record.value, headers };
}

/**
 * A change that must not be applied goes to `<topic>.dlq` with the original key and value and its reason
 * in headers; the DLQ is partitioned by the same key, so a key's dead letters stay in order.
 */
export class DeadLetterWriter {
  constructor(private readonly producer: EnvelopeProducer) {}

  async send(items: DeadLetterItem[]): Promise<void> {
    if (items.length === 0) return;
    const now = new Date().toISOString();
    await this.producer.publish(items.map((item) => deadLetterMessage(item, now)));
  }
}
