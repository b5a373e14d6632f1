import assert from 'node:assert/strict';
import { test } from 'node:test';
import { compileRules, firstFailure } from '../../src/validate/rules.js';
import { TunnelError } from '../../src/errors.js';
import { JsonNumber } from '../../src/contracts/json.js';

const types = { emp_id: 'integer', first_name: 'character varying(100)', dob: 'date', city: 'character varying(100)', salary: 'integer' };
const seedRules = compileRules(
  [
    { name: 'born-after-2007', column: 'dob', op: '>', value: '2007-12-31' },
    { name: 'salary-above-10000', column: 'salary', op: '>', value: 10000 },
    { name: 'no-negative-emp-id', column: 'emp_id', op: '>=', value: 0 },
  ],
  types,
  'public.employees',
);
const good = { emp_id: 1, first_name: 'Ada', dob: '2008-01-01', city: 'London', salary: 20000 };

test("the seed's three rules pass a good row and name the first rule a bad row breaks", () => {
  assert.equal(firstFailure(seedRules, good), undefined);
  assert.equal(firstFailure(seedRules, { ...good, dob: '2007-12-31' })?.rule, 'born-after-2007');
  assert.equal(firstFailure(seedRules, { ...good, salary: 10000 })?.rule, 'salary-above-10000');
  assert.equal(firstFailure(seedRules, { ...good, emp_id: -5 })?.rule, 'no-negative-emp-id');
  assert.equal(firstFailure(seedRules, { ...good, salary: 5 })?.message, 'salary > 10000 failed: salary is 5');
});

test('a comparison with null fails, as in SQL; is null / is not null test it explicitly', () => {
  assert.equal(firstFailure(seedRules, { ...good, salary: null })?.rule, 'salary-above-10000');
  const rules = compileRules([{ name: 'has-city', column: 'city', op: 'is not null' }], types, 't');
  assert.equal(firstFailure(rules, { ...good, city: null })?.rule, 'has-city');
  assert.equal(firstFailure(rules, good), undefined);
});

test('in, not in, matches and != work on their types', () => {
  const rules = compileRules(
    [
      { name: 'known-city', column: 'city', op: 'in', value: ['London', 'Paris'] },
      { name: 'not-banned', column: 'emp_id', op: 'not in', value: [13] },
      { name: 'capitalised', column: 'first_name', op: 'matches', value: '^[A-Z]' },
      { name: 'not-zero', column: 'salary', op: '!=', value: 0 },
    ],
    types,
    't',
  );
  assert.equal(firstFailure(rules, good), undefined);
  assert.equal(firstFailure(rules, { ...good, city: 'Rome' })?.rule, 'known-city');
  assert.equal(firstFailure(rules, { ...good, emp_id: 13 })?.rule, 'not-banned');
  assert.equal(firstFailure(rules, { ...good, first_name: 'ada' })?.rule, 'capitalised');
  assert.equal(firstFailure(rules, { ...good, salary: 0 })?.rule, 'not-zero');
});

test('bad rules are config errors, all reported at once, checked against the column types', () => {
  try {
    compileRules(
      [
        { name: 'a', column: 'nosuch', op: '>', value: 1 },
        { name: 'b', column: 'salary', op: '>', value: 'lots' },
        { name: 'c', column: 'dob', op: '<', value: '31/12/2007' },
        { name: 'd', column: 'salary', op: 'matches', value: '^1' },
        { name: 'e', column: 'city', op: 'in', value: 'London' },
        { name: 'f', column: 'city', op: 'matches', value: '(' },
        { name: 'a', column: 'city', op: 'is null', value: 'x' },
      ],
      types,
      'public.employees',
    );
    assert.fail('expected a config error');
  } catch (err) {
    assert.ok(err instanceof TunnelError);
    assert.equal(err.errorClass, 'config');
    for (const expected of [/has no column nosuch/, /"lots" is not a number/, /"31\/12\/2007" is not a date/, /matches works on text columns/, /in needs a list value/, /rule f .*Invalid regular expression/, /the name is used twice/, /is null takes no value/]) {
      assert.match(err.message, expected);
    }
  }
});

test('numbers compare exactly beyond 2^53 and beyond float precision; timestamps to the microsecond', () => {
  const t = { id: 'bigint', amount: 'numeric(40,20)', at: 'timestamp with time zone', f: 'double precision' };
  const rules = compileRules(
    [
      { name: 'id-below', column: 'id', op: '<', value: '9223372036854775807' },
      { name: 'amount-above', column: 'amount', op: '>', value: '0.10000000000000000001' },
      { name: 'after', column: 'at', op: '>', value: '2020-01-01T00:00:00.000001+00:00' },
      { name: 'finite', column: 'f', op: '<', value: 'Infinity' },
    ],
    t,
    't',
  );
  const row = (id: string, amount: string, at: string, f: string | JsonNumber) => ({ id: new JsonNumber(id), amount: new JsonNumber(amount), at, f });
  assert.equal(firstFailure(rules, row('9223372036854775806', '0.10000000000000000002', '2020-01-01T00:00:00.000002+00:00', new JsonNumber('1e308'))), undefined);
  assert.equal(firstFailure(rules, row('9223372036854775807', '0.2', '2021-01-01T00:00:00+00:00', new JsonNumber('1')))?.rule, 'id-below');
  assert.equal(firstFailure(rules, row('1', '0.10000000000000000001', '2021-01-01T00:00:00+00:00', new JsonNumber('1')))?.rule, 'amount-above');
  assert.equal(firstFailure(rules, row('1', '1', '2020-01-01T00:00:00.000001+00:00', new JsonNumber('1')))?.rule, 'after');
  assert.equal(firstFailure(rules, row('1', '1', '2021-01-01T00:00:00+00:00', 'Infinity'))?.rule, 'finite');
  // a value not of the column's kind (a poisoned row) fails the rule instead of throwing
  assert.equal(firstFailure(rules, row('1', '1', 'yesterday', 'x'))?.rule, 'after');
});
