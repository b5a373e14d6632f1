/**
 * Fault points for tests: PGTUNNEL_FAILPOINTS="producer.after-publish:3" makes the process SIGKILL itself
 * the third time it passes that point; "apply.write:1:throw" throws a plain TypeError there instead (from
 * the first pass on), as a bug in that code would. Unset (always, outside tests), it costs a lookup.
 */
const armed = new Map<string, { left: number; mode: 'kill' | 'throw' }>();
for (const spec of (process.env.PGTUNNEL_FAILPOINTS ?? '').split(',').filter(Boolean)) {
  const [name, nth, mode] = spec.split(':');
  armed.set(name!, { left: Number(nth ?? 1), mode: mode === 'throw' ? 'throw' : 'kill' });
}

export type FailpointName = 'producer.after-publish' | 'producer.after-kafka-commit' | 'apply.after-commit' | 'apply.write';

export function failpoint(name: FailpointName): void {
  const point = armed.get(name);
  if (point === undefined) return;
  if (point.left > 1) {
    point.left -= 1;
    return;
  }
  if (point.mode === 'throw') throw new TypeError(`failpoint ${name}: a bug-like error in this code`);
  process.stderr.write(`failpoint ${name}: killing this process\n`);
  process.kill(process.pid, 'SIGKILL');
}
