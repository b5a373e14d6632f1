import { TunnelError } from '../errors.js';

/**
 * Crash points for fault tests: PGTUNNEL_FAILPOINTS="producer.after-publish:3" makes the process
 * SIGKILL itself the third time it passes that point. Unset (always, outside tests), it costs a lookup.
 */
const names = ['producer.after-publish', 'producer.after-kafka-commit', 'apply.after-commit'] as const;
export type FailpointName = (typeof names)[number];

/** Pure: `name[:n],…` to armed counts; a typo must fail loudly, not disarm the test or kill at the first pass. */
export function parseFailpoints(spec: string): Map<string, number> {
  const armed = new Map<string, number>();
  for (const item of spec.split(',').filter(Boolean)) {
    const [name, nth, ...rest] = item.split(':');
    const count = nth === undefined ? 1 : /^[1-9][0-9]*$/.test(nth) ? Number(nth) : Number.NaN;
    if (!(names as readonly string[]).includes(name!) || Number.isNaN(count) || rest.length > 0) {
      throw new TunnelError('PGT_FAILPOINT', `PGTUNNEL_FAILPOINTS: "${item}" is not <failpoint>[:<n ≥ 1>]`, {
        errorClass: 'config',
        hint: `use one of ${names.join(', ')}, optionally with :n (kill at the n-th pass), e.g. apply.after-commit:3`,
      });
    }
    armed.set(name!, count);
  }
  return armed;
}

let armed: Map<string, number> | undefined;

export function failpoint(name: FailpointName): void {
  armed ??= parseFailpoints(process.env.PGTUNNEL_FAILPOINTS ?? '');
  const left = armed.get(name);
  if (left === undefined) return;
  if (left > 1) {
    armed.set(name, left - 1);
    return;
  }
  process.stderr.write(`failpoint ${name}: killing this process\n`);
  process.kill(process.pid, 'SIGKILL');
}
