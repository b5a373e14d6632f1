// The buffer's counting structures (a writer per key, edges between units, offset runs, key summaries of
// spilled units) against a naive model that keeps every record: same units taken in the same order, same
// offsets to store, whatever spills.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { TransactionBuffer } from '../../src/apply/transactionBuffer.js';
import { KeySummary } from '../../src/apply/keySummary.js';

const partitions = 3;
const table = 'public.t';

/** A transaction of the generated history: its commit time and the keys it writes, in order. */
interface Tx {
  id: string;
  ms: number;
  keys: number[];
}

type Step = { kind: 'deliver'; from: number } | { kind: 'take'; max: number } | { kind: 'spill' };

/** Every record kept: a unit is ready when complete and first unapplied writer of each of its keys. */
class Naive {
  readonly records: { unit: string; topic: string; partition: number; offset: number; key?: string }[] = [];
  readonly units = new Map<string, { ms?: number; expected?: number; seen: number; records: number }>();
  readonly applied = new Set<string>();

  /** A unit's commit time is known from its first record (an END event does not carry it). */
  held(unit: string): { ms?: number; expected?: number; seen: number; records: number } {
    let u = this.units.get(unit);
    if (!u) this.units.set(unit, (u = { seen: 0, records: 0 }));
    return u;
  }

  private complete(id: string): boolean {
    const u = this.units.get(id)!;
    return u.expected !== undefined && u.expected === u.seen;
  }

  private ready(id: string): boolean {
    if (!this.complete(id)) return false;
    for (const r of this.records) {
      if (r.unit !== id || r.key === undefined) continue;
      const first = this.records.find((o) => o.key === r.key && !this.applied.has(o.unit));
      if (first!.unit !== id) return false;
    }
    return true;
  }

  take(max: number): string[] {
    const open = [...this.units.keys()].filter((id) => !this.applied.has(id));
    const horizon = Math.min(...open.filter((id) => !this.complete(id) && this.units.get(id)!.ms !== undefined).map((id) => this.units.get(id)!.ms!));
    const out: string[] = [];
    let records = 0;
    while (records < max) {
      const ready = open.filter((id) => !this.applied.has(id) && this.units.get(id)!.ms! <= horizon && this.ready(id));
      if (ready.length === 0) break;
      const next = ready.reduce((a, b) => (this.units.get(a)!.ms! <= this.units.get(b)!.ms! ? a : b));
      this.applied.add(next);
      out.push(next);
      records += this.units.get(next)!.records;
    }
    return out;
  }

  nextOffsets(): string[] {
    const byPartition = new Map<string, number[]>();
    for (const r of this.records) {
      const pid = `${r.topic}/${r.partition}`;
      const list = byPartition.get(pid) ?? [];
      byPartition.set(pid, list);
      if (!this.applied.has(r.unit)) list.push(r.offset);
    }
    const top = (pid: string) => Math.max(...this.records.filter((r) => `${r.topic}/${r.partition}` === pid).map((r) => r.offset)) + 1;
    return [...byPartition].map(([pid, held]) => `${pid}:${held.length > 0 ? Math.min(...held) : top(pid)}`).sort();
  }
}

const envelope = (tx: Tx, order: number) =>
  `{"before":null,"after":{"id":1},"source":{"version":"1","connector":"pgtunnel","name":"p","ts_ms":${tx.ms},"snapshot":"false","db":"d","schema":"public","table":"t","txId":${tx.id},"lsn":1,"schema_version":1},"op":"u","ts_ms":9,"transaction":{"id":"${tx.id}","total_order":${order},"data_collection_order":${order}}}`;

/**
 * Transactions in commit order; each key's partition is fixed, so a partition holds its writers in commit order.
 * With `ties`, transactions share commit times (the same millisecond): only the keys then order them.
 */
const history = (ties: boolean) =>
  fc.array(fc.array(fc.integer({ min: 0, max: 7 }), { minLength: 1, maxLength: 6 }), { minLength: 1, maxLength: 12 }).map((txs) =>
    txs.map((keys, i): Tx => ({ id: String(100 + i), ms: 1000 + (ties ? Math.floor(i / 3) : i) * 10, keys })),
  );
