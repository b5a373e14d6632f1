import assert from 'node:assert/strict';

/** The schema registry the test stack starts for files whose names ask for it (testStack.needsRegistry). */
export function testRegistryUrl(): string {
  const url = process.env.PGTUNNEL_TEST_REGISTRY_URL;
  assert.ok(url, 'the test stack exports PGTUNNEL_TEST_REGISTRY_URL for this file (its name must be in registryTestWords)');
  return url;
}

/** A zig-zag varint, as Avro writes longs (block counts included): what a forger writes for a huge count. */
export function varint(n: bigint): number[] {
  let z = n >= 0n ? n << 1n : ((-n) << 1n) - 1n;
  const out: number[] = [];
  do {
    const b = Number(z & 0x7fn);
    z >>= 7n;
    out.push(z > 0n ? b | 0x80 : b);
  } while (z > 0n);
  return out;
}
