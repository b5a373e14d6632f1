import type { Command } from 'commander';
import { loadConfig, type TunnelConfig } from '../config/load.js';
import { classify, describeError, exitCodes } from '../errors.js';
import { createLogger, type Logger } from '../observe/log.js';
import { redact } from '../observe/redact.js';
import { LocalStack, type StackPart } from '../stack/localStack.js';
import { ensureEmployees } from '../stack/demo.js';
import { withClient } from '../pg.js';

export interface GlobalOptions {
  config?: string;
}

export const log: Logger = createLogger();

export function config(options: GlobalOptions): TunnelConfig {
  return loadConfig({ configFile: options.config });
}

/** Maps an error to a message on stderr and the documented exit code. */
export function failure(err: unknown): number {
  const e = classify(err);
  process.stderr.write(redact(`pgtunnel: ${describeError(e)}\n`));
  if (e.errorClass === 'config') return exitCodes.usage;
  if (e.errorClass === 'unreachable') return exitCodes.unreachable;
  return exitCodes.failure;
}

/** Brings up the embedded stack when no services are configured; returns what to stop afterwards. */
export async function embeddedStack(cfg: TunnelConfig): Promise<{ stack?: LocalStack; started: StackPart[] }> {
  if (!cfg.embedded) return { started: [] };
  const stack = new LocalStack(cfg.home, log);
  const started = await stack.up();
  if (started.length > 0) log.info({ started }, 'embedded stack started');
  else log.info('embedded stack already running; reusing it');
  // The embedded stack is a demo of the seed's table: create it on both sides when missing.
  if (cfg.tables.some((t) => t.schema === 'public' && t.name === 'employees')) {
    await withClient(cfg.sourceUrl, 'source', ensureEmployees);
    await withClient(cfg.targetUrl, 'target', ensureEmployees);
  }
  return { stack, started };
}

/** An AbortSignal that fires on Ctrl-C / SIGTERM. */
export function shutdownSignal(): AbortSignal {
  const controller = new AbortController();
  const stop = (name: string) => {
    if (controller.signal.aborted) {
      log.warn({ signal: name }, 'second signal: exiting now');
      process.exit(130);
    }
    log.info({ signal: name }, 'stopping (again to exit at once)');
    controller.abort();
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
  return controller.signal;
}

/** Wraps a command body: its result is the exit code, and any error becomes a message and its code. */
export function cliAction<O>(body: (options: O, globals: GlobalOptions) => Promise<number> | number) {
  return async (options: O, command: Command): Promise<void> => {
    try {
      process.exitCode = await body(options, command.optsWithGlobals<GlobalOptions>());
    } catch (err) {
      process.exitCode = failure(err);
    }
  };
}
