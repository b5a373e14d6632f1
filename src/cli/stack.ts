import type { Command } from 'commander';
import { exitCodes } from '../errors.js';
import { LocalStack } from '../stack/localStack.js';
import { cliAction, config, log, type GlobalOptions } from './context.js';

export function registerStack(program: Command): void {
  const stack = program
    .command('stack')
    .description('the embedded stack: two PostgreSQL clusters (5433 db1, 5434 db2) and a Kafka broker (9092)')
    .addHelpText('after', '\nExample:\n  pgtunnel stack up && pgtunnel run && pgtunnel stack down');
  const local = (globals: GlobalOptions) => new LocalStack(config(globals).home, log);

  stack
    .command('up')
    .description('start the embedded stack (kept running until `stack down`)')
    .addHelpText('after', '\nExample:\n  pgtunnel stack up && psql postgres://postgres@127.0.0.1:5433/db1')
    .action(
      cliAction(async (_o: object, globals) => {
        const s = local(globals);
        const started = await s.up();
        printStatus(s);
        process.stdout.write(started.length > 0 ? `started: ${started.join(', ')}\n` : 'already running\n');
        return exitCodes.ok;
      }),
    );
  stack
    .command('down')
    .description('stop every running part of the embedded stack (data is kept)')
    .addHelpText('after', '\nExample:\n  pgtunnel stack down')
    .action(
      cliAction(async (_o: object, globals) => {
        await local(globals).down();
        process.stdout.write('embedded stack stopped\n');
        return exitCodes.ok;
      }),
    );
  stack
    .command('status')
    .description('which parts of the embedded stack are running')
    .addHelpText('after', '\nExample:\n  pgtunnel stack status')
    .action(
      cliAction((_o: object, globals) => {
        printStatus(local(globals));
        return exitCodes.ok;
      }),
    );
}

function printStatus(s: LocalStack): void {
  for (const [part, st] of Object.entries(s.status())) {
    process.stdout.write(`${part.padEnd(7)} ${st.running ? 'running' : 'stopped'}  ${st.address}\n`);
  }
}
