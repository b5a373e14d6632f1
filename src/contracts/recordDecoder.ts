import type avro from 'avsc';
import { classify } from '../errors.js';
import { avroType, type Format, type SchemaRegistryClient } from './codec.js';
import { envelopeLimits, type DecodedEnvelope, type RowImage } from './envelope.js';
import { envelopeOf, envelopeText, namedColumns, rowImage } from './avroEnvelope.js';
import { columnsOfRecord, type AvroSchema } from './avroSchema.js';
import { isFramed, magicByte, unframe } from './wireFormat.js';
import { checkAvroBounds, hasBlocks } from './avroBounds.js';
import { SubjectSchemas, type SubjectVersions } from './subjectSchemas.js';
import { keySubject, valueSubject } from '../names.js';

/** What the decoder needs of the registry: schemas by id, and which ids a subject's versions have. */
export type ReadRegistry = Pick<SchemaRegistryClient, 'schemaById'> & SubjectVersions;

/** How a record arrived: JSON text, or the wire format with the schema id it names. */
export type RecordForm = { format: 'json' } | { format: 'avro' | 'json-schema'; schemaId: number };

/**
 * A record read back into the JSON texts the apply path reads (the envelope and key of `format: json`);
 * an Avro envelope also as `decoded`, so the apply need not parse the text again.
 */
export type DecodedJson = { key?: string; value?: string; valueBytes?: Buffer; decoded?: DecodedEnvelope; form: { key?: RecordForm; value?: RecordForm } } | { poison: string };

type AvroRead = { text: string; image?: RowImage; decoded?: Omit<DecodedEnvelope, 'key'> };
/** `bounded`: the schema has arrays or maps, whose block counts are checked before avsc trusts them. */
type Reader = { kind: 'json' } | { kind: 'avro'; type: avro.Type; schema: Record<string, unknown>; bounded: boolean; read: (v: Record<string, unknown>) => AvroRead };

