import assert from 'node:assert/strict';
import { test } from 'node:test';
import { avroType, TableEncoder, type SchemaRegistryClient } from '../../src/contracts/codec.js';
import { envelopeSchema, keySchema } from '../../src/contracts/avroSchema.js';
import type { ColumnType } from '../../src/contracts/columnKinds.js';
import { numericTypmod } from '../../src/contracts/columnKinds.js';
import { keyedEnvelope } from '../../src/contracts/envelope.js';
import { RecordDecoder } from '../../src/contracts/recordDecoder.js';
import { civilFromDays, daysFromCivil, decimalBytes, decimalFromBytes, floatText, UnencodableError } from '../../src/contracts/values.js';
import { frame, unframe } from '../../src/contracts/wireFormat.js';
import { changeToMessages, decodeEnvelope, snapshotRowToMessage } from '../../src/contracts/envelope.js';
import type { SchemaType } from '../../src/contracts/registry.js';

/** The registry's part in these pure tests: ids for schema texts (the integration tests use Apicurio). */
class MemoryRegistry implements SchemaRegistryClient {
  readonly schemas: { subject: string; schema: string; schemaType: SchemaType }[] = [];
  async register(subject: string, schema: string, schemaType: SchemaType): Promise<number> {
    const i = this.schemas.findIndex((s) => s.subject === subject && s.schema === schema);
    if (i >= 0) return i + 1;
    this.schemas.push({ subject, schema, schemaType });
    return this.schemas.length;
  }
  async schemaById(id: number) {
    const s = this.schemas[id - 1];
    if (!s) throw new Error(`schema ${id} not found`);
    return s;
  }
  /** Each registered schema is version 1.. of its subject, in order. */
  async versions(subject: string): Promise<number[]> {
    return this.schemas.filter((s) => s.subject === subject).map((_, i) => i + 1);
  }
  async versionId(subject: string, version: number): Promise<number | undefined> {
    const s = this.schemas.filter((x) => x.subject === subject)[version - 1];
    return s && this.schemas.indexOf(s) + 1;
  }
}

const col = (name: string, kind: ColumnType['kind'], extra: Partial<ColumnType> = {}): ColumnType => ({ name, kind, nullable: true, dims: 0, pgType: kind, ...extra });

const columns: ColumnType[] = [
  col('id', 'long', { nullable: false }),
  col('i2', 'int'),
  col('n', 'numeric'),
  col('n2', 'decimal', { precision: 40, scale: 20 }),
  col('f4', 'float'),
  col('f8', 'double'),
  col('d', 'date'),
  col('ts', 'timestamp'),
  col('tstz', 'timestamptz'),
  col('t', 'time'),
  col('u', 'uuid'),
  col('j', 'json'),
  col('b', 'bytes'),
  col('e', 'enum', { allowed: ['sad', 'ok', 'happy "quoted"'] }),
  col('ai', 'int', { dims: 1 }),
  col('a2', 'string', { dims: 2 }),
  col('p', 'raw'),
  col('m', 'string'),
  col('bo', 'boolean'),
  col('first name', 'string'),
];
const table = { db: 'db1', schema: 'public', name: 'all_types', key: ['id'], topic: 'pgtunnel.public.all_types', topicPrefix: 'pgtunnel' };

/** Rows exactly as PostgreSQL 15's row_to_json writes them (json columns as the JSON string of their text). */
const rows = [
  '{"id":9223372036854775807,"i2":-32768,"n":"NaN","n2":12345678901234567890.12345678901234567890,"f4":1.1754944e-38,"f8":-0,"d":"0044-03-15 BC","ts":"294246-12-31T23:59:59.999999","tstz":"1999-12-31T15:44:59.999999+05:45","t":"24:00:00","u":"ffffffff-ffff-ffff-ffff-ffffffffffff","j":"{\\"b\\":1, \\"b\\":2}","b":"\\\\x00ff10","e":"happy \\"quoted\\"","ai":[1,null,3],"a2":[["a b",null],["\\"","}"]],"p":{"a":1,"b":"x, y","m":"sad"},"m":"$12.34","bo":true,"first name":"é 😀"}',
  '{"id":-9223372036854775808,"i2":0,"n":0.1000000000000000000000000000001,"n2":-0.00000000000000000001,"f4":"NaN","f8":2.2250738585072014e-308,"d":"-infinity","ts":"0044-03-15T12:00:00 BC","tstz":"infinity","t":"00:00:00","u":null,"j":"null","b":"\\\\x","e":"sad","ai":[],"a2":[],"p":null,"m":null,"bo":false,"first name":""}',
  '{"id":1,"i2":1,"n":"-Infinity","n2":1.00000000000000000000,"f4":"-Infinity","f8":1e+300,"d":"5874897-12-31","ts":"-infinity","tstz":"2024-01-01T00:00:00+00:00","t":"12:00:00.5","u":null,"j":null,"b":null,"e":null,"ai":null,"a2":null,"p":null,"m":null,"bo":null,"first name":null}',
  '{"id":2,"i2":null,"n":123456789012345678901234567890,"n2":null,"f4":1.2345679e+08,"f8":"Infinity","d":"infinity","ts":"2000-01-01T00:00:00.000001","tstz":null,"t":"23:59:59.999999","u":null,"j":null,"b":null,"e":null,"ai":null,"a2":null,"p":null,"m":null,"bo":null,"first name":null}',
];

