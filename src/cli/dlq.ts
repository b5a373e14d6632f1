import { withTables } from '../config/tables.js';
import { applySession } from '../apply/session.js';
import type { Command } from 'commander';
import type pg from 'pg';
import type { TunnelConfig } from '../config/load.js';
import { installTarget } from '../capture/install.js';
import { exitCodes, TunnelError } from '../errors.js';
import { inTransaction, withClient } from '../pg.js';
import { EnvelopeProducer, existingTopics } from '../transport/kafka.js';
import { DeadLetterWriter } from '../validate/deadLetters.js';
import { markResolved, readDeadLetters, type StoredLetter } from '../dlq/dlqReader.js';
import { Replayer, type ReplayOutcome } from '../dlq/replay.js';
import { planReplay } from '../dlq/replayOrder.js';
import { replayTables, selectTables, takeReplayLock, targetInstalled } from '../dlq/replayTables.js';
import { resolveLetter } from '../dlq/resolutions.js';
import { cliAction, config, log } from './context.js';
import { RecordDecoder } from '../contracts/recordDecoder.js';
import { SchemaRegistry } from '../contracts/registry.js';
import { clientIds, compositeKey } from '../names.js';

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

function matches(l: StoredLetter, filters: Filters): boolean {
  return (!filters.rule || l.rule === filters.rule) && (!filters.key || keyMatches(l, filters.key));
}

/**
 * Every letter in the DLQs of the tables `--table` selects, each marked with its resolution. Read-only:
 * a missing DLQ topic or an uninstalled target means no letters, and nothing is created.
 */
async function readLetters(cfg: TunnelConfig, target: pg.Client, table?: string): Promise<StoredLetter[]> {
  const topics = await existingTopics(cfg, selectTables(cfg, table).map((t) => t.dlqTopic));
  if (topics.length === 0) return [];
  // Avro and JSON Schema letters are read through the registry, so they show (and replay) as JSON envelopes
  const letters = await readDeadLetters(cfg, topics, new RecordDecoder(cfg.registry ? new SchemaRegistry(cfg.registry) : undefined));
  if (letters.length > 0 && (await targetInstalled(target))) await markResolved(target, letters);
  return letters;
}

/** Unresolved dead letters (or all), filtered, oldest first; a letter written twice after a crash counts once. */
export async function loadLetters(cfg: TunnelConfig, filters: Filters, includeResolved = false): Promise<StoredLetter[]> {
  const letters = await withClient(cfg.targetUrl, 'target', (target) => readLetters(cfg, target, filters.table));
  const seen = new Set<string>();
  return letters.filter((l) => {
    const id = compositeKey(l.original.topic, l.original.partition, l.original.offset, l.attempt);
    const first = !seen.has(id);
    seen.add(id);
    return first && (includeResolved || !l.resolved) && matches(l, filters);
  });
}

export function formatLetter(l: StoredLetter): string {
  const where = l.original.partition >= 0 ? `${l.original.topic}[${l.original.partition}]@${l.original.offset}` : `${l.original.topic} change ${l.original.offset}`;
  return `${l.time.slice(0, 19).replace('T', ' ')}  ${l.errorClass.padEnd(11)} ${(l.rule ?? '-').padEnd(20)} key ${l.key ?? '-'}  attempt ${l.attempt}  from ${where}${l.resolved ? `  [${l.resolved}]` : ''}\n    ${l.message}`;
}

function printOutcomes(outcomes: ReplayOutcome[], dryRun: boolean): void {
  for (const o of outcomes) process.stdout.write(`${o.result.padEnd(15)} key ${o.letter.key ?? '-'} (${o.letter.errorClass}${o.letter.rule ? ` ${o.letter.rule}` : ''})${o.reason ? ` — ${o.reason}` : ''}\n`);
  const count = (r: ReplayOutcome['result']) => outcomes.filter((o) => o.result === r).length;
  const applied = count(dryRun ? 'would apply' : 'applied');
  const superseded = count(dryRun ? 'would supersede' : 'superseded');
  const verb = dryRun ? 'would be applied' : 'applied';
  process.stdout.write(`${dryRun ? 'dry run, nothing changed: ' : ''}${applied} of ${outcomes.length} ${verb}${superseded > 0 ? `, ${superseded} superseded by a newer change in the target` : ''}\n`);
}

/** `dlq replay`: with --dry-run only reads (no lock, no install, no producer); otherwise one replay per target at a time. */
async function replay(cfg: TunnelConfig, options: Filters & { dryRun?: boolean }): Promise<number> {
  const dryRun = options.dryRun === true;
  return withClient(cfg.targetUrl, 'target', async (target) => {
    if (!dryRun) {
      await takeReplayLock(target);
      await installTarget(target);
      // as the consumer writes: a replayed child may precede its parent
      await applySession(target, log);
    }
    const unresolved = (await readLetters(cfg, target, options.table)).filter((l) => !l.resolved);
    const plan = planReplay(unresolved, (l) => matches(l, options));
    if (!plan.queues.some((q) => q.some((e) => e.selected))) {
      process.stdout.write('no dead letters to replay\n');
      return exitCodes.ok;
    }
    const tables = await replayTables(cfg, selectTables(cfg, options.table));
    const producer = dryRun ? undefined : new EnvelopeProducer(cfg, clientIds.replay);
    try {
      const outcomes = await new Replayer(target, tables, producer && new DeadLetterWriter(producer)).replay(plan);
      printOutcomes(outcomes, dryRun);
    } finally {
      await producer?.close();
    }
    return exitCodes.ok;
  });
}

