import assert from 'node:assert/strict';
import { randomBytes, randomInt } from 'node:crypto';
import { test, type TestContext } from 'node:test';
import fc from 'fast-check';
import type pg from 'pg';
import { describeTable } from '../../src/capture/catalog.js';
import { installTarget } from '../../src/capture/install.js';
import type { TableConfig } from '../../src/config/load.js';
import type { RuleSpec } from '../../src/config/schema.js';
import { TableStatements } from '../../src/apply/statements.js';
import { applySession } from '../../src/apply/session.js';
import { TargetWriter, type TableApply } from '../../src/apply/targetWriter.js';
import { createLogger } from '../../src/instruments/log.js';
import { connect } from '../../src/pg.js';
import { type OutMessage, type TableRef } from '../../src/contracts/envelope.js';
import { EnvelopeProducer, endOffsets, ensureTopics } from '../../src/transport/kafka.js';
import { partitionOf } from '../../src/transport/partitions.js';
import { dlqTopicOf } from '../../src/names.js';
import { DeadLetterWriter, type DeadLetterItem, type RawRecord } from '../../src/validate/deadLetters.js';
import { compileRules } from '../../src/validate/rules.js';
import { fuzzRecords, fuzzTables, itemsDdl, type FuzzRecord } from '../helpers/fuzzRecords.js';
import { onCleanup, query, services, tunnelDatabases, waitFor, type TunnelEnv } from '../helpers/services.js';
import { TunnelProcess } from '../helpers/tunnelProcess.js';

/** A new seed each run, printed in the test names: reproduce a failure with PGTUNNEL_FUZZ_SEED=<the printed seed>. */
const seed = Number(process.env.PGTUNNEL_FUZZ_SEED ?? randomInt(2 ** 31));
const partitions = 3;

/** The real DeadLetterWriter, tallying what it sends per class for the report. */
class TallyingWriter extends DeadLetterWriter {
  readonly classes = new Map<string, number>();
  override async send(items: DeadLetterItem[]): Promise<void> {
    await super.send(items);
    for (const { letter } of items) this.classes.set(letter.errorClass, (this.classes.get(letter.errorClass) ?? 0) + 1);
  }
}

/** Offsets per partition as Kafka would assign them; keyed records go where the producer would put them. */
function place(records: FuzzRecord[], next: Map<string, bigint>): (Placed & { kind: string })[] {
  return records.map((r) => {
    const partition = r.key === undefined ? (r.partition ?? 0) : partitionOf(r.key, partitions);
    const id = `${r.topic}/${partition}`;
    const offset = next.get(id) ?? 0n;
    next.set(id, offset + 1n);
    return { topic: r.topic, partition, offset, key: r.key, value: r.value, kind: r.kind, truncate: r.truncate, position: r.position };
  });
}

type Placed = RawRecord & { truncate?: boolean; position?: string };

/**
 * What consumer_offsets must count for a record, classified by how the generator made it, never by the decoder
 * under test: tombstones are skipped; an honoured truncate counts once (partition 0); a copy of a truncate its
 * partition already honoured is a dead letter; every other record counts once, applied or dead-lettered (a
 * truncate the source's capture did not record is poison on every partition). `honoured` is the caller's
 * memory of the truncates each partition honoured, in the order the records are applied.
 */
function counted(r: Placed, honoured?: Set<string>): number {
  if (r.value === undefined) return 0;
  if (honoured === undefined || r.truncate !== true) return 1;
  const id = `${r.topic} ${r.partition} ${r.position}`;
  if (honoured.has(id)) return 1;
  honoured.add(id);
  return r.partition === 0 ? 1 : 0;
}

async function totals(url: string, prefix: string) {
  const [row] = await query<{ applied: string; dead: string; poison: string }>(
    url,
    `SELECT coalesce(sum(applied), 0)::text AS applied, coalesce(sum(dead_lettered), 0)::text AS dead, coalesce(sum(poison), 0)::text AS poison
     FROM pgtunnel.consumer_offsets WHERE topic LIKE $1 || '.%'`,
    [prefix],
  );
  return { applied: Number(row!.applied), dead: Number(row!.dead), poison: Number(row!.poison) };
}

