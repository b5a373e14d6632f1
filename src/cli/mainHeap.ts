import { constants, PerformanceObserver } from 'node:perf_hooks';
import v8 from 'node:v8';
import { TunnelError } from '../errors.js';

/**
 * The main isolate's semi-space (MB) for the commands whose sides may run on the main thread (`threads: auto` on
 * ≤ 2 cores). V8 sizes the young generation when the isolate starts (v8.setFlagsFromString later does not
 * change it), and by default lets it grow to 32 MB semi-spaces: on a 1M-row snapshot that is 60 MB of committed
 * young space holding garbage that lives across awaits. The side threads' 8 MB young generation
 * (sideThread.ts heapLimits) is 2–3 MB semi-spaces; this is the same size for the main thread.
 */
export const mainSemiSpaceMb = 2;

/**
 * The main isolate's old-space bound (MB) with both sides on it. What they hold at once is bounded in bytes (two
 * produce sends unacknowledged, a change page or a 4 MB snapshot piece, fetches of ≤ 2 MB, one 4 MB set decoding
 * and one writing, 8 MB of rows kept out of COPY): well under 100 MB live, so the bound is no limit on a healthy
 * run. What it changes is V8's heap growing factor, which V8 scales by the bound: with V8's default bound (GBs here)
 * the old generation grew to 4× the live set between full collections (210–240 MB used, bench/RESULTS.md); 1024
 * about halved that at the same snapshot time, while 192 (a small bound: a factor near 1.1) collected so often the
 * snapshot took 1.5–2.5× as long (machine loaded, same-run pairs).
 */
export const mainOldSpaceMb = 1024;

/** The transactional apply holds up to transactionBufferBytes of record text on the heap before it spills: on top. */
export function oldSpaceMbFor(cfg: { apply: string; transactionBufferBytes: number }): number {
  return mainOldSpaceMb + (cfg.apply === 'transactional' ? Math.ceil((3 * cfg.transactionBufferBytes) / 2 ** 20) : 0);
}

/** The commands that run the sides, for minutes or days; the others are short and keep V8's default. */
const longRunning = new Set(['run', 'demo']);

/** The command of `pgtunnel [-c file] <command> …` (argv as process.argv); undefined for none. */
export function commandOf(argv: string[]): string | undefined {
  for (let i = 2; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '-c' || a === '--config') i++;
    else if (!a.startsWith('-')) return a;
  }
  return undefined;
}

/** The `-c`/`--config` file given before the command, if any. */
export function configFileOf(argv: string[]): string | undefined {
  for (let i = 2; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '-c' || a === '--config') return argv[i + 1];
    if (a.startsWith('--config=')) return a.slice('--config='.length);
    if (!a.startsWith('-')) return undefined;
  }
  return undefined;
}

const semiSpaceFlag = /^--max[-_]semi[-_]space[-_]size(=|$)/;
const oldSpaceFlag = /^--max[-_](old[-_]space|heap)[-_]size(=|$)/;
const givenFlag = (flag: RegExp, execArgv: string[], nodeOptions: string) => [...execArgv, ...nodeOptions.split(/\s+/)].some((a) => flag.test(a));

/**
 * The node arguments to re-execute this process with, or undefined when it needs none: a short command, or every
 * size already given (on the command line or in NODE_OPTIONS: the user's choice stands, flag by flag). No old-space
 * bound when `oldSpaceMb` is unknown (a config that does not load: the command reports it).
 */
export function mainHeapArgs(argv: string[], execArgv: string[], nodeOptions = '', oldSpaceMb?: number): string[] | undefined {
  if (!longRunning.has(commandOf(argv) ?? '')) return undefined;
  const added: string[] = [];
  if (!givenFlag(semiSpaceFlag, execArgv, nodeOptions)) added.push(`--max-semi-space-size=${mainSemiSpaceMb}`);
  if (oldSpaceMb !== undefined && !givenFlag(oldSpaceFlag, execArgv, nodeOptions)) added.push(`--max-old-space-size=${oldSpaceMb}`);
  if (added.length === 0) return undefined;
  return [...execArgv, ...added, ...argv.slice(1)];
}

