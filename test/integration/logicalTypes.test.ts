import { test } from 'node:test';
import { families, runFamily } from '../helpers/typeFamilies.js';

// The same families as types.test, captured by logical decoding: pgoutput's text must come out as the trigger path's row text.
for (const f of families) {
  test(`capture: logical, every value exact: ${f.name} (snapshot under the slot's snapshot, then streamed updates)`, { timeout: 120_000 }, (t) => runFamily(t, f, { PGTUNNEL_CAPTURE: 'logical' }));
}
