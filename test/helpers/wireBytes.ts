import assert from 'node:assert/strict';
import { waitFor } from './services.js';

/** The schema registry the test stack starts for files whose names ask for it (testStack.needsRegistry). */
export function testRegistryUrl(): string {
  const url = process.env.PGTUNNEL_TEST_REGISTRY_URL;
  assert.ok(url, 'the test stack exports PGTUNNEL_TEST_REGISTRY_URL for this file (its name must be in registryTestWords)');
  return url;
}

/**
 * Waits until the test stack's registry answers: scripts/test.mjs starts it beside the first test files (its
 * journal replay takes 30-60 s), so a file that uses it calls this in its `before`.
 */
export async function registryAnswers(): Promise<void> {
  const port = process.env.PGTUNNEL_TEST_REGISTRY_MANAGEMENT_PORT;
  if (!port) return;
  await waitFor('the test stack\'s schema registry to answer /health/ready', async () => {
    const response = await fetch(`http://127.0.0.1:${port}/health/ready`, { signal: AbortSignal.timeout(2000) });
    await response.body?.cancel();
    return response.ok;
  }, 180_000, 250);
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