const steps = fc.array(
  fc.oneof(
    fc.record({ kind: fc.constant('deliver' as const), from: fc.integer({ min: 0, max: partitions }) }),
    fc.record({ kind: fc.constant('take' as const), max: fc.integer({ min: 1, max: 8 }) }),
    fc.record({ kind: fc.constant('spill' as const) }),
  ),
  { maxLength: 120 },
);

/** Each key's writers were taken in the order they arrived (`before`: units taken by earlier takes). */
function inKeyOrder(naive: Naive, before: Set<string>, taken: string[]): void {
  const done = new Set(before);
  for (const id of taken) {
    for (const [i, r] of naive.records.entries()) {
      if (r.unit !== id || r.key === undefined) continue;
      const earlier = naive.records.slice(0, i).filter((o) => o.key === r.key && o.unit !== id && !done.has(o.unit));
      assert.deepEqual(earlier.map((o) => o.unit), [], `${id} taken before an earlier writer of ${r.key}`);
    }
    done.add(id);
  }
}

for (const ties of [false, true]) {
  test(`the buffer takes what a model keeping every record takes, ${ties ? 'in key order (commit times shared)' : 'in the same order'}, and stores the same offsets`, () => {
    fc.assert(
      fc.property(history(ties), steps, (txs, plan: Step[]) => {
        // per partition (the last one: the transaction topic's END events) what arrives, in order
        const queues: { tx: Tx; key?: number; order: number }[][] = Array.from({ length: partitions + 1 }, () => []);
        for (const tx of txs) {
          tx.keys.forEach((key, i) => queues[key % partitions]!.push({ tx, key, order: i + 1 }));
          queues[partitions]!.push({ tx, order: 0 });
        }
        const buffer = new TransactionBuffer(() => partitions, new Map(), () => true, 64);
        const naive = new Naive();
        const spilledKeys = new Map<string, Set<string>>();
        const offsets = Array.from({ length: partitions + 1 }, () => 0);
        const deliver = (p: number) => {
          const next = queues[p]!.shift();
          if (!next) return;
          const offset = offsets[p]++;
          const { tx } = next;
          const u = naive.held(tx.id);
          if (next.key === undefined) {
            buffer.end({ topic: 'tx', partition: 0, offset: BigInt(offset), key: undefined, value: undefined }, tx.id, new Map([[table, tx.keys.length]]));
            u.expected = tx.keys.length;
            naive.records.push({ unit: tx.id, topic: 'tx', partition: 0, offset });
            return;
          }
          const key = `{"id":${next.key}}`;
          const value = envelope(tx, next.order);
          // what the target's spilled records say, after the summaries named the candidates
          const maybe = buffer.maySpilledWriters(`t\u0000${key}`, tx.id);
          const exact = [...spilledKeys].filter(([id, keys]) => id !== tx.id && !naive.applied.has(id) && keys.has(key)).map(([id]) => id);
          for (const id of exact) assert.ok(maybe.includes(id), 'a summary never misses a spilled key');
          buffer.add({ topic: 't', partition: p, offset: BigInt(offset), key, value }, table, { op: 'u', txId: tx.id, totalOrder: next.order, sourceMs: tx.ms }, 'x', exact);
          u.ms = tx.ms;
          u.seen++;
          u.records++;
          naive.records.push({ unit: tx.id, topic: 't', partition: p, offset, key });
        };
        const check = () => assert.deepEqual(buffer.nextOffsets().map((o) => `${o.topic}/${o.partition}:${o.next}`).sort(), naive.nextOffsets());
        for (const step of plan) {
          if (step.kind === 'deliver') deliver(step.from);
          else if (step.kind === 'take') {
            // with shared commit times the order among them is free, but not a set cut at `max` records
            const max = ties ? 1_000_000 : step.max;
            const before = new Set(naive.applied);
            const got = buffer.take(max).map((u) => u.id);
            const want = naive.take(max);
            if (ties) assert.deepEqual([...got].sort(), [...want].sort());
            else assert.deepEqual(got, want);
            inKeyOrder(naive, before, got);
            check();
          } else {
            // as the applier does: the largest incomplete unit, else the last committed
            const unit = buffer.spillCandidate();
            if (!unit) continue;
            const keys = spilledKeys.get(unit.id) ?? new Set<string>();
            for (const r of unit.records) keys.add(r.key!);
            spilledKeys.set(unit.id, keys);
            buffer.spilled(unit, unit.records.length);
          }
        }
        // everything delivered: every transaction goes, in the model's order
        for (let p = 0; p <= partitions; p++) while (queues[p]!.length > 0) deliver(p);
        const before = new Set(naive.applied);
        const got = buffer.take(1_000_000).map((u) => u.id);
        const want = naive.take(1_000_000);
        if (ties) assert.deepEqual([...got].sort(), [...want].sort());
        else assert.deepEqual(got, want);
        inKeyOrder(naive, before, got);
        check();
        assert.equal(buffer.held, 0);
        assert.deepEqual(buffer.entries, { keys: 0, runs: 0 });
      }),
      { numRuns: 300 },
    );
  });
}

