import type avro from 'avsc';
import { classify } from '../errors.js';
import { avroType, type SchemaRegistryClient } from './codec.js';
import { envelopeLimits, type DecodedEnvelope, type RowImage } from './envelope.js';
import { envelopeOf, envelopeText, namedColumns, rowImage } from './avroEnvelope.js';
import { columnsOfRecord, type AvroSchema } from './avroSchema.js';
import { isFramed, unframe } from './wireFormat.js';

/** How a record arrived: JSON text, or the wire format with the schema id it names. */
export type RecordForm = { format: 'json' } | { format: 'avro' | 'json-schema'; schemaId: number };

/**
 * A record read back into the JSON texts the apply path reads (the envelope and key of `format: json`);
 * an Avro envelope also as `decoded`, so the apply need not parse the text again.
 */
export type DecodedJson = { key?: string; value?: string; decoded?: DecodedEnvelope; form: { key?: RecordForm; value?: RecordForm } } | { poison: string };

type AvroRead = { text: string; image?: RowImage; decoded?: Omit<DecodedEnvelope, 'key'> };
type Reader = { kind: 'json' } | { kind: 'avro'; type: avro.Type; read: (v: Record<string, unknown>) => AvroRead };

function unionRecord(t: AvroSchema): { fields: { name: string; type: AvroSchema }[] } | undefined {
  const branch = Array.isArray(t) ? t.find((x) => typeof x === 'object') : t;
  return branch && typeof branch === 'object' && !Array.isArray(branch) && branch.type === 'record' ? (branch as never) : undefined;
}

/** A reader of a writer's schema: a Key to its image, an Envelope to its row images and source. */
function avroReader(schema: Record<string, unknown>): Reader {
  const type = avroType(schema as AvroSchema);
  const fields = schema.fields as { name: string; type: AvroSchema }[];
  const before = fields.find((f) => f.name === 'before');
  if (!before) {
    const columns = namedColumns(columnsOfRecord(schema as never));
    return { kind: 'avro', type, read: (v) => {
      const image = rowImage(columns, v);
      return { text: image.text, image };
    } };
  }
  const record = unionRecord(before.type);
  if (!record) throw new Error('the envelope schema has no row record in "before"');
  const rowColumns = columnsOfRecord(record as never);
  const columns = namedColumns(rowColumns);
  // composites stay text: readObject bounds their nesting depth
  const direct = !rowColumns.some((c) => c.kind === 'raw');
  return {
    kind: 'avro',
    type,
    read: (e) => {
      const b = e.before ? rowImage(columns, e.before as Record<string, unknown>) : null;
      const a = e.after ? rowImage(columns, e.after as Record<string, unknown>) : null;
      const text = envelopeText(e, b, a);
      const envelope = direct && text.length <= envelopeLimits.maxBytes / 4 ? envelopeOf(e, b, a) : undefined;
      return { text, decoded: envelope && { envelope } };
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

  /** The readers fetched so far, to read without awaiting. */
  private readonly ready = new Map<number, Reader>();

  private reader(id: number): Promise<Reader> {
    let r = this.readers.get(id);
    if (!r) {
      if (!this.registry) return Promise.reject(new Error(`schema id ${id}: no schema registry is configured (registryUrl)`));
      r = this.registry.schemaById(id).then(({ schema, schemaType }) => (schemaType === 'JSON' ? { kind: 'json' as const } : avroReader(JSON.parse(schema) as Record<string, unknown>)));
      this.readers.set(id, r);
      r.then((reader) => this.ready.set(id, reader), () => this.readers.delete(id));
    }
    return r;
  }

  private async fetched(id: number): Promise<Reader> {
    try {
      return await this.reader(id);
    } catch (err) {
      if (classify(err).retryable) throw err;
      throw new PoisonRead(`schema id ${id} is not in the registry: ${classify(err).message}`);
    }
  }

  private one(bytes: Buffer | null | undefined): Read | Promise<Read> {
    if (bytes === null || bytes === undefined) return {};
    if (!isFramed(bytes)) return { text: bytes.toString('utf8'), form: { format: 'json' } };
    const { id, payload } = unframe(bytes);
    const reader = this.ready.get(id);
    return reader ? read(reader, id, payload) : this.fetched(id).then((r) => read(r, id, payload));
  }

  async decode(key: Buffer | null | undefined, value: Buffer | null | undefined): Promise<DecodedJson> {
    try {
      const k = await this.one(key);
      const v = await this.one(value);
      const out: DecodedJson = { key: k.text, value: v.text, form: { key: k.form, value: v.form } };
      if (v.decoded && (key === null || key === undefined || k.image)) out.decoded = { ...v.decoded, key: k.image };
      return out;
    } catch (err) {
      if (err instanceof PoisonRead) return { poison: err.message };
      if (err instanceof Error && err.name === 'WireFormatError') return { poison: err.message };
      throw err;
    }
  }
}

class PoisonRead extends Error {}

type Read = Partial<AvroRead> & { form?: RecordForm };

function read(reader: Reader, id: number, payload: Buffer): Read {
  if (reader.kind === 'json') return { text: payload.toString('utf8'), form: { format: 'json-schema', schemaId: id } };
  try {
    const r = reader.read(reader.type.fromBuffer(payload) as Record<string, unknown>) as Read;
    r.form = { format: 'avro', schemaId: id };
    return r;
  } catch (err) {
    throw new PoisonRead(`the bytes do not decode with schema id ${id}: ${(err as Error).message}`);
  }
}