async function roundTrip(format: 'avro' | 'json-schema') {
  const registry = new MemoryRegistry();
  const encoder = new TableEncoder(format, table.topic, registry);
  await encoder.use(1, columns, [columns[0]!]);
  const decoder = new RecordDecoder(registry);
  for (const row of rows) {
    const key = `{"id":${/"id":(-?\d+)/.exec(row)![1]}}`;
    for (const m of [...changeToMessages(table, { changeId: 5, action: 'UPDATE', txid: '9007199254740993', capturedMs: 1, row, key, schemaVersion: 3 }, 'u', 2), snapshotRowToMessage(table, { row, key }, 3, 9, true), snapshotRowToMessage(table, { row, key }, 3, 9, false, true)]) {
      const wire = encoder.encode(m);
      assert.ok(wire.value instanceof Buffer && wire.keyBytes instanceof Buffer);
      assert.equal(wire.value[0], 0, 'magic byte');
      const d = await decoder.decode(table.topic, wire.keyBytes, wire.value);
      assert.ok(!('poison' in d), JSON.stringify(d));
      assert.equal(d.key, key);
      assert.equal(d.value, m.value, `${format}: the envelope's text comes back exactly`);
      const e = decodeEnvelope(d.key, d.value!, ['id']);
      assert.equal(e.after!.text, row);
    }
  }
  return registry;
}

test('Avro: every type family goes row_to_json text → Avro → the same text, digit for digit and to the microsecond', async () => {
  const registry = await roundTrip('avro');
  assert.deepEqual(registry.schemas.map((s) => [s.subject, s.schemaType]), [['pgtunnel.public.all_types-key', 'AVRO'], ['pgtunnel.public.all_types-value', 'AVRO']]);
});

test('Avro decodes straight to the envelope the apply reads: the same values, texts and source as decoding its JSON text', async () => {
  // without the composite column: composites stay text, so that readObject bounds their depth
  const direct = columns.filter((c) => c.kind !== 'raw');
  const registry = new MemoryRegistry();
  const encoder = new TableEncoder('avro', table.topic, registry);
  await encoder.use(1, direct, [direct[0]!]);
  const decoder = new RecordDecoder(registry);
  for (const row of rows.map((r) => r.replace(/,"p":(\{[^}]*\}|null)/, ''))) {
    const key = `{"id":${/"id":(-?\d+)/.exec(row)![1]}}`;
    const messages = [
      ...changeToMessages(table, { changeId: 5, action: 'UPDATE', txid: '9007199254740993', capturedMs: 1, row, key, schemaVersion: 3 }, 'u', 2),
      ...changeToMessages(table, { changeId: 6, action: 'DELETE', txid: '7', capturedMs: 1, row, key, schemaVersion: 3 }, 'd', 2).slice(0, 1),
      snapshotRowToMessage(table, { row, key }, 3, 9, true),
    ];
    for (const m of messages) {
      const wire = encoder.encode(m);
      const d = await decoder.decode(table.topic, wire.keyBytes, wire.value as Buffer);
      assert.ok(!('poison' in d) && d.decoded, 'decoded straight from Avro');
      const fromText = decodeEnvelope(d.key, d.value!, ['id']);
      const straight = keyedEnvelope(d.decoded, ['id']);
      assert.deepEqual({ ...straight, before: straight.before && [straight.before.text, straight.before.values], after: straight.after && [straight.after.text, straight.after.values] },
        { ...fromText, before: fromText.before && [fromText.before.text, fromText.before.values], after: fromText.after && [fromText.after.text, fromText.after.values] });
      assert.equal((straight.after ?? straight.before)!.text, row);
    }
  }
  // the key is checked as decodeEnvelope checks it
  const wire = encoder.encode(snapshotRowToMessage(table, { row: rows[2]!.replace(/,"p":null/, ''), key: '{"id":1}' }, 1, 1));
  const d = await decoder.decode(table.topic, wire.keyBytes, wire.value as Buffer);
  assert.ok(!('poison' in d) && d.decoded);
  assert.throws(() => keyedEnvelope(d.decoded!, ['id', 'i2']), /must name exactly the key column\(s\) id, i2/);
  assert.throws(() => keyedEnvelope({ ...d.decoded!, key: undefined }, ['id']), /message has no key/);
});

