import type avro from 'avsc';
import { classify } from '../errors.js';
import { avroType, type SchemaRegistryClient } from './codec.js';
import { avroName, columnsOfRecord, type AvroSchema } from './avroSchema.js';
import type { ColumnType } from './columnKinds.js';
import { fromAvro } from './values.js';
import { isFramed, unframe } from './wireFormat.js';

/** How a record arrived: JSON text, or the wire format with the schema id it names. */
export type RecordForm = { format: 'json' } | { format: 'avro' | 'json-schema'; schemaId: number };

/** A record read back into the JSON texts the apply path reads (the envelope and key of `format: json`). */
export type DecodedJson = { key?: string; value?: string; form: { key?: RecordForm; value?: RecordForm } } | { poison: string };

type Reader = { kind: 'json' } | { kind: 'avro'; type: avro.Type; toJson: (v: Record<string, unknown>) => string };

const text = (v: unknown) => JSON.stringify(v ?? null);
const int = (v: unknown) => (v === null || v === undefined ? 'null' : String(v));

function rowText(columns: ColumnType[], row: Record<string, unknown> | null): string {
  if (row === null || row === undefined) return 'null';
  return `{${columns.map((c) => `${JSON.stringify(c.name)}:${fromAvro(c, row[avroName(c.name)])}`).join(',')}}`;
}

function unionRecord(t: AvroSchema): { fields: { name: string; type: AvroSchema }[] } | undefined {
  const branch = Array.isArray(t) ? t.find((x) => typeof x === 'object') : t;
  return branch && typeof branch === 'object' && !Array.isArray(branch) && branch.type === 'record' ? (branch as never) : undefined;
}

/** A reader of a writer's schema: an Envelope back to the envelope's JSON text, a Key to the key's. */
function avroReader(schema: Record<string, unknown>): Reader {
  const type = avroType(schema as AvroSchema);
  const fields = schema.fields as { name: string; type: AvroSchema }[];
  const before = fields.find((f) => f.name === 'before');
  if (!before) {
    const columns = columnsOfRecord(schema as never);
    return { kind: 'avro', type, toJson: (v) => rowText(columns, v) };
  }
  const record = unionRecord(before.type);
  if (!record) throw new Error('the envelope schema has no row record in "before"');
  const columns = columnsOfRecord(record as never);
  return {
    kind: 'avro',
    type,
    toJson: (e) => {
      const s = e.source as Record<string, unknown>;
      const source = `{"version":${text(s.version)},"connector":${text(s.connector)},"name":${text(s.name)},"ts_ms":${int(s.ts_ms)},"snapshot":${text(s.snapshot)},"db":${text(s.db)},"schema":${text(s.schema)},"table":${text(s.table)},"txId":${int(s.txId)},"lsn":${int(s.lsn)},"schema_version":${int(s.schema_version)}}`;
      return `{"before":${rowText(columns, e.before as never)},"after":${rowText(columns, e.after as never)},"source":${source},"op":${text(e.op)},"ts_ms":${int(e.ts_ms)}}`;
    },
  };
}

/**
 * Reads records of any format by what they carry: JSON text as it is, the wire format by its schema id
 * (the writer's schema fetched once per id). A record that cannot be read — bad magic byte, unknown id,
 * bytes the schema does not decode — is poison with the reason; a registry that cannot be reached is an
 * error the consumer waits out.
 */
export class RecordDecoder {
  private readonly readers = new Map<number, Promise<Reader>>();

  constructor(private readonly registry: SchemaRegistryClient | undefined) {}

  private reader(id: number): Promise<Reader> {
    let r = this.readers.get(id);
    if (!r) {
      if (!this.registry) return Promise.reject(new Error(`schema id ${id}: no schema registry is configured (registryUrl)`));
      r = this.registry.schemaById(id).then(({ schema, schemaType }) => (schemaType === 'JSON' ? { kind: 'json' as const } : avroReader(JSON.parse(schema) as Record<string, unknown>)));
      this.readers.set(id, r);
      r.catch(() => this.readers.delete(id));
    }
    return r;
  }

  private async one(bytes: Buffer | null | undefined): Promise<{ text?: string; form?: RecordForm }> {
    if (bytes === null || bytes === undefined) return {};
    if (!isFramed(bytes)) return { text: bytes.toString('utf8'), form: { format: 'json' } };
    const { id, payload } = unframe(bytes);
    let reader: Reader;
    try {
      reader = await this.reader(id);
    } catch (err) {
      if (classify(err).retryable) throw err;
      throw new PoisonRead(`schema id ${id} is not in the registry: ${classify(err).message}`);
    }
    if (reader.kind === 'json') return { text: payload.toString('utf8'), form: { format: 'json-schema', schemaId: id } };
    try {
      return { text: reader.toJson(reader.type.fromBuffer(payload) as Record<string, unknown>), form: { format: 'avro', schemaId: id } };
    } catch (err) {
      throw new PoisonRead(`the bytes do not decode with schema id ${id}: ${(err as Error).message}`);
    }
  }

  async decode(key: Buffer | null | undefined, value: Buffer | null | undefined): Promise<DecodedJson> {
    try {
      const k = await this.one(key);
      const v = await this.one(value);
      return { key: k.text, value: v.text, form: { key: k.form, value: v.form } };
    } catch (err) {
      if (err instanceof PoisonRead) return { poison: err.message };
      if (err instanceof Error && err.name === 'WireFormatError') return { poison: err.message };
      throw err;
    }
  }
}

class PoisonRead extends Error {}