test('a spilled transaction keeps no entry per record: one key summary, one offset run per partition', () => {
  const buffer = new TransactionBuffer(() => 4, new Map(), () => true, 64 * 1024);
  const tx: Tx = { id: '7', ms: 5, keys: [] };
  for (let i = 0; i < 100_000; i++) {
    const key = `{"id":${i}}`;
    buffer.add({ topic: 't', partition: i % 4, offset: BigInt(i >> 2), key, value: envelope(tx, i + 1) }, table, { op: 'c', txId: '7', totalOrder: i + 1, sourceMs: 5 }, 'x');
    if (i % 10_000 === 9_999) {
      const unit = buffer.spillCandidate()!;
      buffer.spilled(unit, unit.records.length);
    }
  }
  assert.deepEqual(buffer.entries, { keys: 0, runs: 4 });
  assert.equal(buffer.bytes, 0);
  // a transaction writing one of its rows goes after it (the summary names it, the target confirms); one that
  // committed before it and wrote another row does not wait for it
  const other = (id: string, id2: number, ms: number, offset: number) => {
    const key = `{"id":${id2}}`;
    if (id2 < 100_000) assert.ok(buffer.maySpilledWriters(`t\u0000${key}`, id).includes('7'));
    buffer.add({ topic: 't', partition: 0, offset: BigInt(offset), key, value: envelope({ id, ms, keys: [] }, 1) }, table, { op: 'u', txId: id, totalOrder: 1, sourceMs: ms }, 'x', id2 < 100_000 ? ['7'] : []);
    buffer.end({ topic: 'tx', partition: 0, offset: BigInt(offset), key: undefined, value: undefined }, id, new Map([[table, 1]]));
  };
  other('8', 4, 6, 25_000);
  other('9', 100_001, 4, 25_001);
  assert.deepEqual(buffer.take(10).map((u) => u.id), ['9'], '8 committed after 7, which still waits for its END');
  buffer.end({ topic: 'tx', partition: 0, offset: 25_002n, key: undefined, value: undefined }, '7', new Map([[table, 100_000]]));
  assert.deepEqual(buffer.take(1_000_000).map((u) => u.id), ['7', '8']);
  assert.deepEqual(buffer.nextOffsets().map((o) => `${o.topic}/${o.partition}:${o.next}`).sort(), ['t/0:25002', 't/1:25000', 't/2:25000', 't/3:25000', 'tx/0:25003']);
});

test('a key summary answers "no" for most keys it never saw and "maybe" for every key it saw', () => {
  const summary = new KeySummary(128 * 1024);
  for (let i = 0; i < 100_000; i++) summary.add(`t\u0000{"id":${i}}`);
  for (let i = 0; i < 100_000; i++) assert.ok(summary.mayHave(`t\u0000{"id":${i}}`));
  let falsePositives = 0;
  for (let i = 100_000; i < 200_000; i++) if (summary.mayHave(`t\u0000{"id":${i}}`)) falsePositives++;
  // 10.5 bits a key, 7 probes: about 1% expected
  assert.ok(falsePositives < 3_000, `${falsePositives} false positives in 100,000`);
});
