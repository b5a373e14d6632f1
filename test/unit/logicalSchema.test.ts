// Logical capture's schema versions: which version a relation message gets, live and when WAL is replayed.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { relationShape, versionFor, type ShapeColumn, type Version } from '../../src/capture/logicalSchema.js';

const col = (name: string, typeOid = 23, typeMod = -1): ShapeColumn => ({ name, typeOid, typeMod });
const a = [col('id'), col('name', 25)];
const b = [...a, col('email', 25)];
const c = [col('id'), col('name', 1043, 104)];

/** Numbers the shapes seen at these LSNs in order, as the stream does: each result with the versions after it. */
function run(seen: [ShapeColumn[], bigint][], versions: Version[] = []): number[] {
  return seen.map(([columns, lsn]) => {
    const found = versionFor(versions, columns, lsn);
    if ('known' in found) return found.known;
    versions.push(found.next);
    return found.next.version;
  });
}

test('live: the first columns are version 1, a change of name, type or typmod is the next, the same columns keep theirs', () => {
  assert.deepEqual(run([[a, 100n], [a, 150n], [b, 200n], [b, 300n], [c, 400n]]), [1, 1, 2, 2, 3]);
  assert.deepEqual(run([[a, 100n], [[col('id'), col('name', 1043, 54)], 200n], [[col('id'), col('name', 1043, 104)], 300n]]), [1, 2, 3], 'a typmod is part of the version');
});

test('a DDL that brings the columns back is a new version (as trigger capture numbers it), not the old one', () => {
  assert.deepEqual(run([[a, 100n], [b, 200n], [a, 300n]]), [1, 2, 3]);
});

test('replayed after a restart: WAL before the newest version gets the version in force there', () => {
  const versions: Version[] = [];
  assert.deepEqual(run([[a, 100n], [b, 200n], [c, 300n]], versions), [1, 2, 3]);
  // the slot confirmed only up to 150: the restart replays a (v1), b (v2), c (v3), and nothing is numbered again
  assert.deepEqual(run([[a, 160n], [b, 200n], [b, 250n], [c, 300n], [c, 350n]], versions), [1, 2, 2, 3, 3]);
  assert.equal(versions.length, 3);
  // a replayed relation message whose columns are not those in force there: the newest version with them
  assert.deepEqual(run([[a, 250n]], versions), [1]);
});

test('the captured columns of a relation message leave the excluded ones out, in the table order', () => {
  const relation = { oid: 1, schema: 'public', name: 't', replicaIdentity: 'd', columns: [{ name: 'id', typeOid: 23, typeMod: -1, isKey: true }, { name: 'secret', typeOid: 25, typeMod: -1, isKey: false }, { name: 'n', typeOid: 1700, typeMod: 655366, isKey: false }] };
  assert.deepEqual(relationShape(relation, new Set(['secret'])), [col('id'), col('n', 1700, 655366)]);
});
