import { test } from 'node:test';
import { families, runFamily } from '../helpers/typeFamilies.js';

for (const f of families) {
  test(`every value exact: ${f.name} (snapshot, then streamed updates; target created by autoCreate)`, { timeout: 120_000 }, (t) => runFamily(t, f));
}
