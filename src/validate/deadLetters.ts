import type { EnvelopeProducer } from '../transport/kafka.js';

export interface RawRecord {
  topic: string;
  partition: number;
  offset: bigint;
  key: string | undefined;
  value: string | undefined;
}

export type DeadLetterClass = 'poison' | 'bad-action';

/** A change that must not be applied goes to `<topic>.dlq` with its reason in headers; nothing is dropped. */
export class DeadLetterWriter {
  constructor(private readonly producer: EnvelopeProducer) {}

  async send(items: { record: RawRecord; errorClass: DeadLetterClass; message: string }[]): Promise<void> {
    if (items.length === 0) return;
    const now = new Date().toISOString();
    await this.producer.publish(
      items.map(({ record, errorClass, message }) => ({
        topic: `${record.topic}.dlq`,
        key: record.key ?? '',
        value: record.value,
        headers: new Map([
          ['pgtunnel.error.class', errorClass],
          ['pgtunnel.error.message', message],
          ['pgtunnel.original.topic', record.topic],
          ['pgtunnel.original.partition', String(record.partition)],
          ['pgtunnel.original.offset', String(record.offset)],
          ['pgtunnel.time', now],
        ]),
      })),
    );
  }
}