test('JSON Schema: the payload is the JSON envelope itself, behind the wire format header', async () => {
  const registry = await roundTrip('json-schema');
  assert.equal(JSON.parse(registry.schemas[1]!.schema).title, 'pgtunnel.public.all_types.Envelope');
});

test('a delete, its tombstone and a truncate survive the encoding', async () => {
  const registry = new MemoryRegistry();
  const encoder = new TableEncoder('avro', table.topic, registry);
  await encoder.use(1, columns, [columns[0]!]);
  const decoder = new RecordDecoder(registry);
  const [del, tombstone] = changeToMessages(table, { changeId: 6, action: 'DELETE', txid: '9', capturedMs: 1, row: rows[2]!, key: '{"id":1}', schemaVersion: 1 }, 'd', 2).map((m) => encoder.encode(m));
  assert.equal(tombstone!.value, undefined);
  assert.ok(tombstone!.keyBytes);
  const d = await decoder.decode(table.topic, del!.keyBytes, del!.value as Buffer);
  assert.ok(!('poison' in d));
  assert.equal(decodeEnvelope(d.key, d.value!, ['id']).op, 'd');
  const [truncate] = changeToMessages(table, { changeId: 7, action: 'TRUNCATE', txid: '9', capturedMs: 1, row: '{}', key: '{}', schemaVersion: 1 }, 't', 2).map((m) => encoder.encode(m));
  const t = await decoder.decode(table.topic, undefined, truncate!.value as Buffer);
  assert.ok(!('poison' in t));
  assert.equal(decodeEnvelope(undefined, t.value!).op, 't');
});

test('schemas: Debezium names and shapes, accepted by avsc', () => {
  const value = envelopeSchema(table.topic, columns.map((c) => ({ ...c, nullable: true }))) as Record<string, any>;
  assert.equal(`${value.namespace}.${value.name}`, 'pgtunnel.public.all_types.Envelope');
  assert.deepEqual(value.fields.map((f: { name: string }) => f.name), ['before', 'after', 'source', 'op', 'ts_ms']);
  assert.equal(value.fields[2].type.name, 'Source');
  assert.equal(value.fields[2].type.namespace, 'io.pgtunnel');
  const row = value.fields[0].type[1];
  assert.equal(`${row.namespace}.${row.name}`, 'pgtunnel.public.all_types.Value');
  const field = (name: string) => row.fields.find((f: { name: string }) => f.name === name);
  assert.deepEqual(field('n2').type[1], { type: 'bytes', logicalType: 'decimal', precision: 40, scale: 20, 'connect.version': 1, 'connect.name': 'org.apache.kafka.connect.data.Decimal', 'connect.parameters': { scale: '20', 'connect.decimal.precision': '40' } });
  assert.equal(field('d').type[1]['connect.name'], 'io.debezium.time.Date');
  assert.equal(field('ts').type[1]['connect.name'], 'io.debezium.time.MicroTimestamp');
  assert.equal(field('e').type[1]['connect.parameters'].allowed, 'sad,ok,happy "quoted"');
  assert.deepEqual(field('ai').type, ['null', { type: 'array', items: ['null', 'int'] }]);
  assert.equal(field('first_name')['pgtunnel.column'], 'first name', 'an invalid Avro name keeps its column');
  assert.equal(field('id').default, null, 'every value field is optional: adding columns stays backward compatible');
  const key = keySchema('my-prefix.public.t', [columns[0]!]) as Record<string, any>;
  assert.equal(key.namespace, 'my_prefix.public.t');
  assert.deepEqual(key.fields, [{ name: 'id', type: 'long' }]);
  avroType(value);
  avroType(key);
});

