import type { TestContext } from 'node:test';
import { EnvelopeProducer, type KafkaAccess } from '../../src/transport/kafka.js';
import { snapshotRowToMessage } from '../../src/contracts/envelope.js';
import { onCleanup, uniqueName, waitFor } from './services.js';

/** Snapshot envelopes of employees ids [from, to), keys `{"emp_id":<id>}`, each row `width` bytes of text wider. */
export function employeesPage(topic: string, from: number, to: number, width = 200) {
  const table = { db: 'db1', schema: 'public', name: 'employees', key: ['emp_id'], topic, topicPrefix: 'test' };
  const out = [];
  for (let id = from; id < to; id++) out.push(snapshotRowToMessage(table, { row: `{"emp_id":${id},"first_name":"${'x'.repeat(width)}"}`, key: `{"emp_id":${id}}` }, 1, 1_700_000_000_000));
  return out;
}

/** The id in an employees record's key. */
export const employeeIdOf = (key: Buffer | undefined) => Number(/"emp_id":(-?\d+)/.exec(key!.toString())![1]);

/**
 * A producer publishing in Kafka transactions, closed after the test. A fresh broker answers "retry" until its
 * transaction coordinator is up, and a failed begin stays the client's open transaction: each try is a new producer.
 */
export async function transactionalProducer(t: TestContext, kafka: KafkaAccess, transactionalId: string): Promise<EnvelopeProducer> {
  const producer = await waitFor('a transactional producer', async () => {
    const p = new EnvelopeProducer(kafka, uniqueName('tx_writer'), { transactionalId });
    try {
      await p.fence();
      return p;
    } catch {
      await p.close();
      return undefined;
    }
  }, 60_000, 200);
  onCleanup(t, () => producer.close());
  return producer;
}
