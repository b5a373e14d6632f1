// What a process pays to load the Kafka client, eager (as published) against our door (transport/kafkaLib.ts,
// validators compiled on first use), and what `pgtunnel --help` costs: CPU of fresh node processes, alternated so a
// noisy machine hits both alike. Run: node dist/bench/startup.js [--rounds 10]
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const { values } = parseArgs({ options: { rounds: { type: 'string', default: '10' } } });
const rounds = Number(values.rounds);
const lib = fileURLToPath(new URL('../src/transport/kafkaLib.js', import.meta.url));
const cli = fileURLToPath(new URL('../../bin/pgtunnel.js', import.meta.url));
const report = "process.on('exit', () => { const u = process.cpuUsage(); process.stderr.write(`cpu ${(u.user + u.system) / 1000}\\n`); });";

const cases: Record<string, string[]> = {
  'import @platformatic/kafka (as published)': ['--input-type=module', '-e', `${report} await import('@platformatic/kafka');`],
  'import transport/kafkaLib.js (lazy validators)': ['--input-type=module', '-e', `${report} await import(${JSON.stringify(lib)});`],
  'pgtunnel --help': ['--import', `data:text/javascript,${encodeURIComponent(report)}`, cli, '--help'],
};

const cpu = new Map<string, number[]>(Object.keys(cases).map((k) => [k, []]));
for (let round = 0; round < rounds; round++) {
  for (const [name, args] of Object.entries(cases)) {
    const r = spawnSync(process.execPath, args, { cwd: fileURLToPath(new URL('../..', import.meta.url)), encoding: 'utf8' });
    const ms = Number(/cpu ([\d.]+)/.exec(r.stderr)?.[1]);
    if (r.status !== 0 || !Number.isFinite(ms)) throw new Error(`${name} failed: ${r.stderr}`);
    cpu.get(name)!.push(ms);
  }
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const base = median(cpu.get('import @platformatic/kafka (as published)')!);
console.log(`| case | CPU ms (median of ${rounds}) | vs the published import |\n|---|---|---|`);
for (const [name, xs] of cpu) console.log(`| ${name} | ${median(xs).toFixed(0)} | ${(median(xs) / base).toFixed(2)}× |`);