/** `dlq discard`: resolves the selected letters without applying them; their keys are released as replay would. */
async function discard(cfg: TunnelConfig, options: Filters & { all?: boolean }): Promise<number> {
  if (!options.all && !options.table && !options.rule && !options.key) {
    throw new TunnelError('PGT_DISCARD_WHAT', 'dlq discard needs to know which letters to discard', {
      errorClass: 'config',
      hint: 'name them with --table, --rule or --key, or pass --all for every unresolved letter',
    });
  }
  return withClient(cfg.targetUrl, 'target', async (target) => {
    await takeReplayLock(target);
    await installTarget(target);
    const letters = (await readLetters(cfg, target, options.table)).filter((l) => !l.resolved && matches(l, options));
    for (const l of letters) {
      await inTransaction(target, () => resolveLetter(target, l, 'discarded'));
      process.stdout.write(`discarded       key ${l.key ?? '-'} (${l.errorClass}${l.rule ? ` ${l.rule}` : ''}) from ${l.original.topic}[${l.original.partition}]@${l.original.offset}\n`);
    }
    process.stdout.write(`${letters.length} dead letter(s) discarded; \`pgtunnel dlq list --all\` shows them\n`);
    return exitCodes.ok;
  });
}

export function registerDlq(program: Command): void {
  const dlq = program
    .command('dlq')
    .description('dead letters: what was refused and why, replaying them, discarding them')
    .addHelpText('after', '\nExamples:\n  pgtunnel dlq list\n  pgtunnel dlq replay --dry-run\n  pgtunnel dlq discard --key 7');
  dlq
    .command('list')
    .description('list dead letters, newest first (unresolved ones unless --all)')
    .option('--json', 'print JSON')
    .option('--table <table>', 'only this table')
    .option('--rule <rule>', 'only letters of this rule')
    .option('--key <key>', 'only this key (a value, or the key JSON)')
    .option('--all', 'include resolved letters, marked [applied], [superseded], [discarded], [requeued] or [duplicate]')
    .addHelpText('after', '\nExamples:\n  pgtunnel dlq list\n  pgtunnel dlq list --rule salary-above-10000 --json')
    .action(
      cliAction(async (options: Filters & { json?: boolean; all?: boolean }, globals) => {
        const letters = (await loadLetters(await withTables(config(globals)), options, options.all)).reverse();
        if (options.json) process.stdout.write(`${JSON.stringify(letters, null, 2)}\n`);
        else if (letters.length === 0) process.stdout.write('no dead letters\n');
        else process.stdout.write(`${letters.map(formatLetter).join('\n')}\n${letters.length} dead letter(s)\n`);
        return exitCodes.ok;
      }),
    );
  dlq
    .command('replay')
    .description('re-validate with the current rules and re-apply, each key\'s letters in their original order; what fails stays with its new reason')
    .option('--table <table>', 'only letters in this table\'s DLQ, applied only to this table (headers cannot name another)')
    .option('--rule <rule>', 'only letters of this rule (a key\'s earlier letters of other rules still go first)')
    .option('--key <key>', 'only this key (a value, or the key JSON)')
    .option('--dry-run', 'say what would happen; writes nothing anywhere (no install, no topics, no target or Kafka writes)')
    .addHelpText(
      'after',
      `
A letter older than the change the target already holds for its key is not applied: it is resolved as
"superseded". A letter that fails again goes back to the DLQ with attempt + 1 and keeps its original place.
Only one replay or discard runs per target at a time; a second one exits with a message.

Examples:
  pgtunnel dlq replay --dry-run
  pgtunnel dlq replay --rule salary-above-10000
  pgtunnel dlq replay --table public.employees --key 7`,
    )
    .action(cliAction(async (options: Filters & { dryRun?: boolean }, globals) => replay(await withTables(config(globals)), options)));
  dlq
    .command('discard')
    .description('mark dead letters resolved without applying them (kept in Kafka, shown by dlq list --all)')
    .option('--table <table>', 'only this table')
    .option('--rule <rule>', 'only letters of this rule')
    .option('--key <key>', 'only this key (a value, or the key JSON)')
    .option('--all', 'every unresolved letter (of --table, if given)')
    .addHelpText('after', '\nA key whose letters are all resolved is released: with orderPolicy park its next change applies again.\n\nExamples:\n  pgtunnel dlq discard --key 7\n  pgtunnel dlq discard --rule born-after-2007\n  pgtunnel dlq discard --all')
    .action(cliAction(async (options: Filters & { all?: boolean }, globals) => discard(await withTables(config(globals)), options)));
}