async function dlqCount(topics: string[]): Promise<number> {
  const ends = await endOffsets({ kafkaBrokers: [services().brokers] }, topics);
  return [...ends.values()].flat().reduce((n, o) => n + Number(o), 0);
}

/** The consumer's TableApply for a target table, with rules compiled against its column types. */
async function tableApply(target: pg.Client, ref: TableRef, apply: Partial<TableApply>, rules: RuleSpec[] = []): Promise<TableApply> {
  const shape = await describeTable(target, { schema: ref.schema, name: ref.name, key: ref.key } as TableConfig, 'target');
  const table = `${ref.schema}.${ref.name}`;
  return { table, statements: new TableStatements(shape), rules: compileRules(rules, shape.types, table), onMissingKey: 'upsert', orderPolicy: 'park', ...apply };
}

function failure(t: TestContext, what: string, set: (RawRecord & { kind: string })[], err: unknown): Error {
  const sample = set.slice(0, 5).map((r) => `  ${r.kind} p${r.partition}@${r.offset} key=${JSON.stringify(r.key?.slice(0, 200))} value=${JSON.stringify(r.value?.slice(0, 300))}`);
  t.diagnostic(`fuzz seed ${seed}`);
  return new Error(`${what} (reproduce with PGTUNNEL_FUZZ_SEED=${seed}): ${(err as Error).stack ?? err}\nfirst records of the set:\n${sample.join('\n')}`);
}

/** A TargetWriter as the consumer builds it, on a fresh target database, with a real DLQ producer. */
async function inProcessWriter(t: TestContext) {
  const db = await tunnelDatabases(t);
  await query(db.targetUrl, itemsDdl);
  const tables = fuzzTables(db.topicPrefix);
  const target = await connect(db.targetUrl, 'target', 'pgtunnel fuzz');
  onCleanup(t, () => target.end());
  await installTarget(target);
  await applySession(target, createLogger('fuzz'));
  const dlqTopics = [dlqTopicOf(tables.employees.topic), dlqTopicOf(tables.items.topic)];
  await ensureTopics({ kafkaBrokers: [services().brokers] }, dlqTopics, partitions);
  const producer = new EnvelopeProducer({ kafkaBrokers: [services().brokers] }, 'pgtunnel-fuzz');
  onCleanup(t, () => producer.close());
  const employees = await tableApply(target, tables.employees, {}, [
    { name: 'salary-not-negative', column: 'salary', op: '>=', value: 0 },
    { name: 'city-without-digits', column: 'city', op: 'matches', value: '^[^0-9]*$' },
  ]);
  const items = await tableApply(target, tables.items, { onMissingKey: 'dead-letter', orderPolicy: 'continue' });
  const letters = new TallyingWriter(producer);
  const writer = new TargetWriter(target, new Map([[tables.employees.topic, employees], [tables.items.topic, items]]), async () => partitions, letters);
  return { db, tables, writer, letters, dlqTopics, next: new Map<string, bigint>() };
}

const source = '"source":{"version":"0","connector":"pgtunnel","name":"p","ts_ms":1,"snapshot":"false","db":"fuzz","schema":"public","table":"employees","txId":1,"lsn":1,"schema_version":1},"ts_ms":1';
const employee = (op: string, row: string) => `{"op":"${op}","before":${op === 'd' ? row : 'null'},"after":${op === 'd' ? 'null' : row},${source}}`;
const ada = (id: string, first = 'Ada') => `{"emp_id":${id},"first_name":"${first}","last_name":"L","dob":"1990-12-10","city":"London","salary":1}`;

