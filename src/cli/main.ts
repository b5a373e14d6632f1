import { readFileSync } from 'node:fs';
import { Command, CommanderError } from 'commander';
import { exitCodes } from '../errors.js';
import { registerDemo } from './demo.js';
import { registerDlq } from './dlq.js';
import { registerInstall } from './install.js';
import { registerRun } from './run.js';
import { registerSchema } from './schema.js';
import { registerSnapshot } from './snapshot.js';
import { registerStack } from './stack.js';
import { registerStatus } from './status.js';
import { registerVerify } from './verify.js';

const version = (JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string }).version;

export function buildProgram(): Command {
  const program = new Command('pgtunnel')
    .description('Keeps PostgreSQL tables in sync with another PostgreSQL through Apache Kafka (snapshot, then streaming).')
    .version(version)
    .option('-c, --config <file>', 'configuration file (default: ./pgtunnel.yaml when present; PGTUNNEL_* variables override it)')
    .showSuggestionAfterError(true)
    .exitOverride()
    .addHelpText('after', '\nExit codes: 0 ok, 1 verify found differences, 2 usage or configuration error, 3 a service is unreachable, 4 other failure.');
  registerRun(program);
  registerInstall(program);
  registerSnapshot(program);
  registerStatus(program);
  registerVerify(program);
  registerDlq(program);
  registerDemo(program);
  registerStack(program);
  registerSchema(program);
  for (const command of program.commands) command.exitOverride();
  return program;
}

export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      return err.exitCode === 0 ? exitCodes.ok : exitCodes.usage;
    }
    throw err;
  }
  return typeof process.exitCode === 'number' ? process.exitCode : exitCodes.ok;
}
