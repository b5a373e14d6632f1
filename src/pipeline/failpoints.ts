import { TunnelError } from '../errors.js';

/**
 * Fault points for tests: PGTUNNEL_FAILPOINTS="producer.after-publish:3" makes the process SIGKILL itself
 * the third time it passes that point; "apply.write:1:throw" throws a plain TypeError there instead (from
 * the first pass on), as a bug in that code would. Unset (always, outside tests), it costs a lookup.
 */
const names = ['producer.after-publish', 'producer.after-kafka-commit', 'apply.after-commit', 'apply.write', 'producer.between-acks'] as const;
export type FailpointName = (typeof names)[number];

interface Armed {
  left: number;
  mode: 'kill' | 'throw';
}

/** Pure: `name[:n[:kill|throw]],…` to armed points; a typo must fail loudly, not disarm the test or kill at the first pass. */
export function parseFailpoints(spec: string): Map<string, Armed> {
  const armed = new Map<string, Armed>();
  for (const item of spec.split(',').filter(Boolean)) {
    const [name, nth, mode, ...rest] = item.split(':');
    const left = nth === undefined ? 1 : /^[1-9][0-9]*$/.test(nth) ? Number(nth) : Number.NaN;
    if (!(names as readonly string[]).includes(name!) || Number.isNaN(left) || (mode !== undefined && mode !== 'kill' && mode !== 'throw') || rest.length > 0) {
      throw new TunnelError('PGT_FAILPOINT', `PGTUNNEL_FAILPOINTS: "${item}" is not <failpoint>[:<n ≥ 1>[:kill|throw]]`, {
        errorClass: 'config',
        hint: `use one of ${names.join(', ')}, optionally with :n (act at the n-th pass) and :throw, e.g. apply.after-commit:3`,
      });
    }
    armed.set(name!, { left, mode: mode === 'throw' ? 'throw' : 'kill' });
  }
  return armed;
}

let armed: Map<string, Armed> | undefined;

export function failpoint(name: FailpointName): void {
  armed ??= parseFailpoints(process.env.PGTUNNEL_FAILPOINTS ?? '');
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
