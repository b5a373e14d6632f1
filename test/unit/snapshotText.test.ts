import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { wellFormed } from '../../src/capture/captureSwitch.js';

/** PostgreSQL's visibility of a committed xid in a snapshot (is_visible_txid / XidInMVCCSnapshot): xmin is tested first. */
function visible(snapshot: string, xid: bigint): boolean {
  const [xmin, xmax, xip] = snapshot.split(':') as [string, string, string];
  if (xid < BigInt(xmin)) return true;
  if (xid >= BigInt(xmax)) return false;
  return !xip.split(',').filter(Boolean).map(BigInt).includes(xid);
}

test('a slot snapshot read back with xmax below xmin becomes one pg_snapshot accepts, every xid as visible as before', () => {
  assert.equal(wellFormed('940:939:'), '940:940:');
  assert.equal(wellFormed('935:941:936,938'), '935:941:936,938');
  fc.assert(fc.property(fc.bigInt(3n, 1n << 40n), fc.bigInt(0n, 50n), fc.bigInt(0n, 100n), (xmin, lag, offset) => {
    const odd = `${xmin}:${xmin - lag}:`;
    const fixed = wellFormed(odd);
    const [fmin, fmax] = fixed.split(':').map(BigInt) as [bigint, bigint];
    assert.ok(fmin <= fmax, fixed);
    const xid = xmin - 50n + offset;
    assert.equal(visible(fixed, xid), visible(odd, xid), `${odd} → ${fixed} at ${xid}`);
  }), { numRuns: 300 });
});
