import avro from 'avsc';
import { TunnelError } from '../errors.js';
import { readObject, type JsonObject } from './json.js';
import { pgtunnelVersion, type EnvelopeParts, type OutMessage, type WireMessage } from './envelope.js';
import { avroName, envelopeSchema, keySchema, type AvroSchema } from './avroSchema.js';
import type { ColumnType } from './columnKinds.js';
import { envelopeJsonSchema, keyJsonSchema } from './jsonSchema.js';
import { toAvro, UnencodableError } from './values.js';
import { frame, frameEncoded, magicByte } from './wireFormat.js';
import { AvroRowPlan, type AvroSnapshotFrame } from './avroRows.js';
import { compositeKey, keySubject, valueSubject } from '../names.js';

export type Format = 'json' | 'avro' | 'json-schema';
import type { SchemaType } from './registry.js';

/** What the codec needs of the registry client (src/contracts/registry.ts). */
export interface SchemaRegistryClient {
  register(subject: string, schema: string, schemaType: SchemaType): Promise<number>;
  schemaById(id: number): Promise<{ schema: string; schemaType: SchemaType }>;
}

/** Longs as BigInt: an int8, a txId or a timestamp in micros never passes through a JS number. */
const bigLong = avro.types.LongType.__with({
  fromBuffer: (buf: Buffer) => buf.readBigInt64LE(),
  toBuffer: (n: bigint) => {
    const buf = Buffer.alloc(8);
    buf.writeBigInt64LE(n);
    return buf;
  },
  fromJSON: (n: unknown) => BigInt(n as string),
  toJSON: (n: bigint) => Number(n),
  isValid: (n: unknown) => typeof n === 'bigint',
  compare: (a: bigint, b: bigint) => (a === b ? 0 : a < b ? -1 : 1),
});

/** avsc applies its registry to the name `long` only: `{"type":"long","connect.name":…}` becomes `long` for it. */
function withPlainLongs(schema: AvroSchema): AvroSchema {
  if (Array.isArray(schema)) return schema.map(withPlainLongs);
  if (typeof schema !== 'object' || schema === null) return schema;
  if (schema.type === 'long' && schema.logicalType === undefined) return 'long';
  const out: Record<string, unknown> = { ...schema };
  if (schema.type !== undefined) out.type = withPlainLongs(schema.type as AvroSchema);
  if (schema.items !== undefined) out.items = withPlainLongs(schema.items as AvroSchema);
  if (Array.isArray(schema.fields)) out.fields = (schema.fields as Record<string, unknown>[]).map((f) => ({ ...f, type: withPlainLongs(f.type as AvroSchema) }));
  return out;
}

export function avroType(schema: AvroSchema): avro.Type {
  return avro.Type.forSchema(withPlainLongs(schema) as avro.Schema, { registry: { long: bigLong } as unknown as Record<string, avro.Type> });
}

interface Registered {
  id: number;
  type?: avro.Type;
  columns: ColumnType[];
  /** Each column's Avro field name (computed once, not per row). */
  fields: string[];
  /** The record's writer straight from row_to_json's bytes (Avro). */
  plan?: AvroRowPlan;
}


/**
 * Encodes one table's messages in its format: the envelope and key texts the producer built become the
 * Confluent wire format with the ids of `<topic>-key` / `<topic>-value`. Schemas are registered when the
 * captured columns change (the same schema text is registered once).
 */
export class TableEncoder {
  private key: Registered | undefined;
  private value: Registered | undefined;

  constructor(readonly format: Format, private readonly topic: string, private readonly registry: SchemaRegistryClient | undefined, private readonly transactions = false) {
    if (format !== 'json' && !registry) {
      throw new TunnelError('PGT_CONFIG', `format ${format} needs a schema registry`, { errorClass: 'config', hint: 'set registryUrl, or format: json' });
    }
  }

  /** The registered schema texts, for logs and `schema show`. */
  schemas: { key?: string; value?: string } = {};

  /** The registry client caches schema text → id: an unchanged schema asks the registry nothing. */
  private register(subject: string, schema: unknown): Promise<number> {
    return this.registry!.register(subject, JSON.stringify(schema), this.format === 'avro' ? 'AVRO' : 'JSON');
  }

  /** Uses (registering when new) the schemas of these value and key columns. */
  async use(version: number, columns: ColumnType[], key: ColumnType[]): Promise<void> {
    if (this.format === 'json') return;
    const values = columns.map((c) => ({ ...c, nullable: true }));
    const keys = key.map((c) => ({ ...c, nullable: false }));
    const keyDoc = this.format === 'avro' ? keySchema(this.topic, keys) : keyJsonSchema(this.topic, keys);
    const valueDoc = this.format === 'avro' ? envelopeSchema(this.topic, values, this.transactions) : envelopeJsonSchema(this.topic, values, this.transactions);
    // the key first: a value registered against a refused key would leave the pair half-changed
    const keyId = await this.register(keySubject(this.topic), keyDoc);
    const valueId = await this.register(valueSubject(this.topic), valueDoc);
    this.schemas = { key: JSON.stringify(keyDoc), value: JSON.stringify(valueDoc) };
    const avroFormat = this.format === 'avro';
    this.key = { id: keyId, columns: keys, fields: keys.map((c) => avroName(c.name)), type: avroFormat ? avroType(keyDoc as AvroSchema) : undefined, plan: avroFormat ? new AvroRowPlan(keys, false) : undefined };
    this.value = { id: valueId, columns: values, fields: values.map((c) => avroName(c.name)), type: avroFormat ? avroType(valueDoc as AvroSchema) : undefined, plan: avroFormat ? new AvroRowPlan(values, true) : undefined };
    this.derivedFrom = compositeKey(version, ...columns.map((c) => c.name));
  }

