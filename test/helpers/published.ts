import { CommittedReader } from '../../src/transport/committedReader.js';
import { decodeEnvelope, type Envelope } from '../../src/contracts/envelope.js';

/** Which source change an envelope carries: its transaction and change id (Debezium: source.txId, source.lsn). */
const changeOf = (e: Envelope) => `${e.source.txId}/${e.source.lsn}`;

/**
 * Every envelope a read_committed consumer sees in a table topic, counted per source change and partition
 * (a truncate goes to every partition once): `changes` distinct stream changes, `snapshotRows` every
 * snapshot row read, `duplicates` the changes (or snapshot keys) published more than once.
 */
export async function publishedChanges(brokers: string, topic: string): Promise<{ changes: number; snapshotRows: number; duplicates: string[] }> {
  const reader = new CommittedReader({ kafkaBrokers: [brokers] }, 'pgtunnel-test-reader');
  const seen = new Map<string, number>();
  let snapshotRows = 0;
  try {
    const ends = await reader.ends(topic);
    for (let partition = 0; partition < ends.length; partition++) {
      for (const r of await reader.read(topic, partition, 0n)) {
        if (r.value === null) continue; // a tombstone
        const e = decodeEnvelope(r.key?.toString(), r.value.toString());
        if (e.op === 'r') snapshotRows++;
        // a snapshot row has no source change: it is one per key
        const id = e.op === 'r' ? `${partition}:r:${r.key?.toString()}` : `${partition}:${changeOf(e)}`;
        seen.set(id, (seen.get(id) ?? 0) + 1);
      }
    }
  } finally {
    await reader.close();
  }
  return { changes: [...seen.keys()].filter((id) => !id.includes(':r:')).length, snapshotRows, duplicates: [...seen].filter(([, n]) => n > 1).map(([id, n]) => `${id} ×${n}`) };
}
