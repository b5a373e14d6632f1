/** Debezium's `transaction` block of an envelope: which source transaction, and the event's place in it. */
export interface TransactionBlock {
  /** The source transaction id (txid), as text. */
  id: string;
  /** 1..event_count over the whole transaction. */
  totalOrder: number;
  /** 1..count within this table (data collection). */
  dataCollectionOrder: number;
}

/** What an END event counts: every event of the transaction, and per table (`schema.table`). */
export interface TransactionEnd {
  eventCount: number;
  dataCollections: { dataCollection: string; eventCount: number }[];
}

/** The block's JSON text, in Debezium's field names. */
export function transactionBlockText(t: TransactionBlock): string {
  return `{"id":${JSON.stringify(t.id)},"total_order":${t.totalOrder},"data_collection_order":${t.dataCollectionOrder}}`;
}

/**
 * A BEGIN or END event of `<prefix>.transaction`, as Debezium writes it: keyed by the transaction id,
 * counts only on END (null on BEGIN).
 */
export function transactionEventMessage(topic: string, id: string, tsMs: number, end?: TransactionEnd): { topic: string; key: string; value: string } {
  const collections = end ? `[${end.dataCollections.map((d) => `{"data_collection":${JSON.stringify(d.dataCollection)},"event_count":${d.eventCount}}`).join(',')}]` : 'null';
  const value = `{"status":"${end ? 'END' : 'BEGIN'}","id":${JSON.stringify(id)},"ts_ms":${tsMs},"event_count":${end ? end.eventCount : 'null'},"data_collections":${collections}}`;
  return { topic, key: `{"id":${JSON.stringify(id)}}`, value };
}

/**
 * A table producer's progress on `<prefix>.transaction` (pgtunnel's own status beside BEGIN and END): every
 * source transaction visible in `snapshot` (a pg_snapshot, the producer's checkpoint) that wrote `table` is
 * in Kafka. Keyed by the table. `apply: transactional` releases a transaction only once every table's
 * progress has passed it, so nothing committed before it can still arrive.
 */
export function progressMessage(topic: string, table: string, snapshot: string, tsMs: number, ends?: bigint[]): { topic: string; key: string; value: string } {
  const endsText = ends ? `,"ends":[${ends.join(',')}]` : '';
  return { topic, key: JSON.stringify({ table }), value: `{"status":"PROGRESS","table":${JSON.stringify(table)},"snapshot":${JSON.stringify(snapshot)},"ts_ms":${tsMs}${endsText}}` };
}

/**
 * Pure: a PROGRESS record's table, snapshot and, when its producer listed them, the table topic's end offsets
 * taken before it was sent (every record of the snapshot's transactions lies below them); undefined for anything else.
 */
export function progressOf(value: string): { table: string; snapshot: string; ends?: bigint[] } | undefined {
  if (!value.startsWith('{"status":"PROGRESS"')) return undefined;
  let v: { table?: unknown; snapshot?: unknown; ends?: unknown };
  try {
    v = JSON.parse(value) as typeof v;
  } catch {
    return undefined;
  }
  if (typeof v.table !== 'string' || typeof v.snapshot !== 'string') return undefined;
  const ends = Array.isArray(v.ends) && v.ends.every((e) => Number.isSafeInteger(e) && (e as number) >= 0) ? (v.ends as number[]).map(BigInt) : undefined;
  return ends ? { table: v.table, snapshot: v.snapshot, ends } : { table: v.table, snapshot: v.snapshot };
}