test(`fuzz: 10,000 random and mutated records through the decoder and apply path never stop it, and the counts add up (seed ${seed})`, { timeout: 600_000 }, async (t) => {
  t.diagnostic(`fuzz seed ${seed} (reproduce with PGTUNNEL_FUZZ_SEED=${seed})`);
  const { db, tables, writer, letters, dlqTopics, next } = await inProcessWriter(t);
  const started = Date.now();
  const kinds = new Map<string, number>();
  const sets = fc.sample(fc.integer({ min: 1, max: 300 }), { seed, numRuns: 1000 });
  let sent = 0;
  let expected = 0;
  const honoured = new Set<string>();
  for (let chunk = 0; sent < 10_000; chunk++) {
    const records = place(fc.sample(fuzzRecords(tables, partitions), { seed: seed + chunk, numRuns: 200 }).flat(), next);
    for (let i = 0; i < records.length; ) {
      const set = records.slice(i, (i += sets[chunk % sets.length]!));
      try {
        await writer.apply(set);
      } catch (err) {
        throw failure(t, 'the writer threw', set, err);
      }
      for (const r of set) kinds.set(r.kind, (kinds.get(r.kind) ?? 0) + 1);
      expected += set.reduce((n, r) => n + counted(r, honoured), 0);
      sent += set.length;
    }
  }
  const counts = await totals(db.targetUrl, db.topicPrefix);
  t.diagnostic(`${sent} records in ${Date.now() - started} ms: ${JSON.stringify(counts)}; letters ${JSON.stringify(Object.fromEntries(letters.classes))}`);
  t.diagnostic(`kinds: ${JSON.stringify(Object.fromEntries([...kinds].sort()))}`);
  assert.ok(sent >= 10_000);
  assert.equal(counts.applied + counts.dead + counts.poison, expected, `every record is applied or dead-lettered, seed ${seed}`);
  assert.ok(counts.applied > 1000 && counts.poison > 1000 && counts.dead > 100, `the mix reaches every outcome, seed ${seed}`);
  assert.equal(await dlqCount(dlqTopics), counts.dead + counts.poison, `each dead letter is in the DLQ exactly once, seed ${seed}`);

  // After all that, a good change still arrives at once.
  const good = place([{ topic: tables.employees.topic, key: '{"emp_id":100000}', value: employee('c', ada('100000')), kind: 'good' }], next);
  const goodStarted = Date.now();
  const result = await writer.apply(good);
  const goodMs = Date.now() - goodStarted;
  assert.equal(result.applied, 1);
  assert.deepEqual(await query(db.targetUrl, 'SELECT first_name, salary FROM employees WHERE emp_id = 100000'), [{ first_name: 'Ada', salary: 1 }]);
  assert.ok(goodMs < 1000, `a good change took ${goodMs} ms`);
});

/** The writer for the regression cases: records of employees, placed and applied as one set. */
async function caseWriter(t: TestContext) {
  const { db, tables, writer, next } = await inProcessWriter(t);
  const topic = tables.employees.topic;
  const apply = (records: { key: string | undefined; value: string | undefined }[]) => writer.apply(place(records.map((r) => ({ ...r, topic, kind: 'case' })), next));
  const firstNameOf = async (id: number) => (await query<{ first_name: string }>(db.targetUrl, 'SELECT first_name FROM employees WHERE emp_id = $1', [id]))[0]?.first_name;
  return { apply, firstNameOf };
}

test('found by the fuzzer: a NUL or 20 kB key on a poison record is a dead letter (the writer threw)', { timeout: 60_000 }, async (t) => {
  const { apply, firstNameOf } = await caseWriter(t);
  // The NUL broke the parked-keys lookup, then the parked-keys insert; the big key went into the supersede guard's btree.
  const big = `{"emp_id":"${randomBytes(15_000).toString('base64')}"}`;
  assert.deepEqual(await apply([{ key: '\u0000x', value: employee('c', ada('1')) }, { key: big, value: 'nope' }, { key: '{"emp_id":2}', value: employee('c', ada('2')) }]), { applied: 1, deadLettered: 2, skipped: 0 });
  assert.equal(await firstNameOf(2), 'Ada');
});

test('found by the fuzzer: a refused change under a key spelled with spaces parks the key itself', { timeout: 60_000 }, async (t) => {
  const { apply, firstNameOf } = await caseWriter(t);
  // The raw spelling was parked, so the next change of the key passed by its letter.
  assert.equal((await apply([{ key: '{ "emp_id" : 3 }', value: employee('c', ada('3', 'x'.repeat(101))) }])).deadLettered, 1);
  assert.equal((await apply([{ key: '{"emp_id":3}', value: employee('c', ada('3')) }])).deadLettered, 1, 'parked behind the letter');
  assert.equal(await firstNameOf(3), undefined);
});

