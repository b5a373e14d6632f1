/** A change as read from the change table. */
export interface ChangeRow {
  changeId: number | string;
  action: string;
  txid: string;
  capturedMs: number;
  row: Record<string, unknown>;
}

/** Debezium's ops: create, update, delete, read (snapshot), truncate. */
export type Op = 'c' | 'u' | 'd' | 'r' | 't';

export interface EnvelopeSource {
  db: string;
  schema: string;
  table: string;
  txid: string | null;
  changeId: string | null;
  snapshot: boolean;
  tsMs: number;
}

export interface Envelope {
  op: Op;
  before: Record<string, unknown> | null;
  after: Record<string, unknown> | null;
  source: EnvelopeSource;
  tsMs: number;
}

export interface OutMessage {
  topic: string;
  key: string | undefined;
  value: string | undefined;
  /** Unset: by key. 'all': one copy in every partition (a truncate must pass every key's changes). */
  partition?: number | 'all';
  headers?: Map<string, string>;
}

const opOfAction: Record<string, Op> = { INSERT: 'c', UPDATE: 'u', DELETE: 'd', TRUNCATE: 't' };

export function opOf(action: string): Op | undefined {
  return opOfAction[action];
}

/** The key of a row as JSON with the key columns in key order: `{"emp_id":7}`. */
export function keyOf(row: Record<string, unknown>, key: string[]): string {
  const out: Record<string, unknown> = {};
  for (const k of key) out[k] = row[k] ?? null;
  return JSON.stringify(out);
}

export interface TableRef {
  db: string;
  schema: string;
  name: string;
  key: string[];
  topic: string;
}

/** One change becomes its envelope, and a delete also a tombstone so compacted topics forget the key. */
export function changeToMessages(table: TableRef, change: ChangeRow, op: Op, nowMs: number): OutMessage[] {
  const envelope: Envelope = {
    op,
    before: op === 'd' ? change.row : null,
    after: op === 'd' || op === 't' ? null : change.row,
    source: {
      db: table.db,
      schema: table.schema,
      table: table.name,
      txid: change.txid,
      changeId: String(change.changeId),
      snapshot: false,
      tsMs: Math.round(change.capturedMs),
    },
    tsMs: nowMs,
  };
  if (op === 't') return [{ topic: table.topic, key: undefined, value: JSON.stringify(envelope), partition: 'all' }];
  const key = keyOf(change.row, table.key);
  const messages: OutMessage[] = [{ topic: table.topic, key, value: JSON.stringify(envelope) }];
  if (op === 'd') messages.push({ topic: table.topic, key, value: undefined });
  return messages;
}

/** A row read by the snapshot (op "r"). */
export function snapshotRowToMessage(table: TableRef, row: Record<string, unknown>, nowMs: number): OutMessage {
  const envelope: Envelope = {
    op: 'r',
    before: null,
    after: row,
    source: { db: table.db, schema: table.schema, table: table.name, txid: null, changeId: null, snapshot: true, tsMs: nowMs },
    tsMs: nowMs,
  };
  return { topic: table.topic, key: keyOf(row, table.key), value: JSON.stringify(envelope) };
}

export class PoisonError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PoisonError';
  }
}

function parseObject(text: string, what: string): Record<string, unknown> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new PoisonError(`${what} is not JSON`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new PoisonError(`${what} is not a JSON object`);
  return parsed as Record<string, unknown>;
}

/** Parses and checks an envelope read from Kafka; anything else is poison, never silently dropped. */
export function decodeEnvelope(key: string | undefined, value: string): Envelope {
  const e = parseObject(value, 'value') as Partial<Envelope>;
  if (e.op !== 'c' && e.op !== 'u' && e.op !== 'd' && e.op !== 'r' && e.op !== 't') throw new PoisonError(`unknown op ${JSON.stringify(e.op)}`);
  if (e.op === 't') return e as Envelope;
  const image = e.op === 'd' ? e.before : e.after;
  if (typeof image !== 'object' || image === null || Array.isArray(image)) {
    throw new PoisonError(`op ${e.op} needs a row object in "${e.op === 'd' ? 'before' : 'after'}"`);
  }
  if (key === undefined) throw new PoisonError('message has no key');
  for (const [k, v] of Object.entries(parseObject(key, 'key'))) {
    if (image[k] !== v) throw new PoisonError(`key ${key} does not match the row's ${k}`);
  }
  return e as Envelope;
}
