import fc from 'fast-check';
import { changeToMessages, snapshotRowToMessage, type Op, type TableRef } from '../../src/contracts/envelope.js';

/**
 * Records for the fuzz tests: valid envelopes exactly as the producer writes them (changeToMessages,
 * snapshotRowToMessage), then mutated the ways a stray client, a bug or an attacker could write a topic.
 */

export interface FuzzRecord {
  topic: string;
  key: string | undefined;
  value: string | undefined;
  /** Set for keyless records (truncates, garbage); else the partition follows the key. */
  partition?: number;
  /** Which generator or mutation made it, for the failure report. */
  kind: string;
  /**
   * The generator's own word, not the decoder's: a truncate as the producer writes it — a valid one, one a
   * mutation left byte for byte or only added a member to, or a valid record whose op alone a mutation turned into "t".
   */
  truncate?: boolean;
  /**
   * The source position the generator put in the envelope (txId and lsn), shared by every copy of one
   * change; snapshot rows name none. A partition honours a truncate of one position once.
   */
  position?: string;
}

/** The fuzzed tables, created on the target (employees as the demo's; items with a composite key and odd types). */
export const itemsDdl = `CREATE TABLE public.fuzz_items (
  region text NOT NULL,
  id bigint NOT NULL,
  amount numeric(12,2),
  doc jsonb,
  at timestamptz,
  tags text[],
  flag boolean,
  doubled numeric GENERATED ALWAYS AS (amount * 2) STORED,
  PRIMARY KEY (region, id)
)`;

export function fuzzTables(prefix: string): { employees: TableRef; items: TableRef } {
  return {
    employees: { db: 'fuzz', schema: 'public', name: 'employees', key: ['emp_id'], topic: `${prefix}.public.employees`, topicPrefix: prefix },
    items: { db: 'fuzz', schema: 'public', name: 'fuzz_items', key: ['region', 'id'], topic: `${prefix}.public.fuzz_items`, topicPrefix: prefix },
  };
}

/** A small deterministic PRNG, seeded by fast-check, for a mutation's positions and choices. */
function rng(seed: number): { int: (n: number) => number; pick: <T>(xs: readonly T[]) => T } {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (n: number) => Math.floor(next() * n);
  return { int, pick: (xs) => xs[int(xs.length)]! };
}

const text = fc.oneof(fc.string({ maxLength: 12 }), fc.string({ unit: 'grapheme', maxLength: 8 }), fc.string({ unit: 'binary', maxLength: 6 }));
const date = fc.date({ min: new Date('1900-01-01T00:00:00Z'), max: new Date('2100-01-01T00:00:00Z'), noInvalidDate: true });

/** A row as row_to_json writes it: columns in table order, strings escaped, numbers as plain text. */
const employeeRow = fc.record({ id: fc.integer({ min: 1, max: 300 }), first: text, last: text, dob: date, city: fc.option(text), salary: fc.integer({ min: -5, max: 2_000_000_000 }) }).map(
  (r) => ({
    key: `{"emp_id":${r.id}}`,
    row: `{"emp_id":${r.id},"first_name":${JSON.stringify(r.first)},"last_name":${JSON.stringify(r.last)},"dob":"${r.dob.toISOString().slice(0, 10)}","city":${JSON.stringify(r.city)},"salary":${r.salary}}`,
  }),
);

