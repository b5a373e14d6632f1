// Issue 24's profile: the bulk writer applied per partition, then transactionally, on one stack, with the
// transactional applier's stage reports (spills, time per stage) printed from its log.
import path from 'node:path';
import { parseArgs } from 'node:util';
import { BenchContext, root } from './context.js';
import { throughput } from './throughput.js';
import { startTestStack } from '../testkit/testStack.js';

const { values } = parseArgs({ options: { seconds: { type: 'string', default: '20' }, cap: { type: 'string', default: '500000' }, modes: { type: 'string', default: 'per-partition,transactional' } } });
const { stack, env } = await startTestStack(path.join(root, '.pgtunnel'), 'bench-txbulk');
const ctx = new BenchContext(stack, env, path.join(root, '.pgtunnel'));
try {
  for (const mode of values.modes!.split(',')) {
    if (mode === 'transactional') process.env.PGTUNNEL_APPLY = 'transactional';
    const r = await throughput(ctx, Number(values.seconds), 100, Number(values.cap), (output) => {
      for (const line of output.split('\n')) if (line.includes('held for their parts') || line.includes('spilled')) console.log(line.slice(0, 600));
    });
    delete process.env.PGTUNNEL_APPLY;
    console.log(`${mode}: ${r.changes} changes, tunnel ${r.tunnelPerSec.toFixed(0)}/s, writer ${r.writerPerSec.toFixed(0)}/s, peak RSS ${r.peakRssMb.toFixed(0)} MB`);
  }
} finally {
  await stack.down();
}
