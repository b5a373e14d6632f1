import type { Command } from 'commander';
import type { TunnelConfig } from '../config/load.js';
import { exitCodes } from '../errors.js';
import { withClient } from '../pg.js';
import { prepare, tableApply } from '../pipeline/tunnel.js';
import { EnvelopeProducer } from '../transport/kafka.js';
import { DeadLetterWriter } from '../validate/deadLetters.js';
import { markResolved, readDeadLetters, type StoredLetter } from '../validate/dlqReader.js';
import { Replayer } from '../validate/replay.js';
import { cliAction, config, log } from './context.js';

interface Filters {
  table?: string;
  rule?: string;
  key?: string;
}

/** `--key 7` matches a one-column key's value; `--key '{"emp_id":7}'` the whole key. */
function keyMatches(letter: StoredLetter, key: string): boolean {
  if (letter.key === undefined) return false;
  if (letter.key === key) return true;
  try {
    const values = Object.values(JSON.parse(letter.key) as Record<string, unknown>);
    return values.length === 1 && String(values[0]) === key;
  } catch {
    return false;
  }
}

/** Unresolved dead letters (or all), filtered, oldest first; a letter written twice after a crash counts once. */
export async function loadLetters(cfg: TunnelConfig, filters: Filters, includeResolved = false): Promise<StoredLetter[]> {
  const tables = cfg.tables.filter((t) => !filters.table || filters.table === t.name || filters.table === `${t.schema}.${t.name}`);
  const letters = await readDeadLetters(cfg.kafkaBrokers, tables.map((t) => t.dlqTopic));
  if (letters.length > 0) await withClient(cfg.targetUrl, 'target', (c) => markResolved(c, letters));
  const seen = new Set<string>();
  return letters.filter((l) => {
    const id = `${l.original.topic}\u0000${l.original.partition}\u0000${l.original.offset}\u0000${l.attempt}`;
    const first = !seen.has(id);
    seen.add(id);
    return first && (includeResolved || !l.resolved) && (!filters.rule || l.rule === filters.rule) && (!filters.key || keyMatches(l, filters.key));
  });
}

export function formatLetter(l: StoredLetter): string {
  const where = l.original.partition >= 0 ? `${l.original.topic}[${l.original.partition}]@${l.original.offset}` : `${l.original.topic} change ${l.original.offset}`;
  return `${l.time.slice(0, 19).replace('T', ' ')}  ${l.errorClass.padEnd(11)} ${(l.rule ?? '-').padEnd(20)} key ${l.key ?? '-'}  attempt ${l.attempt}  from ${where}${l.resolved ? `  [${l.resolved}]` : ''}\n    ${l.message}`;
}

export function registerDlq(program: Command): void {
  const dlq = program
    .command('dlq')
    .description('dead letters: what was refused and why, and replaying them')
    .addHelpText('after', '\nExamples:\n  pgtunnel dlq list\n  pgtunnel dlq replay --dry-run');
  dlq
    .command('list')
    .description('list dead letters, newest first (unresolved ones unless --all)')
    .option('--json', 'print JSON')
    .option('--table <table>', 'only this table')
    .option('--rule <rule>', 'only letters of this rule')
    .option('--key <key>', 'only this key (a value, or the key JSON)')
    .option('--all', 'include letters already resolved by replay')
    .addHelpText('after', '\nExamples:\n  pgtunnel dlq list\n  pgtunnel dlq list --rule salary-above-10000 --json')
    .action(
      cliAction(async (options: Filters & { json?: boolean; all?: boolean }, globals) => {
        const letters = (await loadLetters(config(globals), options, options.all)).reverse();
        if (options.json) process.stdout.write(`${JSON.stringify(letters, null, 2)}\n`);
        else if (letters.length === 0) process.stdout.write('no dead letters\n');
        else process.stdout.write(`${letters.map(formatLetter).join('\n')}\n${letters.length} dead letter(s)\n`);
        return exitCodes.ok;
      }),
    );
  dlq
    .command('replay')
    .description('re-validate with the current rules and re-apply, key by key in order; what fails stays with its new reason')
    .option('--table <table>', 'only this table')
    .option('--rule <rule>', 'only letters of this rule')
    .option('--key <key>', 'only this key (a value, or the key JSON)')
    .option('--dry-run', 'say what would happen, change nothing')
    .addHelpText('after', '\nExamples:\n  pgtunnel dlq replay --dry-run\n  pgtunnel dlq replay --rule salary-above-10000')
    .action(
      cliAction(async (options: Filters & { dryRun?: boolean }, globals) => {
        const cfg = config(globals);
        const letters = await loadLetters(cfg, options);
        if (letters.length === 0) {
          process.stdout.write('no dead letters to replay\n');
          return exitCodes.ok;
        }
        const tables = new Map((await prepare(cfg, log)).map((t) => [t.config.topic, tableApply(t)]));
        const producer = new EnvelopeProducer(cfg.kafkaBrokers, 'pgtunnel-replay');
        try {
          const outcomes = await withClient(cfg.targetUrl, 'target', (target) => new Replayer(target, tables, new DeadLetterWriter(producer)).replay(letters, options.dryRun === true));
          for (const o of outcomes) process.stdout.write(`${o.result.padEnd(11)} key ${o.letter.key ?? '-'} (${o.letter.errorClass}${o.letter.rule ? ` ${o.letter.rule}` : ''})${o.reason ? ` — ${o.reason}` : ''}\n`);
          const applied = outcomes.filter((o) => o.result === 'applied' || o.result === 'would apply').length;
          process.stdout.write(`${options.dryRun ? 'dry run: ' : ''}${applied} of ${outcomes.length} ${options.dryRun ? 'would be' : ''} applied\n`);
        } finally {
          await producer.close();
        }
        return exitCodes.ok;
      }),
    );
}
