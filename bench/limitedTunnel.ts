// The CLI with other heap caps for its side threads, for bench/memory.ts's same-run comparison of caps:
// PGTUNNEL_BENCH_HEAP_LIMITS="producerOldMb/consumerOldMb/youngMb" (bench only, never read by the product).
import { capMainHeap } from '../src/cli/mainHeap.js';

// as bin/pgtunnel.js does, before the CLI's modules load
await capMainHeap();
const { heapLimits } = await import('../src/pipeline/sideThread.js');
const { main } = await import('../src/cli/main.js');

const spec = process.env.PGTUNNEL_BENCH_HEAP_LIMITS;
if (spec) {
  const [producerOld, consumerOld, young] = spec.split('/').map(Number);
  if (![producerOld, consumerOld, young].every((n) => Number.isInteger(n) && n! > 0)) throw new Error(`PGTUNNEL_BENCH_HEAP_LIMITS takes producerOldMb/consumerOldMb/youngMb, not ${spec}`);
  heapLimits.producer = { maxOldGenerationSizeMb: producerOld!, maxYoungGenerationSizeMb: young! };
  heapLimits.consumer = { maxOldGenerationSizeMb: consumerOld!, maxYoungGenerationSizeMb: young! };
}
process.exit(await main(process.argv));
