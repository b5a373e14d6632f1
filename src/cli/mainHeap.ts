/**
 * The main isolate's semi-space (MB) for the commands whose sides may run on the main thread (`threads: auto` on
 * ≤ 2 cores). V8 sizes the young generation when the isolate starts (v8.setFlagsFromString later does not
 * change it), and by default lets it grow to 32 MB semi-spaces: on a 1M-row snapshot that is 60 MB of committed
 * young space holding garbage that lives across awaits. The side threads' 8 MB young generation
 * (sideThread.ts heapLimits) is 2–3 MB semi-spaces; this is the same size for the main thread.
 */
export const mainSemiSpaceMb = 2;

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

/**
 * The node arguments to re-execute this process with, or undefined when it needs none: a short command, or a
 * semi-space size already given (on the command line or in NODE_OPTIONS: the user's choice stands).
 */
export function mainHeapArgs(argv: string[], execArgv: string[], nodeOptions = ''): string[] | undefined {
  if (!longRunning.has(commandOf(argv) ?? '')) return undefined;
  const given = [...execArgv, ...nodeOptions.split(/\s+/)].some((a) => /^--max[-_]semi[-_]space[-_]size(=|$)/.test(a));
  if (given) return undefined;
  return [...execArgv, `--max-semi-space-size=${mainSemiSpaceMb}`, ...argv.slice(1)];
}

/**
 * Replaces this process by itself with the main isolate's young generation capped (same pid, so signals,
 * supervisors and pid files see one process, and no parent stays resident). Where the platform has no execve
 * (Windows) or refuses it, the process goes on with V8's default: a larger heap, nothing else changes.
 */
export function capMainYoungGeneration(argv: string[] = process.argv): void {
  const args = mainHeapArgs(argv, process.execArgv, process.env.NODE_OPTIONS);
  if (!args || typeof process.execve !== 'function') return;
  try {
    process.execve(process.execPath, [process.execPath, ...args], process.env);
  } catch {
    // ERR_FEATURE_UNAVAILABLE_ON_PLATFORM, or the exec refused (EACCES, E2BIG): only the young generation's size is lost
  }
}
