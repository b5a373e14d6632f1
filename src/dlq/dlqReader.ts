import { randomUUID } from 'node:crypto';
import { Consumer, stringDeserializer } from '../transport/kafkaLib.js';
import type { RecordDecoder } from '../contracts/recordDecoder.js';
import { isFramed } from '../contracts/wireFormat.js';
import type pg from 'pg';
import { closeConsumer, endOffsets, kafkaClientOptions, unreachableBroker, type KafkaAccess } from '../transport/kafka.js';
import { deadLetterHeaders } from '../validate/deadLetters.js';
import type { DeadLetterClass } from '../errors.js';
import { clientIds, compositeKey, oneOffGroupId, topicOfDlq } from '../names.js';

/** A dead letter as stored in a DLQ topic, with its reason read back from the headers. */
export interface StoredLetter {
  dlqTopic: string;
  partition: number;
  offset: string;
  key: string | undefined;
  value: string | undefined;
  errorClass: DeadLetterClass;
  code?: string;
  rule?: string;
  message: string;
  original: { topic: string; partition: number; offset: string };
  time: string;
  attempt: number;
  /** How `dlq replay` or `dlq discard` resolved it (see resolutions.ts), if they did. */
  resolved?: string;
  headers: Record<string, string>;
}

/**
 * A letter's value as text: JSON as it is; the wire format (Avro, JSON Schema) decoded through the registry
 * into the JSON envelope (its schema id checked against the table topic's subject), so it reads and
 * replays like any letter; else a line saying what it is.
 */
async function valueText(dlqTopic: string, bytes: Buffer | undefined, decoder: RecordDecoder | undefined): Promise<string | undefined> {
  if (bytes === undefined || bytes === null) return undefined;
  if (!isFramed(bytes)) return bytes.toString('utf8');
  const d = decoder ? await decoder.decode(topicOfDlq(dlqTopic), undefined, bytes) : { poison: 'no schema registry is configured (registryUrl)' };
  return 'poison' in d ? `(${bytes.length} bytes in the wire format, not readable: ${d.poison})` : d.value;
}

/** Reads every record of the DLQ topics, from the start to the end offsets seen when the read began. */
export async function readDeadLetters(kafka: KafkaAccess, dlqTopics: string[], decoder?: RecordDecoder): Promise<StoredLetter[]> {
  const ends = await endOffsets(kafka, dlqTopics);
  const remaining = new Map<string, bigint>();
  for (const [topic, offsets] of ends) offsets.forEach((end, p) => end > 0n && remaining.set(compositeKey(topic, p), end));
  if (remaining.size === 0) return [];
  // A group of its own, never committed: it reads everything and leaves nothing behind.
  const consumer = new Consumer({
    clientId: clientIds.dlqReader,
    groupId: oneOffGroupId(clientIds.dlqReader, randomUUID()),
    ...kafkaClientOptions(kafka),
    deserializers: { key: stringDeserializer, value: (b?: Buffer) => b, headerKey: stringDeserializer, headerValue: stringDeserializer },
    autocommit: false,
  });
  const letters: StoredLetter[] = [];
  try {
    let stream;
    try {
      stream = await consumer.consume({ topics: dlqTopics, mode: 'earliest', maxWaitTime: 200 });
    } catch (err) {
      throw unreachableBroker(kafka.kafkaBrokers, err);
    }
    for await (const m of stream) {
      const id = compositeKey(m.topic, m.partition);
      const end = remaining.get(id);
      if (end !== undefined && m.offset < end) letters.push(toLetter(m.topic, m.partition, m.offset, m.key, await valueText(m.topic, m.value, decoder), m.headers));
      if (end !== undefined && m.offset >= end - 1n) remaining.delete(id);
      if (remaining.size === 0) break;
    }
  } finally {
    await closeConsumer(consumer);
  }
  return letters;
}

function toLetter(topic: string, partition: number, offset: bigint, key: string | undefined, value: string | undefined, raw: Map<string, string>): StoredLetter {
  const headers = Object.fromEntries([...raw].map(([k, v]) => [String(k), String(v)]));
  return {
    dlqTopic: topic,
    partition,
    offset: offset.toString(),
    key: key ?? undefined,
    value: value ?? undefined,
    errorClass: (headers[deadLetterHeaders.errorClass] ?? 'poison') as DeadLetterClass,
    code: headers[deadLetterHeaders.code],
    rule: headers[deadLetterHeaders.rule],
    message: headers[deadLetterHeaders.message] ?? '(no reason header: not written by pgtunnel)',
    original: {
      topic: headers[deadLetterHeaders.topic] ?? topicOfDlq(topic),
      partition: Number(headers[deadLetterHeaders.partition] ?? -1),
      offset: headers[deadLetterHeaders.offset] ?? '-1',
    },
    time: headers[deadLetterHeaders.time] ?? '',
    attempt: Number(headers[deadLetterHeaders.attempt] ?? 1),
    headers,
  };
}

/** Marks each letter with its resolution, if `dlq replay` resolved it (kept in the target). */
export async function markResolved(target: pg.Client, letters: StoredLetter[]): Promise<void> {
  const { rows } = await target.query<{ topic: string; partition: number; offset: string; outcome: string }>(
    `SELECT topic, partition, "offset"::text AS offset, outcome FROM pgtunnel.dlq_resolved WHERE topic = ANY($1::text[])`,
    [[...new Set(letters.map((l) => l.dlqTopic))]],
  );
  const outcome = new Map(rows.map((r) => [compositeKey(r.topic, r.partition, r.offset), r.outcome]));
  for (const l of letters) l.resolved = outcome.get(compositeKey(l.dlqTopic, l.partition, l.offset));
}
