import path from 'node:path';
import type { Command } from 'commander';
import { embeddedDefaults, loadConfig, type TunnelConfig } from '../config/load.js';
import { classify, describeError, exitCodes, TunnelError, unexpectedStack } from '../errors.js';
import { createLogger, type Logger } from '../instruments/log.js';
import { redact } from '../redact.js';
import { LocalStack } from '../stack/localStack.js';
import { registryAppDir, SchemaRegistryServer } from '../stack/schemaRegistry.js';
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
  const stack = unexpectedStack(e);
  if (stack) process.stderr.write(`pgtunnel: unexpected error (a bug? please report it with this stack):\n${stack}\n`);
  if (e.errorClass === 'config') return exitCodes.usage;
  if (e.errorClass === 'unreachable') return exitCodes.unreachable;
  return exitCodes.failure;
}

/** Brings up the embedded stack when no services are configured (and the registry on `registry: embedded`); returns what to stop afterwards. */
export async function embeddedStack(cfg: TunnelConfig): Promise<{ stop: () => Promise<void> }> {
  if (!cfg.embedded) return { stop: cfg.embeddedRegistry ? await embeddedRegistryAlone(cfg) : async () => {} };
  const stack = new LocalStack(cfg.home, log);
  const started = await stack.up(undefined, undefined, cfg.embeddedRegistry);
  if (started.length > 0) log.info({ started }, 'embedded stack started');
  else log.info('embedded stack already running; reusing it');
  // The embedded stack is a demo of the seed's table: create it on both sides when missing.
  if (cfg.tables.some((t) => t.schema === 'public' && t.name === 'employees')) {
    await withClient(cfg.sourceUrl, 'source', ensureEmployees);
    await withClient(cfg.targetUrl, 'target', ensureEmployees);
  }
  return { stop: () => stack.down(started) };
}

/** `registry: embedded` beside services of one's own: the registry stores its schemas in the named broker. */
async function embeddedRegistryAlone(cfg: TunnelConfig): Promise<() => Promise<void>> {
  if (cfg.kafkaSecurity.sasl || cfg.kafkaSecurity.tls) {
    throw new TunnelError('PGT_CONFIG', 'registry: embedded keeps its schemas in a plaintext Kafka listener; this broker needs SASL/TLS', {
      errorClass: 'config',
      hint: 'run a registry of your own (Confluent, Apicurio, Karapace, Redpanda) and set registryUrl to it instead of registry: embedded',
    });
  }
  const registry = new SchemaRegistryServer(path.join(cfg.home, 'registry'), registryAppDir(cfg.home), embeddedDefaults.registryPort,
    embeddedDefaults.registryManagementPort, cfg.kafkaBrokers.join(','), log);
  return (await registry.start()) ? () => registry.stop() : async () => {};
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
