import type pg from 'pg';
import { isRefusedChange, sqlState } from '../errors.js';
import { inTransaction } from '../pg.js';
import { decodeEnvelope, PoisonError, rowValues, type Envelope } from '../contracts/envelope.js';
import type { DeadLetter, DeadLetterWriter } from '../validate/deadLetters.js';
import type { StoredLetter } from './dlqReader.js';
import { isSuperseded, lockAppliedPosition, noteReplayApplied } from '../validate/letteredKeys.js';
import type { ReplayPlan } from './replayOrder.js';
import type { ReplayTable } from './replayTables.js';
import { resolveLetter, retireCopy } from './resolutions.js';
import { firstFailure } from '../validate/rules.js';
import { topicOfDlq } from '../names.js';

export interface ReplayOutcome {
  letter: StoredLetter;
  result: 'applied' | 'superseded' | 'failed' | 'kept' | 'would apply' | 'would supersede' | 'would fail';
  reason?: string;
}

const done = new Set<ReplayOutcome['result']>(['applied', 'superseded', 'would apply', 'would supersede']);
const deadlockRetries = 5;

function where(l: StoredLetter): string {
  return `${l.original.topic}[${l.original.partition}]@${l.original.offset}`;
}

/**
 * Re-validates unresolved dead letters with the current rules and re-applies them, each key's letters in
 * the order their changes were published. A letter older than what the target already holds for its key is
 * resolved as superseded, never written. A key's first letter that is not resolved stops the key (its later
 * letters wait behind it); one that fails again goes back to the DLQ with its new reason and attempt + 1,
 * keeping its original position. `writer` undefined means a dry run: nothing is written anywhere.
 */
export class Replayer {
  private guardChecked?: boolean;

  constructor(
    private readonly target: pg.Client,
    private readonly tables: Map<string, ReplayTable>,
    private readonly writer: DeadLetterWriter | undefined,
  ) {}

  private get dryRun(): boolean {
    return this.writer === undefined;
  }

  async replay(plan: ReplayPlan): Promise<ReplayOutcome[]> {
    if (!this.dryRun) for (const copy of plan.copies) await retireCopy(this.target, copy, 'duplicate');
    const out: ReplayOutcome[] = [];
    for (const queue of plan.queues) {
      let blockedBy: StoredLetter | undefined;
      for (const { letter, selected } of queue) {
        if (!selected) {
          blockedBy ??= letter;
          continue;
        }
        if (blockedBy) {
          out.push({ letter, result: 'kept', reason: `waits behind the key's earlier dead letter from ${where(blockedBy)}` });
          continue;
        }
        const outcome = await this.replayOne(letter);
        out.push(outcome);
        if (!done.has(outcome.result)) blockedBy = letter;
      }
    }
    return out;
  }

  /** Why a letter cannot be replayed at all, or its envelope. */
  private decode(letter: StoredLetter, table: ReplayTable | undefined): { envelope: Envelope } | { kept: string } {
    if (!table) return { kept: `${letter.dlqTopic} is not the DLQ of a selected table` };
    if (letter.original.topic !== table.topic) {
      return { kept: `its headers name ${letter.original.topic}, but it sits in the DLQ of ${table.table}; a header never picks the table (inspect it, or dlq discard it)` };
    }
    if (letter.errorClass === 'poison' || letter.errorClass === 'bad-action' || letter.value === undefined || letter.key === undefined) {
      return { kept: `a ${letter.errorClass} dead letter is not a change pgtunnel can apply; inspect it with dlq list, or dlq discard it` };
    }
    try {
      const envelope = decodeEnvelope(letter.key, letter.value, table.statements.key);
      if (envelope.op === 't') return { kept: 'a truncate is not replayed; inspect it, or dlq discard it' };
      return { envelope };
    } catch (err) {
      if (err instanceof PoisonError) return { kept: err.message };
      throw err;
    }
  }

  private async replayOne(letter: StoredLetter): Promise<ReplayOutcome> {
    const table = this.tables.get(letter.dlqTopic);
    const decoded = this.decode(letter, table);
    if ('kept' in decoded) return { letter, result: 'kept', reason: decoded.kept };
    const { envelope } = decoded;
    const key = letter.key!;
    const failure = envelope.op === 'd' ? undefined : firstFailure(table!.rules, rowValues(envelope.after!));
    const ruleReason: DeadLetter | undefined = failure && { errorClass: 'rule', rule: failure.rule, message: `rule ${failure.rule}: ${failure.message}` };
    if (this.dryRun) {
      const applied = (await this.hasGuard()) ? await lockAppliedPosition(this.target, table!.topic, key, false) : undefined;
      if (isSuperseded(applied, letter.original)) return { letter, result: 'would supersede', reason: `the target holds a newer change of this key (offset ${applied!.appliedOffset})` };
      return ruleReason ? { letter, result: 'would fail', reason: ruleReason.message } : { letter, result: 'would apply' };
    }
    for (let attempt = 1; ; attempt++) {
      try {
        // The key's guard row is locked first, so a consumer applying the same key waits for this or wins.
        const result = await inTransaction(this.target, async (): Promise<ReplayOutcome | DeadLetter> => {
          const applied = await lockAppliedPosition(this.target, table!.topic, key);
          if (isSuperseded(applied, letter.original)) {
            await resolveLetter(this.target, letter, 'superseded');
            return { letter, result: 'superseded', reason: `the target holds a newer change of this key (offset ${applied!.appliedOffset})` };
          }
          if (ruleReason) return ruleReason;
          if (envelope.op === 'd') await table!.statements.delete(this.target, [envelope.before!]);
          else await table!.statements.upsert(this.target, [envelope.after!]);
          await noteReplayApplied(this.target, table!.topic, key, letter.original);
          await resolveLetter(this.target, letter, 'applied');
          return { letter, result: 'applied' };
        });
        return 'letter' in result ? result : await this.again(letter, result);
      } catch (err) {
        if (isRefusedChange(err)) return this.again(letter, { errorClass: 'target', code: err.code, message: `the target refused the change: ${err.message}` });
        // A deadlock with the consumer over the same key: whichever loses tries again and sees the winner.
        if (sqlState(err) === '40P01' && attempt < deadlockRetries) continue;
        throw err;
      }
    }
  }

  /** A target migrated before the guard existed has no lettered_keys table until the tunnel runs again. */
  private async hasGuard(): Promise<boolean> {
    if (this.guardChecked === undefined) {
      const { rows } = await this.target.query<{ ok: boolean }>("SELECT to_regclass('pgtunnel.lettered_keys') IS NOT NULL AS ok");
      this.guardChecked = rows[0]?.ok === true;
    }
    return this.guardChecked;
  }

  /** Still failing: a new attempt with the new reason and the ORIGINAL position replaces the old letter. */
  private async again(letter: StoredLetter, reason: DeadLetter): Promise<ReplayOutcome> {
    await this.writer!.send([
      {
        record: { topic: topicOfDlq(letter.dlqTopic), partition: letter.original.partition, offset: BigInt(letter.original.offset), key: letter.key, value: letter.value },
        letter: { ...reason, attempt: letter.attempt + 1 },
        original: letter.original,
      },
    ]);
    // The new attempt carries the old one's place in the key's counts, so the key stays parked.
    await retireCopy(this.target, letter, 'requeued');
    return { letter, result: 'failed', reason: reason.message };
  }
}
