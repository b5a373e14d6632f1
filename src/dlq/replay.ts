import type pg from 'pg';
import { classify, isRefusedChange } from '../errors.js';
import { inTransaction } from '../pg.js';
import { Backoff, sleep } from '../retry.js';
import { ChangeWriter } from '../apply/changeWriter.js';
import type { DecodedRecord } from '../apply/reduce.js';
import { decodeRecord, ruleLetter } from '../apply/route.js';
import { SetOutcome } from '../apply/setOutcome.js';
import type { DeadLetter, DeadLetterWriter, RawRecord } from '../validate/deadLetters.js';
import type { StoredLetter } from './dlqReader.js';
import { isSuperseded, lockAppliedPosition, noteReplayApplied } from '../validate/letteredKeys.js';
import type { ReplayPlan } from './replayOrder.js';
import type { ReplayTable } from './replayTables.js';
import { resolveLetter, retireCopy } from './resolutions.js';
import { topicOfDlq } from '../names.js';

export interface ReplayOutcome {
  letter: StoredLetter;
  result: 'applied' | 'superseded' | 'failed' | 'kept' | 'would apply' | 'would supersede' | 'would fail';
  reason?: string;
}

const done = new Set<ReplayOutcome['result']>(['applied', 'superseded', 'would apply', 'would supersede']);
/** Attempts of a letter that meets a retryable error (a deadlock with the consumer over its key, say). */
const attempts = 5;

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
  private readonly changes: ChangeWriter;

  constructor(
    private readonly target: pg.Client,
    private readonly tables: Map<string, ReplayTable>,
    private readonly writer: DeadLetterWriter | undefined,
  ) {
    // Route's missing-key decision as replay's input: an update of a key the target lacks is applied
    // (replaying a missing-key letter is how one is fixed), whatever the tunnel's onMissingKey.
    const byTopic = new Map([...tables.values()].map((t) => [t.topic, { ...t, onMissingKey: 'upsert' as const }]));
    this.changes = new ChangeWriter(target, byTopic);
  }

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

  /** Why a letter cannot be replayed at all, or its change decoded by the consumer's decoder. */
  private decode(letter: StoredLetter, table: ReplayTable | undefined): { record: DecodedRecord } | { kept: string } {
    if (!table) return { kept: `${letter.dlqTopic} is not the DLQ of a selected table` };
    if (letter.original.topic !== table.topic) {
      return { kept: `its headers name ${letter.original.topic}, but it sits in the DLQ of ${table.table}; a header never picks the table (inspect it, or dlq discard it)` };
    }
    if (letter.errorClass === 'poison' || letter.errorClass === 'bad-action' || letter.value === undefined || letter.key === undefined) {
      return { kept: `a ${letter.errorClass} dead letter is not a change pgtunnel can apply; inspect it with dlq list, or dlq discard it` };
    }
    const raw: RawRecord = { topic: table.topic, partition: letter.original.partition, offset: BigInt(letter.original.offset), key: letter.key, value: letter.value };
    const decoded = decodeRecord(raw, this.changes.routeTable(table.topic));
    if ('poison' in decoded) return { kept: decoded.poison.message };
    if (decoded.envelope.op === 't') return { kept: 'a truncate is not replayed; inspect it, or dlq discard it' };
    return { record: { topic: raw.topic, partition: raw.partition, offset: raw.offset, key: decoded.key, value: letter.value, envelope: decoded.envelope } };
  }

  private async replayOne(letter: StoredLetter): Promise<ReplayOutcome> {
    const table = this.tables.get(letter.dlqTopic);
    const decoded = this.decode(letter, table);
    if ('kept' in decoded) return { letter, result: 'kept', reason: decoded.kept };
    const { record } = decoded;
    const ruleReason = ruleLetter(record.envelope, this.changes.routeTable(record.topic).rules);
    if (this.dryRun) {
      const applied = (await this.hasGuard()) ? await lockAppliedPosition(this.target, record.topic, record.key, false) : undefined;
      if (isSuperseded(applied, letter.original)) return { letter, result: 'would supersede', reason: `the target holds a newer change of this key (offset ${applied!.appliedOffset})` };
      return ruleReason ? { letter, result: 'would fail', reason: ruleReason.message } : { letter, result: 'would apply' };
    }
    const backoff = new Backoff();
    for (let attempt = 1; ; attempt++) {
      const outcome = new SetOutcome();
      try {
        const result = await inTransaction(this.target, () => this.apply(letter, record, ruleReason, outcome));
        this.changes.ended(outcome);
        return 'letter' in result ? result : await this.again(letter, result);
      } catch (err) {
        this.changes.ended(undefined);
        if (isRefusedChange(err)) return this.again(letter, { errorClass: 'target', code: err.code, message: `the target refused the change: ${err.message}` });
        // the error policy's retry, as the consumer's: whichever loses a deadlock tries again and sees the winner
        if (classify(err).retryable && attempt < attempts) {
          await sleep(backoff.next());
          continue;
        }
        throw err;
      }
    }
  }

  /** One letter in the target transaction: through the consumer's writer unless superseded or failing a rule. */
  private async apply(letter: StoredLetter, record: DecodedRecord, ruleReason: DeadLetter | undefined, outcome: SetOutcome): Promise<ReplayOutcome | DeadLetter> {
    // The key's guard row is locked first, so a consumer applying the same key waits for this or wins.
    const applied = await lockAppliedPosition(this.target, record.topic, record.key);
    if (isSuperseded(applied, letter.original)) {
      await resolveLetter(this.target, letter, 'superseded');
      return { letter, result: 'superseded', reason: `the target holds a newer change of this key (offset ${applied!.appliedOffset})` };
    }
    if (ruleReason) return ruleReason;
    await this.changes.write([record], outcome);
    const refused = outcome.letters[0]?.letter;
    if (refused) return refused;
    await noteReplayApplied(this.target, record.topic, record.key, letter.original);
    await resolveLetter(this.target, letter, 'applied');
    return { letter, result: 'applied' };
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
