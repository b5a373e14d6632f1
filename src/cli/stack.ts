import type { Command } from 'commander';
import { exitCodes } from '../errors.js';
import { LocalStack } from '../stack/localStack.js';
import { config, failure, log, type GlobalOptions } from './context.js';

export function registerStack(program: Command): void {
  const stack = program
    .command('stack')
    .description('the embedded stack: two PostgreSQL clusters (5433 db1, 5434 db2) and a Kafka broker (9092)')
    .addHelpText('after', '\nExample:\n  pgtunnel stack up && pgtunnel run && pgtunnel stack down');
  const local = (command: Command) => new LocalStack(config(command.optsWithGlobals<GlobalOptions>()).home, log);

  stack
    .command('up')
    .description('start the embedded stack (kept running until `stack down`)')
    .action(async (_o: object, command: Command) => {
      try {
        const s = local(command);
        const started = await s.up();
        printStatus(s);
        process.stdout.write(started.length > 0 ? `started: ${started.join(', ')}\n` : 'already running\n');
        process.exitCode = exitCodes.ok;
      } catch (err) {
        process.exitCode = failure(err);
      }
    });
  stack
    .command('down')
    .description('stop every running part of the embedded stack (data is kept)')
    .action(async (_o: object, command: Command) => {
      try {
        await local(command).down();
        process.stdout.write('embedded stack stopped\n');
        process.exitCode = exitCodes.ok;
      } catch (err) {
        process.exitCode = failure(err);
      }
    });
  stack
    .command('status')
    .description('which parts of the embedded stack are running')
    .action((_o: object, command: Command) => {
      try {
        printStatus(local(command));
        process.exitCode = exitCodes.ok;
      } catch (err) {
        process.exitCode = failure(err);
      }
    });
}

function printStatus(s: LocalStack): void {
  for (const [part, st] of Object.entries(s.status())) {
    process.stdout.write(`${part.padEnd(7)} ${st.running ? 'running' : 'stopped'}  ${st.address}\n`);
  }
}