const itemRow = fc.record({
  region: fc.constantFrom('eu', 'us', 'ap', 'é', ''),
  id: fc.oneof(fc.integer({ min: 1, max: 20 }).map(String), fc.constant('9223372036854775807'), fc.constant('-9223372036854775808')),
  amount: fc.option(fc.tuple(fc.integer({ min: -9_999_999, max: 9_999_999 }), fc.integer({ min: 0, max: 99 })).map(([i, f]) => `${i}.${String(f).padStart(2, '0')}`)),
  doc: fc.option(fc.jsonValue({ maxDepth: 3 }).map((v) => JSON.stringify(v))),
  at: fc.option(date.map((d) => JSON.stringify(d.toISOString().replace('Z', '+00:00')))),
  tags: fc.option(fc.array(text, { maxLength: 3 }).map((a) => JSON.stringify(a))),
  flag: fc.option(fc.boolean()),
}).map((r) => ({
  key: `{"region":${JSON.stringify(r.region)},"id":${r.id}}`,
  row: `{"region":${JSON.stringify(r.region)},"id":${r.id},"amount":${r.amount ?? 'null'},"doc":${r.doc ?? 'null'},"at":${r.at ?? 'null'},"tags":${r.tags ?? 'null'},"flag":${r.flag},"doubled":null}`,
}));

const ops: Op[] = ['c', 'u', 'd', 'r'];

/** One valid change as the producer writes it: an insert, update, delete (plus its tombstone), snapshot row or truncate. */
function validRecords(tables: { employees: TableRef; items: TableRef }, partitions: number): fc.Arbitrary<FuzzRecord[]> {
  const table = fc.constantFrom(tables.employees, tables.items);
  return fc.tuple(table, fc.oneof({ arbitrary: fc.constantFrom(...ops), weight: 12 }, { arbitrary: fc.constant('t'), weight: 1 }), fc.integer({ min: 1, max: 1e9 })).chain(([t, op, changeId]) =>
    (t === tables.employees ? employeeRow : itemRow).map(({ key, row }) => {
      const change = { changeId, action: '', txid: String(changeId), capturedMs: Date.now(), row, key, schemaVersion: 1 };
      if (op === 'r') {
        const m = snapshotRowToMessage(t, { row, key }, 1, Date.now());
        return [{ topic: m.topic, key: m.key, value: m.value, kind: 'valid r', position: 'none' }];
      }
      return changeToMessages(t, change, op as Op, Date.now()).flatMap((m): FuzzRecord[] =>
        m.partition === 'all'
          ? Array.from({ length: partitions }, (_, p) => ({ topic: m.topic, key: undefined, value: m.value, partition: p, kind: 'valid t', truncate: true, position: String(changeId) }))
          : [{ topic: m.topic, key: m.key, value: m.value, kind: m.value === undefined ? 'tombstone' : `valid ${op}`, position: String(changeId) }],
      );
    }),
  );
}

type Mutation = (r: FuzzRecord, rand: ReturnType<typeof rng>, junk: { s: string; bytes: Uint8Array; json: string }) => FuzzRecord;

const insertMember = (value: string, member: string, rand: ReturnType<typeof rng>) => {
  const at = value.indexOf(rand.pick(['"after":{', '"before":{', '"source":{', '{']));
  if (at < 0) return value;
  const brace = value.indexOf('{', at) + 1;
  return `${value.slice(0, brace)}${member},${value.slice(brace)}`;
};
const rowValue = (value: string, column: string, replacement: string) => value.replace(new RegExp(`("${column}":)("(?:[^"\\\\]|\\\\.)*"|[^,}]*)`, 'g'), `$1${replacement}`);

