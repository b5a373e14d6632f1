import { availableParallelism } from 'node:os';

/** `threads` as configured: forced on or off, or `auto` (the default), which follows the host's cores. */
export type ThreadsSetting = boolean | 'auto';

export interface ThreadChoice {
  /** The sides each in a worker thread (true), or both on the calling thread. */
  threads: boolean;
  /** Why, in the words the start log line and `pgtunnel status` show. */
  reason: string;
}

/**
 * From this many cores `auto` runs the sides in worker threads; below, on the main thread: on 2 cores the three
 * isolates wait to be scheduled beside PostgreSQL and the broker on every round trip, and one thread measured
 * 0.4–0.7× the p50 and 0.3–0.6× the p99 of two at 1,000 commits/s (bench/RESULTS.md "Threads on a 2-core host").
 */
export const autoThreadsMinCores = 3;

/** The rule `pgtunnel run` applies to its `threads` setting; pure, so it is tested for every host. */
export function chooseThreads(setting: ThreadsSetting, cores: number = availableParallelism()): ThreadChoice {
  if (setting === true) return { threads: true, reason: 'threads: true' };
  if (setting === false) return { threads: false, reason: 'threads: false' };
  return cores >= autoThreadsMinCores
    ? { threads: true, reason: `threads: auto on ${cores} cores` }
    : { threads: false, reason: `threads: auto on ${cores} core${cores === 1 ? '' : 's'}; worker threads from ${autoThreadsMinCores} cores` };
}

/** Where the sides run, for the log and status: `two worker threads (threads: auto on 4 cores)`. */
export function describeThreads(choice: ThreadChoice, workers: number): string {
  const where = !choice.threads ? 'the main thread' : workers === 1 ? 'one worker thread' : 'two worker threads';
  return `${where} (${choice.reason})`;
}