test('values without a form in their Avro type are refused with the column named, never changed', async () => {
  const registry = new MemoryRegistry();
  const encoder = new TableEncoder('avro', table.topic, registry);
  await encoder.use(1, columns, [columns[0]!]);
  const bad = (row: string) => () => encoder.encode(snapshotRowToMessage(table, { row, key: '{"id":1}' }, 1, 1));
  assert.throws(bad('{"id":1,"n2":"NaN"}'), (e: Error) => e instanceof UnencodableError && /column n2 \(decimal\).*NaN/.test(e.message));
  assert.throws(bad('{"id":1,"ai":[[1]]}'), UnencodableError);
  assert.throws(bad('{"id":1,"ts":"294276-12-31T23:59:59.999999"}'), /beyond the microseconds/);
  assert.throws(bad('{"id":1,"other":1}'), /changed since its schema was registered/);
});

test('wire format: magic byte, big-endian id; unreadable records are poison with the reason', async () => {
  const framed = frame(258, Buffer.from('x'));
  assert.deepEqual([...framed], [0, 0, 0, 1, 2, 0x78]);
  assert.deepEqual(unframe(framed), { id: 258, payload: Buffer.from('x') });
  const registry = new MemoryRegistry();
  const encoder = new TableEncoder('avro', table.topic, registry);
  await encoder.use(1, columns, [columns[0]!]);
  const decoder = new RecordDecoder(registry);
  const poison = async (value: Buffer, reason: RegExp) => {
    const d = await decoder.decode(table.topic, Buffer.from('{"id":1}'), value);
    assert.ok('poison' in d && reason.test(d.poison), JSON.stringify(d));
  };
  await poison(Buffer.from([0, 0, 0]), /too short/);
  await poison(frame(99, Buffer.from('x')), /schema id 99 is not registered under pgtunnel\.public\.all_types-value/);
  await poison(frame(2, Buffer.from([1, 2, 3])), /do not decode with schema id 2/);
  // the key's schema is registered, but not under the value's subject: a value written with it is refused
  await poison(frame(1, Buffer.from([2])), /schema id 1 is not registered under pgtunnel\.public\.all_types-value/);
  // a record of another topic, with that topic's registered schema
  const other = new TableEncoder('avro', 'pgtunnel.public.other', registry);
  await other.use(1, columns, [columns[0]!]);
  const d = await decoder.decode(table.topic, Buffer.from('{"id":1}'), frame(4, Buffer.from([0, 0])));
  assert.ok('poison' in d && /schema id 4 is not registered under pgtunnel\.public\.all_types-value/.test(d.poison), JSON.stringify(d));
  // byte 0 on a topic whose format is json is never read as the wire format
  const jsonTopics = new RecordDecoder(registry, () => 'json');
  const j = await jsonTopics.decode(table.topic, Buffer.from('{"id":1}'), frame(2, Buffer.from([0, 0])));
  assert.ok('poison' in j && /starts with byte 0 .* but the format of pgtunnel\.public\.all_types is json/.test(j.poison), JSON.stringify(j));
  const json = await decoder.decode(table.topic, Buffer.from('{"id":1}'), Buffer.from('{"op":"c"}'));
  assert.deepEqual(json, { key: '{"id":1}', value: '{"op":"c"}', form: { key: { format: 'json' }, value: { format: 'json' } } });
});

test('pure conversions: dates any year, decimals two\'s complement, numeric typmods, floats as PostgreSQL prints them', () => {
  for (const [y, m, d] of [[1970, 1, 1], [2024, 2, 29], [-43, 3, 15], [-4712, 1, 1], [294276, 12, 31], [0, 12, 31]] as const) {
    assert.deepEqual(civilFromDays(daysFromCivil(y, m, d)), [y, m, d]);
  }
  assert.equal(daysFromCivil(1970, 1, 1), 0);
  assert.equal(daysFromCivil(2000, 1, 1), 10957);
  for (const n of [0n, 1n, -1n, 127n, 128n, -128n, -129n, 255n, 10n ** 40n, -(10n ** 40n) + 7n]) assert.equal(decimalFromBytes(decimalBytes(n)), n);
  assert.deepEqual([...decimalBytes(-1n)], [0xff]);
  assert.deepEqual([...decimalBytes(128n)], [0, 0x80]);
  assert.deepEqual(numericTypmod(((40 << 16) | 20) + 4), { precision: 40, scale: 20 });
  assert.equal(numericTypmod(-1), undefined);
  for (const [x, single, text] of [[-0, false, '-0'], [1e300, false, '1e+300'], [1e-5, false, '1e-05'], [0.0001, false, '0.0001'], [123456789, false, '123456789'], [1e15, false, '1e+15'], [NaN, true, '"NaN"'], [Math.fround(0.1), true, '0.1'], [Math.fround(1.17549435e-38), true, '1.1754944e-38'], [Math.fround(999999), true, '999999']] as const) {
    assert.equal(floatText(x, single), text);
  }
});