test('found by the fuzzer: 7 and "7" are not two keys of one row', { timeout: 60_000 }, async (t) => {
  const { apply, firstNameOf } = await caseWriter(t);
  // The newer delete of "7" ran before the older upsert of 7 (deletes go first), and the row stayed.
  assert.deepEqual(await apply([{ key: '{"emp_id":7}', value: employee('c', ada('7')) }, { key: '{"emp_id":"7"}', value: employee('d', ada('"7"')) }]), { applied: 1, deadLettered: 1, skipped: 0 }, 'the key in another form is poison');
  assert.equal(await firstNameOf(7), 'Ada');
});

/** Publishes in parts of a few MB: one Kafka record batch must stay under the topic's max.message.bytes. */
async function publish(producer: EnvelopeProducer, messages: OutMessage[]): Promise<void> {
  let part: OutMessage[] = [];
  let bytes = 0;
  for (const m of messages) {
    const size = (m.key?.length ?? 0) + (m.value?.length ?? 0);
    if (part.length > 0 && bytes + size > 4 * 1024 * 1024) {
      await producer.publish(part);
      part = [];
      bytes = 0;
    }
    part.push(m);
    bytes += size;
  }
  if (part.length > 0) await producer.publish(part);
}

async function timeToTarget(db: TunnelEnv, id: number): Promise<number> {
  await query(db.sourceUrl, "INSERT INTO employees (emp_id, first_name, last_name, dob, city, salary) VALUES ($1, 'Ada', 'L', '1990-12-10', 'London', 1)", [id]);
  const committed = Date.now();
  await waitFor(`row ${id} in the target`, async () => (await query(db.targetUrl, 'SELECT 1 FROM employees WHERE emp_id = $1', [id])).length === 1, 10_000, 5);
  return Date.now() - committed;
}

test(`fuzz end to end: mutated records on the topic of a running tunnel never stop it (seed ${seed})`, { timeout: 300_000 }, async (t) => {
  t.diagnostic(`fuzz seed ${seed} (reproduce with PGTUNNEL_FUZZ_SEED=${seed})`);
  const db = await tunnelDatabases(t);
  const tunnel = await TunnelProcess.start(t, db.env);
  const table = fuzzTables(db.topicPrefix).employees;
  const producer = new EnvelopeProducer({ kafkaBrokers: [services().brokers] }, 'pgtunnel-fuzz');
  onCleanup(t, () => producer.close());
  const count = await producer.partitions(table.topic);
  const records = fc.sample(fuzzRecords({ employees: table, items: table }, count), { seed, numRuns: 400 }).flat().filter((r) => r.value !== '' && (r.value?.length ?? 0) < 1024 * 1024);
  await publish(producer, records.map((r) => ({ topic: r.topic, key: r.key, value: r.value, partition: r.key === undefined ? (r.partition ?? 0) % count : undefined })));
  const placed = records.map((r) => ({ ...r, partition: r.key === undefined ? (r.partition ?? 0) % count : partitionOf(r.key, count), offset: 0n }));
  // the tunnel honours a truncate only when the source's capture recorded it: these never were
  const expected = placed.reduce((n, r) => n + counted(r), 0);
  const counts = await waitFor('every record applied or dead-lettered', async () => {
    if (tunnel.child.exitCode !== null) throw new Error(`the tunnel exited with ${tunnel.child.exitCode} (seed ${seed}):\n${tunnel.output.slice(-3000)}`);
    const c = await totals(db.targetUrl, db.topicPrefix);
    return c.applied + c.dead + c.poison >= expected ? c : undefined;
  }, 180_000, 100);
  t.diagnostic(`${records.length} records through Kafka: ${JSON.stringify(counts)}`);
  assert.equal(counts.applied + counts.dead + counts.poison, expected, `seed ${seed}`);
  assert.equal(await dlqCount([dlqTopicOf(table.topic)]), counts.dead + counts.poison);
  assert.equal(tunnel.child.exitCode, null, 'the tunnel is still running');
  const ms = await timeToTarget(db, 100_000);
  t.diagnostic(`a good change reached the target in ${ms} ms`);
  assert.ok(ms < 1000, `a good change took ${ms} ms`);
  await tunnel.stop();
});
