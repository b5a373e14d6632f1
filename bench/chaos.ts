// npm run chaos -- --rounds 100: the long chaos run on a stack of its own; results go to bench/RESULTS.md.
import { appendFileSync, existsSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { runChaos } from '../test/helpers/chaos.js';
import { startTestStack } from '../testkit/testStack.js';
import { tortureDdl } from '../testkit/workload.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const { values } = parseArgs({ options: { rounds: { type: 'string', default: '100' } } });
const rounds = Number(values.rounds);

async function sql(url: string, text: string): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  await client.query(text).finally(() => client.end());
}

const home = path.resolve(root, process.env.PGTUNNEL_HOME ?? '.pgtunnel');
console.log(`chaos: starting a stack of its own under ${home}/chaos-stack`);
const { stack, env: stackEnv } = await startTestStack(home, 'chaos-stack');
let failed = false;
try {
  const source = `${stackEnv.PGTUNNEL_TEST_SOURCE_SERVER}/chaos`;
  const target = `${stackEnv.PGTUNNEL_TEST_TARGET_SERVER}/chaos`;
  await sql(`${stackEnv.PGTUNNEL_TEST_SOURCE_SERVER}/postgres`, 'CREATE DATABASE chaos');
  await sql(`${stackEnv.PGTUNNEL_TEST_TARGET_SERVER}/postgres`, 'CREATE DATABASE chaos');
  await sql(source, tortureDdl);
  await sql(target, tortureDdl);
  const env = {
    ...stackEnv,
    PGTUNNEL_SOURCE_URL: source,
    PGTUNNEL_TARGET_URL: target,
    PGTUNNEL_KAFKA_BROKERS: stackEnv.PGTUNNEL_TEST_BROKERS!,
    PGTUNNEL_TABLES: 'torture',
    PGTUNNEL_HOME: path.join(home, 'chaos-stack'),
    PGTUNNEL_LOG_FORMAT: 'json',
  };
  Object.assign(process.env, env);
  const result = await runChaos(env, { sourceUrl: source, targetUrl: target }, stack, {
    rounds,
    convergeTimeoutMs: 600_000,
    onRound: (round, victim) => console.log(`round ${round}/${rounds}: kill ${victim}`),
  });
  failed = result.mismatches.length > 0;
  const kills = Object.entries(result.kills).map(([k, n]) => `${k} ${n}`).join(', ');
  const line = `| ${new Date().toISOString().slice(0, 10)} | ${result.rounds} | ${kills} | ${result.transactions} | ${result.changes} | ${(result.convergeMs / 1000).toFixed(1)} s | ${failed ? `**${result.mismatches.length} mismatches**` : 'equal, versions exact'} | ${(result.durationMs / 60000).toFixed(1)} min |\n`;
  const file = path.join(root, 'bench', 'RESULTS.md');
  if (!existsSync(file)) writeFileSync(file, '# Benchmark and long-run results\n');
  appendFileSync(file, `\n## Chaos (npm run chaos -- --rounds ${rounds})\n| date | rounds | kills | transactions | row changes | converge after last kill | result | duration |\n|---|---|---|---|---|---|---|---|\n${line}`);
  console.log(JSON.stringify(result, null, 2));
  console.log(`chaos: ${failed ? 'FAILED' : 'passed'}; recorded in bench/RESULTS.md`);
} finally {
  await stack.down();
}
process.exit(failed ? 1 : 0);