  /** What the schemas in use were derived from (the capture's version and columns). */
  private derivedFrom: string | undefined;

  /** True when the schemas in use were derived from this capture version and these columns. */
  describes(version: number, columns: string[]): boolean {
    return this.format === 'json' || this.derivedFrom === compositeKey(version, ...columns);
  }

  /** The message in the table's format; an UnencodableError names a value the format cannot carry. */
  encode(m: OutMessage): WireMessage {
    if (this.format === 'json') return m;
    const key = this.key!;
    const value = this.value!;
    if (this.format === 'json-schema') {
      return { ...m, keyBytes: m.key === undefined ? undefined : frame(key.id, Buffer.from(m.key)), value: m.value === undefined ? undefined : frame(value.id, Buffer.from(m.value)) };
    }
    const keyBytes = m.key === undefined ? undefined : frameEncoded(key.id, key.type!, this.row(readObject(m.key, 1), key));
    if (m.value === undefined) return { ...m, keyBytes, parts: undefined };
    if (!m.parts) throw new Error(`an Avro envelope of ${this.topic} needs its parts (changeToMessages, snapshotRowToMessage)`);
    return { ...m, keyBytes, value: frameEncoded(value.id, value.type!, this.record(m.parts, value)), parts: undefined };
  }

  /** The 5-byte wire format header of the key and value schemas in use (JSON Schema frames the JSON bytes behind it). */
  headers(): { key: Buffer; value: Buffer } {
    const header = (id: number) => {
      const out = Buffer.alloc(5);
      out[0] = magicByte;
      out.writeUInt32BE(id, 1);
      return out;
    };
    return { key: header(this.key!.id), value: header(this.value!.id) };
  }

  /**
   * Avro snapshot envelopes around row records written from the rows' bytes (avroRows.ts). The envelope is cut
   * from this encoder's own bytes of the same envelope with an all-null row (before: null, the after branch,
   * one null branch per column, then source, op, ts_ms), so both paths write the same bytes by construction;
   * undefined when those bytes are not of that shape or no row can take the plan.
   */
  avroSnapshotFrame(parts: EnvelopeParts): AvroSnapshotFrame | undefined {
    const value = this.value!;
    if (this.format !== 'avro' || !value.plan!.usable || !this.key!.plan!.usable) return undefined;
    const bytes = frameEncoded(value.id, value.type!, this.record({ ...parts, row: '{}' }, value));
    const rowAt = 7;
    const nulls = value.columns.length;
    if (bytes[5] !== 0 || bytes[6] !== 2 || bytes.subarray(rowAt, rowAt + nulls).some((b) => b !== 0)) return undefined;
    return { keyHeader: this.headers().key, key: this.key!.plan!, row: value.plan!, prefix: bytes.subarray(0, rowAt), suffix: bytes.subarray(rowAt + nulls) };
  }

  /** The Avro envelope from its parts: the row's text is read once, the source never was text. */
  private record({ table, op, row, source: s, tsMs, transaction: t, before }: EnvelopeParts, value: Registered): Record<string, unknown> {
    const image = row === null ? null : this.row(readObject(row, 1), value);
    const transaction = t ? { transaction: { id: t.id, total_order: BigInt(t.totalOrder), data_collection_order: BigInt(t.dataCollectionOrder) } } : this.transactions ? { transaction: null } : {};
    return {
      before: op === 'd' ? image : op === 'u' && before !== undefined ? this.row(readObject(before, 1), value) : null,
      after: op === 'd' ? null : image,
      source: {
        version: pgtunnelVersion,
        connector: 'pgtunnel',
        name: table.topicPrefix,
        ts_ms: BigInt(s.tsMs),
        snapshot: s.snapshot,
        db: table.db,
        schema: table.schema,
        table: table.name,
        txId: s.txId === null ? null : BigInt(s.txId),
        lsn: s.lsn === null ? null : BigInt(s.lsn),
        schema_version: s.schemaVersion,
      },
      op,
      ts_ms: BigInt(tsMs),
      ...transaction,
    };
  }

  private row(image: JsonObject, { columns, fields }: Registered): Record<string, unknown> {
    if (image.values.size > columns.length || [...image.values.keys()].some((k) => !columns.some((c) => c.name === k))) {
      // capture's columns changed since the schema was derived: the producer derives it again and retries
      throw new TunnelError('PGT_SCHEMA_STALE', `the columns of ${this.topic} changed since its schema was registered`, { errorClass: 'unreachable' });
    }
    const out: Record<string, unknown> = {};
    columns.forEach((c, i) => (out[fields[i]!] = toAvro(c, image.values.get(c.name))));
    return out;
  }
}

export { UnencodableError };
