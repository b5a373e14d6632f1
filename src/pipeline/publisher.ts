import type { CaptureState } from '../capture/stateStore.js';
import { CommittedReader } from '../transport/committedReader.js';
import type { WireMessage } from '../contracts/envelope.js';
import { EnvelopeProducer, ensureTopics, type EnvelopeTransaction, type KafkaAccess } from '../transport/kafka.js';
import { partitionOf } from '../transport/partitions.js';
import { failpoint } from './failpoints.js';
import { clientIds, positionsTopic, tableProducerClientId, transactionalId } from '../names.js';

/**
 * One batch on its way to Kafka. `commit` makes it durable together with the position it moves the
 * checkpoint to; the source checkpoint (state + change-table cleanup) is written after it.
 */
export interface Publication {
  /** `queued`: at-least-once only, called once a later send would land after these messages (EnvelopeProducer.publish). */
  send(messages: WireMessage[], queued?: () => void): Promise<void>;
  commit(stored: CaptureState, after: CaptureState): Promise<void>;
  abort(): Promise<void>;
}

export interface Publisher {
  begin(): Promise<Publication>;
  close(): Promise<void>;
}

/** At-least-once: every send is acknowledged on its own; a crash before the source checkpoint re-sends the batch. */
export function atLeastOnce(producer: EnvelopeProducer): Publisher {
  const publication: Publication = { send: (messages, queued) => producer.publish(messages, queued), commit: async () => {}, abort: async () => {} };
  return { begin: async () => publication, close: async () => {} };
}

/**
 * What identifies a stored checkpoint: its position, the snapshot's progress, and when it was stored (a
 * reinstalled capture starts from the same position as the first install did, but not at the same time).
 */
type Mark = Pick<CaptureState, 'phase' | 'snapshotRowsDone' | 'updatedAt'> & { prev: string | null; cur: string | null; lastChangeId: number };

/** A position record: the source checkpoint the batch started from, and the state after it. */
export interface PositionRecord {
  table: string;
  before: Mark;
  after: CaptureState;
}

function mark(state: CaptureState): Mark {
  return { phase: state.phase, snapshotRowsDone: state.snapshotRowsDone, updatedAt: state.updatedAt, prev: state.position.prev, cur: state.position.cur, lastChangeId: state.position.lastChangeId };
}

const sameMark = (a: Mark, b: Mark) => a.updatedAt === b.updatedAt && a.phase === b.phase && a.snapshotRowsDone === b.snapshotRowsDone && a.prev === b.prev && a.cur === b.cur && a.lastChangeId === b.lastChangeId;

/**
 * Pure: the state to adopt when Kafka committed a batch whose source checkpoint was never written (a crash
 * between the two): the source still holds the batch's starting checkpoint. Anything else (the source
 * caught up, or moved on by hand, e.g. a snapshot restart) keeps the source's state.
 */
export function adoptable(record: PositionRecord | undefined, stored: CaptureState): CaptureState | undefined {
  if (!record || !sameMark(record.before, mark(stored)) || sameMark(record.before, mark(record.after))) return undefined;
  return { ...record.after, updatedAt: undefined };
}

/**
 * Exactly-once into Kafka, KIP-618 style: a batch's envelopes and a position record for its table commit
 * in one Kafka transaction. The transactionalId is the table's, so only one publisher per table exists:
 * the leader that starts fences its predecessor, and a zombie's open transaction is aborted.
 * Dead letters go through the shared (non-transactional) producer: the DLQ stays free of transaction
 * markers, and a dead letter sent twice is harmless.
 */
export class ExactlyOnce implements Publisher {
  private readonly topic: string;

  private constructor(
    private readonly kafka: KafkaAccess,
    private readonly table: string,
    private readonly tableTopic: string,
    private readonly producer: EnvelopeProducer,
    private readonly letters: EnvelopeProducer,
    topicPrefix: string,
  ) {
    this.topic = positionsTopic(topicPrefix);
  }

  static async open(kafka: KafkaAccess & { topicPrefix: string }, table: string, tableTopic: string, letters: EnvelopeProducer): Promise<ExactlyOnce> {
    await ensureTopics(kafka, [positionsTopic(kafka.topicPrefix)], 1, [{ name: 'cleanup.policy', value: 'compact' }]);
    const producer = new EnvelopeProducer(kafka, tableProducerClientId(table), { transactionalId: transactionalId(tableTopic) });
    try {
      await producer.fence();
    } catch (err) {
      await producer.close();
      throw err;
    }
    return new ExactlyOnce(kafka, table, tableTopic, producer, letters, kafka.topicPrefix);
  }

  /** The newest position record of this table that Kafka committed (read after fencing, so none is in flight). */
  async lastCommitted(): Promise<PositionRecord | undefined> {
    const reader = new CommittedReader(this.kafka, clientIds.positions);
    try {
      const ends = await reader.ends(this.topic);
      const partition = partitionOf(this.table, ends.length);
      const end = ends[partition] ?? 0n;
      // other tables share the topic: look back in widening windows until this table's record shows
      for (let window = 256n; ; window *= 8n) {
        const from = end > window ? end - window : 0n;
        const mine = (await reader.read(this.topic, partition, from, end)).filter((r) => r.key?.toString() === this.table);
        if (mine.length > 0) return JSON.parse(mine.at(-1)!.value!.toString()) as PositionRecord;
        if (from === 0n) return undefined;
      }
    } finally {
      await reader.close();
    }
  }

  async begin(): Promise<Publication> {
    let tx: EnvelopeTransaction | undefined;
    const open = async () => (tx ??= await this.producer.begin());
    return {
      send: async (messages) => {
        const letters = messages.filter((m) => m.topic !== this.tableTopic);
        if (letters.length > 0) await this.letters.publish(letters);
        if (letters.length < messages.length) await (await open()).publish(messages.filter((m) => m.topic === this.tableTopic));
      },
      commit: async (stored, after) => {
        const record: PositionRecord = { table: this.table, before: mark(stored), after: { ...after, updatedAt: undefined } };
        const t = await open();
        await t.publish([{ topic: this.topic, key: this.table, value: JSON.stringify(record) }]);
        await t.commit();
        failpoint('producer.after-kafka-commit');
      },
      abort: async () => {
        await tx?.abort();
      },
    };
  }

  async close(): Promise<void> {
    await this.producer.close();
  }
}
