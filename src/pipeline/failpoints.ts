/**
 * Crash points for fault tests: PGTUNNEL_FAILPOINTS="producer.after-publish:3" makes the process
 * SIGKILL itself the third time it passes that point. Unset (always, outside tests), it costs a lookup.
 */
const armed = new Map<string, number>();
for (const spec of (process.env.PGTUNNEL_FAILPOINTS ?? '').split(',').filter(Boolean)) {
  const [name, nth] = spec.split(':');
  armed.set(name!, Number(nth ?? 1));
}

export type FailpointName = 'producer.after-publish' | 'producer.after-kafka-commit' | 'apply.after-commit';

export function failpoint(name: FailpointName): void {
  const left = armed.get(name);
  if (left === undefined) return;
  if (left > 1) {
    armed.set(name, left - 1);
    return;
  }
  process.stderr.write(`failpoint ${name}: killing this process\n`);
  process.kill(process.pid, 'SIGKILL');
}
