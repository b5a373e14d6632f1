import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { decodeEnvelope, keyOfImage, PoisonError } from '../../src/contracts/envelope.js';
import { JsonError, readObject } from '../../src/contracts/json.js';
import { fuzzRecords, fuzzTables } from '../helpers/fuzzRecords.js';

/** Reproduce a failure with PGTUNNEL_FUZZ_SEED=<the printed seed>; fast-check also prints the shrunk case. */
const seed = Number(process.env.PGTUNNEL_FUZZ_SEED ?? Math.floor(Math.random() * 2 ** 31));
const tables = fuzzTables('fuzz');
const keyOf = { [tables.employees.topic]: tables.employees.key, [tables.items.topic]: tables.items.key };

test(`the decoder refuses any record as poison or decodes it, never anything else (seed ${seed})`, () => {
  fc.assert(
    fc.property(fuzzRecords(tables, 3), (records) => {
      for (const r of records) {
        if (r.value === undefined) continue;
        try {
          const e = decodeEnvelope(r.key, r.value, keyOf[r.topic]);
          if (e.op === 't') continue;
          // what decodes has a key that names exactly the table's key, consistent with the row
          const row = (e.op === 'd' ? e.before : e.after)!;
          assert.equal(readObject(keyOfImage(row, keyOf[r.topic]!), 1).values.size, keyOf[r.topic]!.length);
        } catch (err) {
          if (!(err instanceof PoisonError)) throw err;
        }
      }
    }),
    { seed, numRuns: 2000 },
  );
});

test(`valid envelopes decode to the producer's row text and key (seed ${seed})`, () => {
  fc.assert(
    fc.property(fuzzRecords(tables, 3), (records) => {
      for (const r of records.filter((x) => x.kind.startsWith('valid ') && x.key !== undefined)) {
        const e = decodeEnvelope(r.key, r.value!, keyOf[r.topic]);
        const row = (e.op === 'd' ? e.before : e.after)!;
        assert.equal(keyOfImage(row, keyOf[r.topic]!), r.key);
        assert.ok(r.value!.includes(row.text));
      }
    }),
    { seed, numRuns: 1000 },
  );
});

/** The strict reader accepts no text JSON.parse refuses, and every object JSON.parse reads (within limits, no duplicates). */
test(`readObject agrees with JSON.parse (seed ${seed})`, () => {
  const texts = fc.oneof(
    fc.json({ maxDepth: 4 }),
    fc.json({ maxDepth: 4 }).chain((j) => fc.tuple(fc.nat(j.length), fc.string({ unit: 'binary', maxLength: 3 })).map(([at, s]) => j.slice(0, at) + s + j.slice(at))),
    fc.string({ unit: 'binary', maxLength: 30 }),
  );
  fc.assert(
    fc.property(texts, (text) => {
      let parsed: unknown;
      let parseFailed = false;
      try {
        parsed = JSON.parse(text);
      } catch {
        parseFailed = true;
      }
      let read = true;
      try {
        readObject(text, 2);
      } catch (err) {
        if (!(err instanceof JsonError)) throw err;
        read = false;
      }
      if (parseFailed) assert.equal(read, false, `readObject accepted ${JSON.stringify(text)}, which is not JSON`);
      else if (typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed) && !/("(?:[^"\\]|\\.)*")\s*:[^]*\1/.test(text)) {
        assert.equal(read, true, `readObject refused ${JSON.stringify(text)}`);
      }
    }),
    { seed, numRuns: 5000 },
  );
});
