import path from 'node:path';
import type { Command } from 'commander';
import pg from 'pg';
import { embeddedDefaults } from '../config/load.js';
import { exitCodes, TunnelError } from '../errors.js';
import { ensureEmployees } from '../stack/demo.js';
import { LocalStack } from '../stack/localStack.js';
import { cliAction, config, log, type GlobalOptions } from './context.js';

interface StackOptions {
  secure?: boolean;
  registry?: boolean;
}

const secureHelp = 'the secure stack under <home>/secure-stack: PostgreSQL with TLS and scram-sha-256 passwords, Kafka with SASL_SSL';

export function registerStack(program: Command): void {
  const stack = program
    .command('stack')
    .description('the embedded stack: two PostgreSQL clusters (5433 db1, 5434 db2), a Kafka broker (9092), optionally a schema registry (8081)')
    .addHelpText('after', '\nExample:\n  pgtunnel stack up && pgtunnel run && pgtunnel stack down');
  const local = (globals: GlobalOptions, options: StackOptions = {}) => {
    const home = config(globals).home;
    return options.secure ? new LocalStack(home, log, embeddedDefaults, path.join(home, 'secure-stack'), { secure: true }) : new LocalStack(home, log);
  };

  stack
    .command('up')
    .description('start the embedded stack (kept running until `stack down`)')
    .option('--secure', secureHelp)
    .option('--registry', 'also the schema registry (Apicurio, http://127.0.0.1:8081/apis/ccompat/v7), its schemas kept in the Kafka broker')
    .addHelpText('after', '\nExamples:\n  pgtunnel stack up && PGPASSWORD=$(cat .pgtunnel/postgres.pw) psql postgres://postgres@127.0.0.1:5433/db1\n  pgtunnel stack up --registry && PGTUNNEL_REGISTRY_URL=http://127.0.0.1:8081/apis/ccompat/v7 pgtunnel run\n  pgtunnel stack up --secure && pgtunnel run --config .pgtunnel/secure-stack/secure/pgtunnel.yaml')
    .action(
      cliAction(async (options: StackOptions, globals) => {
        const s = local(globals, options);
        if (options.secure && options.registry) throw new TunnelError('PGT_USAGE', '--registry and --secure do not go together', { errorClass: 'config', hint: 'the secure stack has no schema registry: drop one of them' });
        const started = await s.up(undefined, undefined, options.registry === true);
        printStatus(s);
        process.stdout.write(started.length > 0 ? `started: ${started.join(', ')}\n` : 'already running\n');
        if (s.security) {
          // the demo table on both sides, as `run` makes it on the default stack
          for (const cluster of [s.source, s.target]) {
            const client = new pg.Client({ connectionString: cluster.connectUrl(cluster === s.source ? embeddedDefaults.sourceDb : embeddedDefaults.targetDb) });
            await client.connect();
            await ensureEmployees(client).finally(() => client.end());
          }
          const file = s.writeClientConfig();
          process.stdout.write(`config for this stack (URLs with sslmode=verify-full, password files, Kafka SASL_SSL): ${file}\n  pgtunnel run --config ${file}\n`);
        }
        return exitCodes.ok;
      }),
    );
  stack
    .command('down')
    .description('stop every running part of the embedded stack (data is kept)')
    .option('--secure', secureHelp)
    .addHelpText('after', '\nExample:\n  pgtunnel stack down')
    .action(
      cliAction(async (options: StackOptions, globals) => {
        await local(globals, options).down();
        process.stdout.write('embedded stack stopped\n');
        return exitCodes.ok;
      }),
    );
  stack
    .command('status')
    .description('which parts of the embedded stack are running')
    .option('--secure', secureHelp)
    .addHelpText('after', '\nExample:\n  pgtunnel stack status')
    .action(
      cliAction((options: StackOptions, globals) => {
        printStatus(local(globals, options));
        return exitCodes.ok;
      }),
    );
}

function printStatus(s: LocalStack): void {
  for (const [part, st] of Object.entries(s.status(!s.security))) {
    process.stdout.write(`${part.padEnd(8)} ${st.running ? 'running' : 'stopped'}  ${st.address}\n`);
  }
}