/** A framed Avro key and value whose writers' schemas are at hand: the byte scanner's input (avroScanner.ts). */
export interface AvroPair {
  /** The pair of schema ids, `<key id>/<value id>`. */
  ids: string;
  key: { type: avro.Type; schema: Record<string, unknown>; payload: Buffer };
  value: { type: avro.Type; schema: Record<string, unknown>; payload: Buffer };
}

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
    return { kind: 'avro', type, schema, bounded: hasBlocks(type), read: (v) => {
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
    schema,
    bounded: hasBlocks(type),
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
 * (the writer's schema fetched once per id) when the topic's format is a wire format and the id is
 * registered under the topic's own subject. A record that cannot be read — bad magic byte, unknown id, an
 * id of another subject, bytes the schema does not decode — is poison with the reason; a registry that
 * cannot be reached is an error the consumer waits out.
 */
export class RecordDecoder {
  private readonly readers = new Map<number, Promise<Reader>>();
  private readonly subjects: SubjectSchemas | undefined;

  /** `formatOf`: a topic's configured format; undefined (a topic not configured here) reads what the record carries. */
  constructor(private readonly registry: ReadRegistry | undefined, private readonly formatOf: (topic: string) => Format | undefined = () => undefined) {
    this.subjects = registry && new SubjectSchemas(registry);
  }

  /** The last pair of ids found known under its topic's subjects. */
  private lastPair: { topic: string; keyId: number; valueId: number; ids: string } | undefined;

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

  /** The reader of an id registered under the subject; poison when it is not (or not in the registry at all). */
  private async fetched(subject: string, id: number): Promise<Reader> {
    try {
      if (!this.subjects) return await this.reader(id);
      if (!(await this.subjects.holds(subject, id))) {
        throw new PoisonRead(`schema id ${id} is not registered under ${subject}: the record was not written with this topic's schemas (a producer writing the wrong topic, or forged bytes)`);
      }
      return await this.reader(id);
    } catch (err) {
      if (err instanceof PoisonRead || classify(err).retryable) throw err;
      throw new PoisonRead(`schema id ${id} is not in the registry: ${classify(err).message}`);
    }
  }

  private one(topic: string, part: 'key' | 'value', bytes: Buffer | null | undefined): Read | Promise<Read> {
    if (bytes === null || bytes === undefined) return {};
    if (!isFramed(bytes)) return { text: bytes.toString('utf8'), form: { format: 'json' } };
    if (this.formatOf(topic) === 'json') {
      throw new PoisonRead(`the ${part} starts with byte 0 (the wire format of Avro or JSON Schema), but the format of ${topic} is json: a record of another producer, or written before the table's format changed — set the table's format to what its producer writes`);
    }
    const { id, payload } = unframe(bytes);
    const subject = part === 'key' ? keySubject(topic) : valueSubject(topic);
    const reader = this.ready.get(id);
    if (reader && (!this.subjects || this.subjects.known(subject, id))) return read(reader, id, payload);
    return this.fetched(subject, id).then((r) => read(r, id, payload));
  }

  /**
   * A framed Avro key and value of an Avro topic whose schema ids are fetched and known under the topic's
   * subjects, without awaiting; undefined leaves the record to decode() (which fetches and checks them).
   */
  avroPair(topic: string, key: Buffer | undefined, value: Buffer | undefined): AvroPair | undefined {
    if (this.formatOf(topic) !== 'avro' || !key || !value || key.length < 5 || value.length < 5 || key[0] !== magicByte || value[0] !== magicByte) return undefined;
    const keyId = key.readUInt32BE(1);
    const valueId = value.readUInt32BE(1);
    const k = this.ready.get(keyId);
    const v = this.ready.get(valueId);
    if (k?.kind !== 'avro' || v?.kind !== 'avro') return undefined;
    const ids = this.knownPair(topic, keyId, valueId);
    if (ids === undefined) return undefined;
    return { ids, key: { type: k.type, schema: k.schema, payload: key.subarray(5) }, value: { type: v.type, schema: v.schema, payload: value.subarray(5) } };
  }

  /**
   * A framed JSON Schema key and value whose schema ids are fetched and known under the topic's subjects: their
   * JSON payloads, read in place as format json's records are, without a promise; undefined leaves the record to decode().
   */
  jsonSchemaPair(topic: string, key: Buffer | undefined, value: Buffer | undefined): { key: Buffer; value: Buffer; schemaId: number } | undefined {
    if (this.formatOf(topic) !== 'json-schema' || !key || !value || key.length < 5 || value.length < 5 || key[0] !== magicByte || value[0] !== magicByte) return undefined;
    const keyId = key.readUInt32BE(1);
    const valueId = value.readUInt32BE(1);
    if (this.ready.get(keyId)?.kind !== 'json' || this.ready.get(valueId)?.kind !== 'json' || this.knownPair(topic, keyId, valueId) === undefined) return undefined;
    return { key: key.subarray(5), value: value.subarray(5), schemaId: valueId };
  }

  /** `<key id>/<value id>` when both are known under the topic's subjects; the same pair as the record before (nearly every record) is not looked up again. */
  private knownPair(topic: string, keyId: number, valueId: number): string | undefined {
    const last = this.lastPair;
    // known then, known now: ids are never forgotten
    if (last?.topic === topic && last.keyId === keyId && last.valueId === valueId) return last.ids;
    if (this.subjects && (!this.subjects.known(keySubject(topic), keyId) || !this.subjects.known(valueSubject(topic), valueId))) return undefined;
    this.lastPair = { topic, keyId, valueId, ids: `${keyId}/${valueId}` };
    return this.lastPair.ids;
  }

  /** The record of `topic` as JSON texts, or poison with the reason; registry outages are thrown (retryable). */
  async decode(topic: string, key: Buffer | null | undefined, value: Buffer | null | undefined): Promise<DecodedJson> {
    try {
      const k = await this.one(topic, 'key', key);
      const v = await this.one(topic, 'value', value);
      const out: DecodedJson = { key: k.text, value: v.text, ...(v.bytes ? { valueBytes: v.bytes } : {}), form: { key: k.form, value: v.form } };
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

/** `bytes`: a JSON Schema payload (JSON text), for the byte scanner. */
type Read = Partial<AvroRead> & { form?: RecordForm; bytes?: Buffer };

function read(reader: Reader, id: number, payload: Buffer): Read {
  if (reader.kind === 'json') return { text: payload.toString('utf8'), bytes: payload, form: { format: 'json-schema', schemaId: id } };
  try {
    if (reader.bounded) checkAvroBounds(reader.type, payload);
    const r = reader.read(reader.type.fromBuffer(payload) as Record<string, unknown>) as Read;
    r.form = { format: 'avro', schemaId: id };
    return r;
  } catch (err) {
    throw new PoisonRead(`the bytes do not decode with schema id ${id}: ${(err as Error).message}`);
  }
}
