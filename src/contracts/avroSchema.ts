import type { ColumnKind, ColumnType } from './columnKinds.js';

/**
 * Avro schemas of a table's topic, shaped as Debezium's: `<topic>.Key` (the key columns), `<topic>.Value`
 * (the captured columns) inside `<topic>.Envelope` {before, after, source: io.pgtunnel.Source, op, ts_ms}.
 * Semantic types carry Debezium's `connect.name`; what the consumer needs to rebuild exact text and that
 * Avro cannot say (a numeric as text, a composite as JSON) carries `pgtunnel.kind`.
 */

export type AvroSchema = string | Record<string, unknown> | AvroSchema[];

/** Avro names allow [A-Za-z0-9_], not starting with a digit: other characters become _, as Debezium does. */
export function avroName(name: string): string {
  const s = name.replace(/[^A-Za-z0-9_]/g, '_');
  return /^[0-9]/.test(s) || s === '' ? `_${s}` : s;
}

/** `pgtunnel.public.employees` stays; `my-prefix.public.1x` → `my_prefix.public._1x`. */
export function avroNamespace(topic: string): string {
  return topic.split('.').map(avroName).join('.');
}

const dbz = (type: string, name: string, extra: Record<string, unknown> = {}) => ({ type, 'connect.version': 1, 'connect.name': name, ...extra });

function scalarSchema(c: ColumnType): AvroSchema {
  const kinds: Record<ColumnKind, () => AvroSchema> = {
    int: () => 'int',
    long: () => 'long',
    float: () => 'float',
    double: () => 'double',
    decimal: () => ({
      type: 'bytes',
      logicalType: 'decimal',
      precision: c.precision,
      scale: c.scale,
      'connect.version': 1,
      'connect.name': 'org.apache.kafka.connect.data.Decimal',
      'connect.parameters': { scale: String(c.scale), 'connect.decimal.precision': String(c.precision) },
    }),
    numeric: () => ({ type: 'string', 'pgtunnel.kind': 'numeric' }),
    boolean: () => 'boolean',
    string: () => 'string',
    date: () => dbz('int', 'io.debezium.time.Date'),
    timestamp: () => dbz('long', 'io.debezium.time.MicroTimestamp'),
    timestamptz: () => dbz('string', 'io.debezium.time.ZonedTimestamp'),
    time: () => dbz('long', 'io.debezium.time.MicroTime'),
    uuid: () => dbz('string', 'io.debezium.data.Uuid'),
    json: () => dbz('string', 'io.debezium.data.Json'),
    bytes: () => 'bytes',
    enum: () => dbz('string', 'io.debezium.data.Enum', { 'connect.parameters': { allowed: (c.allowed ?? []).join(',') } }),
    raw: () => dbz('string', 'io.debezium.data.Json', { 'pgtunnel.kind': 'raw' }),
  };
  return kinds[c.kind]();
}

function columnSchema(c: ColumnType): AvroSchema {
  let s = scalarSchema(c);
  for (let d = 0; d < c.dims; d++) s = { type: 'array', items: ['null', s] };
  return s;
}

function field(c: ColumnType): Record<string, unknown> {
  const name = avroName(c.name);
  const type = columnSchema(c);
  const f: Record<string, unknown> = c.nullable ? { name, type: ['null', type], default: null } : { name, type };
  if (name !== c.name) f['pgtunnel.column'] = c.name;
  return f;
}

export function keySchema(topic: string, key: ColumnType[]): AvroSchema {
  const ns = avroNamespace(topic);
  return { type: 'record', name: 'Key', namespace: ns, fields: key.map((c) => field({ ...c, nullable: false })), 'connect.name': `${ns}.Key` };
}

/**
 * Every value field is an optional union with default null, NOT NULL columns too: adding any column on the
 * source (NOT NULL DEFAULT included) stays a BACKWARD-compatible change of the subject.
 */
export function valueSchema(topic: string, columns: ColumnType[]): AvroSchema {
  const ns = avroNamespace(topic);
  return { type: 'record', name: 'Value', namespace: ns, fields: columns.map((c) => field({ ...c, nullable: true })), 'connect.name': `${ns}.Value` };
}

