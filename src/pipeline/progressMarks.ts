import type { TunnelConfig } from '../config/load.js';
import { progressMessage } from '../contracts/transaction.js';
import { transactionTopic } from '../names.js';
import { EndOffsetReader, type EnvelopeProducer } from '../transport/kafka.js';

/** While a table keeps publishing, its progress goes out at most this often (each mark is a Kafka round trip). */
const busyEveryMs = 100;
/** An unchanged mark is sent again this often: an applier that restarted past the last one still hears of it. */
const repeatMs = 1000;

/**
 * With `apply: transactional`, the table producer's progress on the transaction topic: after a complete batch
 * (everything visible in its snapshot is in Kafka), the snapshot as a PROGRESS record. Idle tables report too —
 * an empty batch's snapshot moves whenever anything commits in the source — or every transaction would wait
 * for them. The applier releases a transaction once every table's progress has passed it.
 */
export class ProgressMarks {
  private readonly topic: string;
  private readonly on: boolean;
  private sent: string | undefined;
  private sentAt = 0;
  private readonly ends: EndOffsetReader;
  private listed: bigint[] | undefined;

  /** `tableTopic`: the table's topic, whose end offsets each mark carries. */
  constructor(config: TunnelConfig, private readonly table: string, private readonly tableTopic: string, private readonly producer: EnvelopeProducer) {
    this.topic = transactionTopic(config.topicPrefix);
    this.on = config.apply === 'transactional';
    this.ends = new EndOffsetReader(config);
  }

  /**
   * After a step: `checkpoint` is the snapshot of the last complete batch (null while a batch is under way or
   * before the first); `busy`: more is waiting, so the mark may wait for the next step.
   */
  async after(checkpoint: string | null, busy: boolean): Promise<void> {
    if (!this.on) return;
    // a busy step published: the ends listed before no longer cover it
    if (busy) this.listed = undefined;
    if (checkpoint === null) return;
    const now = Date.now();
    const due = checkpoint === this.sent ? now - this.sentAt >= repeatMs : !busy || now - this.sentAt >= busyEveryMs;
    if (!due) return;
    // the ends as of now, after Kafka took the batch: the applier counts the mark once it read this far, not as
    // far as the topic reaches when it reads the mark (behind a backlog that held every transaction of it)
    // (an idle table's marks reuse them: nothing was published since)
    this.listed ??= (await this.ends.read([this.tableTopic], true)).get(this.tableTopic);
    await this.producer.publish([progressMessage(this.topic, this.table, checkpoint, now, this.listed)]);
    this.sent = checkpoint;
    this.sentAt = now;
  }

  async close(): Promise<void> {
    await this.ends.close();
  }
}