/** The old-space bound this run's config asks for; undefined when it does not load (the command itself reports why). */
async function configuredOldSpaceMb(argv: string[]): Promise<number | undefined> {
  try {
    const { loadConfig } = await import('../config/load.js');
    return oldSpaceMbFor(loadConfig({ configFile: configFileOf(argv) }));
  } catch {
    return undefined;
  }
}

/**
 * Replaces this process by itself with the main isolate's young generation and old space bounded (same pid, so
 * signals, supervisors and pid files see one process, and no parent stays resident). Where the platform has no
 * execve (Windows) or refuses it, the process goes on with V8's default: a larger heap, nothing else changes.
 */
export async function capMainHeap(argv: string[] = process.argv): Promise<void> {
  if (!longRunning.has(commandOf(argv) ?? '') || typeof process.execve !== 'function') return;
  const nodeOptions = process.env.NODE_OPTIONS ?? '';
  // the config is read only when it decides something: not in the re-executed process, nor when the user gave a bound
  const oldSpaceMb = givenFlag(oldSpaceFlag, process.execArgv, nodeOptions) ? undefined : await configuredOldSpaceMb(argv);
  const args = mainHeapArgs(argv, process.execArgv, nodeOptions, oldSpaceMb);
  if (!args) return;
  try {
    process.execve(process.execPath, [process.execPath, ...args], process.env);
  } catch {
    // ERR_FEATURE_UNAVAILABLE_ON_PLATFORM, or the exec refused (EACCES, E2BIG): only the heap's bounds are lost
  }
}

/** The old-space bound (MB) this process runs with, by its node arguments then NODE_OPTIONS; undefined for V8's default. */
export function oldSpaceBoundOf(execArgv: string[], nodeOptions = ''): number | undefined {
  let bound: number | undefined;
  for (const a of [...nodeOptions.split(/\s+/), ...execArgv]) {
    const m = /^--max[-_]old[-_]space[-_]size=(\d+)$/.exec(a);
    if (m) bound = Number(m[1]);
  }
  return bound;
}

/** The young generation's spaces: not in the old-space bound. */
const youngSpaces = new Set(['new_space', 'new_large_object_space']);

/**
 * Past its old-space bound V8 ends the process (a fatal abort: no error to classify, no hint). After each full
 * collection, where the old generation's use is its live set, a live set near the bound stops the run instead,
 * classified, while it still can stop cleanly (everything resumes from the checkpoints).
 */
export class HeapGuard {
  private readonly controller = new AbortController();
  private observer: PerformanceObserver | undefined;
  /** Why the run must stop, once the live set came near the bound. */
  outgrown: TunnelError | undefined;
  /** Aborted when the live set came near the bound. */
  readonly signal = this.controller.signal;

  /** `boundMb`: the old space's bound; `share`: of it, the live set that stops the run. */
  constructor(private readonly boundMb = oldSpaceBoundOf(process.execArgv, process.env.NODE_OPTIONS), private readonly share = 0.85) {}

  start(): this {
    if (this.boundMb === undefined) return this;
    const bound = this.boundMb * 2 ** 20;
    this.observer = new PerformanceObserver((list) => {
      if (this.outgrown || !list.getEntries().some((e) => (e as { detail?: { kind?: number } }).detail?.kind === constants.NODE_PERFORMANCE_GC_MAJOR)) return;
      const live = v8.getHeapSpaceStatistics().reduce((sum, s) => sum + (youngSpaces.has(s.space_name) ? 0 : s.space_used_size), 0);
      if (live < this.share * bound) return;
      this.outgrown = new TunnelError('PGT_THREAD_MEMORY', `the main thread's live heap reached ${Math.round(live / 2 ** 20)} MB of its ${this.boundMb} MB old-space bound`, {
        errorClass: 'fatal',
        hint: 'a set, page or held transaction outgrew the bound: lower batchSize, snapshotChunkSize or transactionBufferBytes, or give the heap more with NODE_OPTIONS=--max-old-space-size=<MB>',
      });
      this.stop();
      this.controller.abort();
    });
    this.observer.observe({ entryTypes: ['gc'] });
    return this;
  }

  stop(): void {
    this.observer?.disconnect();
  }
}