/** Each mutation keeps most of a valid record and breaks one thing. */
const mutations: Record<string, Mutation> = {
  'wrong op': (r, rand) => ({ ...r, value: r.value?.replace(/"op":"[a-z]"/, rand.pick(['"op":"x"', '"op":"C"', '"op":null', '"op":1', '"op":""', '"op":{"a":1}', '"op":"t"', '"op":"d"', '"op":"c"', '"op0":"c"'])) }),
  'missing source': (r, rand) => ({ ...r, value: r.value?.replace(/"source":\{[^}]*\}/, rand.pick(['"source":null', '"source":"x"', '"source":[]', '"source":{}', '"sauce":{}', '"source":{"db":"x","schema":"y","table":"z","snapshot":"true","ts_ms":1}'])) }),
  'no source at all': (r) => ({ ...r, value: r.value?.replace(/,"source":\{[^}]*\}/, '') }),
  'key/row mismatch': (r, rand) => ({ ...r, key: r.key?.replace(/(-?\d+|"[^"]*")\}$/, rand.pick(['999}', '"zz"}', '0}', '-1}'])) }),
  'key spelled another way': (r, rand) => {
    const m = r.key?.match(/:(-?\d+)\}$/);
    if (!m) return { ...r, key: r.key?.replace(/^\{"/, rand.pick(['{ "', '{"\\u0065', '{\n"'])) };
    const spelled = rand.pick([`"${m[1]}"`, `${m[1]}.0`, `${m[1]}e0`, `${m[1]}E+0`, ` ${m[1]} `, `"\\u00${(0x30 + Number(m[1]!.slice(-1))).toString(16)}"`]);
    const key = r.key!.replace(/:(-?\d+)\}$/, `:${spelled}}`);
    // half of the time the row says it the same way, so the key matches and the spelling reaches the target
    const value = rand.int(2) === 0 ? r.value : r.value?.replace(/("(?:emp_)?id":)-?\d+/g, `$1${spelled}`);
    return { ...r, key, value };
  },
  'huge value': (r, rand) => ({ ...r, value: r.value && rowValue(r.value, rand.pick(['first_name', 'city', 'doc', 'region']), JSON.stringify('x'.repeat(rand.int(40) === 0 ? 9 * 1024 * 1024 : rand.pick([300, 100_000])))) }),
  'deep value': (r, rand) => {
    const n = rand.pick([63, 65, 5000, 200_000]);
    const open = rand.pick(['[', '{"a":']);
    const deep = open.repeat(n) + '1' + (open === '[' ? ']' : '}').repeat(n);
    return { ...r, value: r.value && rowValue(r.value, rand.pick(['first_name', 'doc', 'tags', 'salary']), deep) };
  },
  'invalid json': (r, rand, junk) => {
    const v = r.value ?? '{}';
    const at = rand.int(v.length);
    // Junk alone can land inside a string (or be whitespace) and leave valid JSON: a truncate whose ignored member
    // it renamed is still a truncate. A raw U+0000 is invalid JSON inside a string and between tokens alike.
    return { ...r, value: rand.pick([v.slice(0, at), v.slice(0, at) + junk.s + '\u0000' + v.slice(at), v.replace(':', '='), v + '}', v + ' x', `${v},${v}`, v.replace(/"/g, "'"), '\uFEFF' + v]) };
  },
  'wrong column type': (r, rand) => {
    const [column, bad] = rand.pick([
      ['salary', rand.pick(['"abc"', '1e20', '2147483648', '1.5', 'true', '{}', '[1]', '-0', '"12"', '1e-7'])],
      ['dob', rand.pick(['"2020-13-45"', '"infinity"', '12', '"0000-00-00"', '"99999-01-01"', '"2020-02-30"', '""', '"\\u0000"'])],
      ['first_name', rand.pick(['123', '{"x":1}', '"\\u0000"', '"\\ud800"', 'false'])],
      ['amount', rand.pick(['"NaN"', '1e400', '99999999999.99', '"1,5"', '1e-400'])],
      ['id', rand.pick(['1e30', '9223372036854775808', '"abc"', '1.5'])],
      ['at', rand.pick(['"not a time"', '"2020-01-01T25:00:00Z"', '0', '"epoch"'])],
      ['tags', rand.pick(['"x"', '[1,[2]]', '{}', '[null]', '"{a,b}"'])],
      ['doc', rand.pick(['"\\u0000"', '{"a":"\\u0000"}', '"\\ud800"', '1e999999'])],
      ['flag', rand.pick(['"yes"', '2', '"t"'])],
    ] as const);
    return { ...r, value: r.value && rowValue(r.value, column, bad), kind: `wrong type ${column}` };
  },
  'extra column': (r, rand) => ({ ...r, value: r.value && insertMember(r.value, rand.pick(['"zzz":1', '"":2', '"emp_id ":3', '"EMP_ID":4', '"doubled":5', '"__proto__":{"x":1}', '"ctid":"(0,1)"']), rand) }),
  'null key': (r, rand) => ({ ...r, key: rand.pick([undefined, 'null', '{}', '[]', '"7"', '{"emp_id":null}', '{"region":null,"id":null}']), value: rand.int(2) === 0 ? r.value : r.value?.replace(/("(?:emp_)?id":)-?\d+/g, '$1null') }),
  'tombstone': (r) => ({ ...r, value: undefined }),
  'keyed truncate': (r, rand) => ({ ...r, value: r.value?.replace(/"op":"[a-z]"/, '"op":"t"'), key: rand.int(2) === 0 ? r.key : undefined, partition: rand.int(3) }),
  'binary garbage': (r, rand, junk) => {
    const garbage = Buffer.from(junk.bytes).toString(rand.pick(['utf8', 'latin1'] as const));
    return { ...r, key: rand.int(2) === 0 ? r.key : garbage, value: rand.int(3) === 0 ? r.value : garbage + junk.s };
  },
  'duplicated member': (r, rand) => {
    const v = r.value ?? '';
    return { ...r, value: rand.pick([v.replace(/("salary":-?\d+)/, '$1,$1'), v.replace(/("id":[^,]+)/, '$1,$1'), v.replace(/("op":"[a-z]")/, '$1,$1'), v.replace(/("ts_ms":\d+)\}/, '$1,"ts_ms":2}'), v.replace(/("emp_id":)(-?\d+)/, '"\\u0065mp_id":$2,$1$2')]) };
  },
  'random json': (r, _rand, junk) => ({ ...r, value: junk.json }),
  'before/after swapped': (r, rand) => ({ ...r, value: r.value?.replace(/"before":(null|\{[^}]*\}),"after":(null|\{[^}]*\})/, rand.pick(['"before":$2,"after":$1', '"before":null,"after":null', '"before":[],"after":[]', '"before":$2,"after":$2'])) }),
  'huge key': (r, rand, junk) => {
    const big = 'k'.repeat(rand.pick([2100, 3000, 20_000]));
    const withRow = rand.int(2) === 0;
    return { ...r, key: rand.int(3) === 0 ? big + junk.s : r.key?.replace(/"region":"[^"]*"/, `"region":"${big}"`), value: withRow ? r.value?.replace(/"region":"[^"]*"/g, `"region":"${big}"`) : r.value };
  },
};

export const mutationNames = Object.keys(mutations);

/** One change's records, valid or with one mutation applied. About 3 in 4 are mutated. */
export function fuzzRecords(tables: { employees: TableRef; items: TableRef }, partitions: number): fc.Arbitrary<FuzzRecord[]> {
  const junk = fc.record({ s: fc.string({ unit: 'binary', maxLength: 8 }), bytes: fc.uint8Array({ maxLength: 48 }), json: fc.json({ maxDepth: 3 }) });
  const mutated = fc.tuple(validRecords(tables, partitions), fc.constantFrom(...mutationNames), fc.integer(), junk).map(([records, name, seed, j]) => {
    const rand = rng(seed);
    return records.map((r, i) => {
      if (i > 0 && rand.int(2) === 0) return r;
      const out = mutations[name]!(r, rand, j);
      const opOnly = (name === 'wrong op' || name === 'keyed truncate') && out.value?.includes('"op":"t"') === true;
      // a member added to a truncate is ignored by any reader of the envelope (Debezium's rule for unknown fields)
      const kept = out.value === r.value || name === 'extra column';
      return { ...out, kind: out.kind === r.kind ? name : out.kind, truncate: kept ? r.truncate : opOnly };
    });
  });
  return fc.oneof({ arbitrary: validRecords(tables, partitions), weight: 1 }, { arbitrary: mutated, weight: 3 });
}