export const sourceSchema = {
  type: 'record',
  name: 'Source',
  namespace: 'io.pgtunnel',
  fields: [
    { name: 'version', type: 'string' },
    { name: 'connector', type: 'string' },
    { name: 'name', type: 'string' },
    { name: 'ts_ms', type: 'long' },
    { name: 'snapshot', type: [dbz('string', 'io.debezium.data.Enum', { 'connect.parameters': { allowed: 'true,last,false,incremental' }, 'connect.default': 'false' }), 'null'], default: 'false' },
    { name: 'db', type: 'string' },
    { name: 'schema', type: 'string' },
    { name: 'table', type: 'string' },
    { name: 'txId', type: ['null', 'long'], default: null },
    { name: 'lsn', type: ['null', 'long'], default: null },
    { name: 'schema_version', type: ['null', 'int'], default: null },
  ],
  'connect.name': 'io.pgtunnel.Source',
};

/** Debezium's `transaction` block (transaction metadata on). */
export const transactionBlockSchema = {
  type: 'record',
  name: 'TransactionBlock',
  namespace: 'io.pgtunnel',
  fields: [
    { name: 'id', type: 'string' },
    { name: 'total_order', type: 'long' },
    { name: 'data_collection_order', type: 'long' },
  ],
  'connect.name': 'event.block',
};

export function envelopeSchema(topic: string, columns: ColumnType[], transactions = false): AvroSchema {
  const ns = avroNamespace(topic);
  const transaction = transactions ? [{ name: 'transaction', type: ['null', transactionBlockSchema], default: null }] : [];
  return {
    type: 'record',
    name: 'Envelope',
    namespace: ns,
    fields: [
      { name: 'before', type: ['null', valueSchema(topic, columns)], default: null },
      { name: 'after', type: ['null', 'Value'], default: null },
      { name: 'source', type: sourceSchema },
      { name: 'op', type: 'string' },
      { name: 'ts_ms', type: ['null', 'long'], default: null },
      ...transaction,
    ],
    'connect.version': 1,
    'connect.name': `${ns}.Envelope`,
  };
}

/**
 * The columns a schema describes, read back from the schema alone (the consumer has only the writer's
 * schema): name, kind, nullability, dimensions, decimal scale.
 */
export function columnsOfRecord(record: { fields: { name: string; type: AvroSchema; 'pgtunnel.column'?: string }[] }): ColumnType[] {
  return record.fields.map((f) => {
    let t = f.type;
    let nullable = false;
    if (Array.isArray(t)) {
      nullable = t.includes('null');
      t = t.find((x) => x !== 'null')!;
    }
    let dims = 0;
    while (typeof t === 'object' && !Array.isArray(t) && t.type === 'array') {
      dims++;
      const items = t.items as AvroSchema;
      t = Array.isArray(items) ? items.find((x) => x !== 'null')! : items;
    }
    const name = f['pgtunnel.column'] ?? f.name;
    return { name, nullable, dims, pgType: typeof t === 'string' ? t : JSON.stringify(t), ...kindOf(t) };
  });
}

const byConnectName: Record<string, ColumnKind> = {
  'io.debezium.time.Date': 'date',
  'io.debezium.time.MicroTimestamp': 'timestamp',
  'io.debezium.time.ZonedTimestamp': 'timestamptz',
  'io.debezium.time.MicroTime': 'time',
  'io.debezium.data.Uuid': 'uuid',
  'io.debezium.data.Json': 'json',
  'io.debezium.data.Enum': 'enum',
};

function kindOf(t: AvroSchema): { kind: ColumnKind; scale?: number; precision?: number } {
  if (typeof t === 'string') {
    const plain: Record<string, ColumnKind> = { int: 'int', long: 'long', float: 'float', double: 'double', boolean: 'boolean', string: 'string', bytes: 'bytes' };
    return { kind: plain[t] ?? 'string' };
  }
  if (Array.isArray(t)) return { kind: 'string' };
  if (t.logicalType === 'decimal') return { kind: 'decimal', scale: Number(t.scale ?? 0), precision: Number(t.precision) };
  if (t['pgtunnel.kind'] === 'numeric' || t['pgtunnel.kind'] === 'raw') return { kind: t['pgtunnel.kind'] };
  const named = byConnectName[String(t['connect.name'])];
  if (named) return { kind: named };
  return kindOf(t.type as AvroSchema);
}
