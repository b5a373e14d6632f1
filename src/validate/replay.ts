import type pg from 'pg';
import type { TableApply } from '../apply/targetWriter.js';
import { isRefusedChange } from '../errors.js';
import { inTransaction } from '../pg.js';
import { decodeEnvelope, PoisonError, rowValues } from '../transport/envelope.js';
import type { DeadLetter, DeadLetterWriter } from './deadLetters.js';
import type { StoredLetter } from './dlqReader.js';
import { firstFailure } from './rules.js';

export interface ReplayOutcome {
  letter: StoredLetter;
  result: 'applied' | 'failed' | 'kept' | 'would apply' | 'would fail';
  reason?: string;
}

/**
 * Re-validates unresolved dead letters with the current rules and re-applies them key by key, in the
 * order they were dead-lettered. A key's first letter that fails again stops that key (its later
 * letters stay parked behind it) and goes back to the DLQ with its new reason and attempt + 1.
 */
export class Replayer {
  constructor(
    private readonly target: pg.Client,
    private readonly tables: Map<string, TableApply>,
    private readonly deadLetters: DeadLetterWriter,
  ) {}

  async replay(letters: StoredLetter[], dryRun: boolean): Promise<ReplayOutcome[]> {
    const byKey = new Map<string, StoredLetter[]>();
    for (const l of letters) {
      const k = `${l.original.topic}\u0000${l.key ?? `${l.dlqTopic}:${l.partition}:${l.offset}`}`;
      byKey.set(k, [...(byKey.get(k) ?? []), l]);
    }
    const out: ReplayOutcome[] = [];
    for (const group of byKey.values()) {
      group.sort((a, b) => a.partition - b.partition || Number(BigInt(a.offset) - BigInt(b.offset)));
      let blocked = false;
      for (const letter of group) {
        if (blocked) {
          out.push({ letter, result: 'kept', reason: 'an earlier dead letter of this key is still unresolved' });
          continue;
        }
        const outcome = await this.replayOne(letter, dryRun);
        out.push(outcome);
        blocked = outcome.result !== 'applied' && outcome.result !== 'would apply';
      }
    }
    return out;
  }

  private async replayOne(letter: StoredLetter, dryRun: boolean): Promise<ReplayOutcome> {
    const table = this.tables.get(letter.original.topic);
    if (!table) return { letter, result: 'kept', reason: `no configured table publishes to ${letter.original.topic}` };
    if (letter.errorClass === 'poison' || letter.errorClass === 'bad-action' || letter.value === undefined) {
      return { letter, result: 'kept', reason: `a ${letter.errorClass} dead letter is not a change pgtunnel can apply; inspect it with dlq list` };
    }
    let envelope;
    try {
      envelope = decodeEnvelope(letter.key, letter.value, table.statements.key);
    } catch (err) {
      if (err instanceof PoisonError) return { letter, result: 'kept', reason: err.message };
      throw err;
    }
    const failure = envelope.op === 'd' || envelope.op === 't' ? undefined : firstFailure(table.rules, rowValues(envelope.after!));
    if (dryRun) return failure ? { letter, result: 'would fail', reason: `rule ${failure.rule}: ${failure.message}` } : { letter, result: 'would apply' };
    if (failure) return this.again(letter, { errorClass: 'rule', rule: failure.rule, message: `rule ${failure.rule}: ${failure.message}` });
    try {
      await inTransaction(this.target, async () => {
        if (envelope.op === 'd') await table.statements.delete(this.target, [envelope.before!]);
        else await table.statements.upsert(this.target, [envelope.after!]);
        await this.resolve(letter, 'applied');
      });
      return { letter, result: 'applied' };
    } catch (err) {
      if (!isRefusedChange(err)) throw err;
      return this.again(letter, { errorClass: 'target', code: err.code, message: `the target refused the change: ${err.message}` });
    }
  }

  /** Still failing: a new dead letter with the new reason replaces the old one, so nothing is lost. */
  private async again(letter: StoredLetter, reason: DeadLetter): Promise<ReplayOutcome> {
    await this.deadLetters.send([
      {
        record: { topic: letter.original.topic, partition: letter.partition, offset: BigInt(letter.offset), key: letter.key, value: letter.value },
        letter: { ...reason, attempt: letter.attempt + 1 },
        original: letter.original,
      },
    ]);
    // The new letter takes the old one's place in the key's count, so the key stays parked.
    await this.target.query(`INSERT INTO pgtunnel.dlq_resolved (topic, partition, "offset", outcome) VALUES ($1, $2, $3, 'superseded') ON CONFLICT DO NOTHING`, [
      letter.dlqTopic,
      letter.partition,
      letter.offset,
    ]);
    return { letter, result: 'failed', reason: reason.message };
  }

  /** Marks a letter applied and releases its key once no unresolved letter parks it. */
  private async resolve(letter: StoredLetter, outcome: string): Promise<void> {
    const inserted = await this.target.query(
      `INSERT INTO pgtunnel.dlq_resolved (topic, partition, "offset", outcome) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING`,
      [letter.dlqTopic, letter.partition, letter.offset, outcome],
    );
    if (inserted.rowCount === 0 || letter.key === undefined) return;
    await this.target.query(
      `UPDATE pgtunnel.parked_keys SET dead_letters = dead_letters - 1 WHERE topic = $1 AND key = $2`,
      [letter.original.topic, letter.key],
    );
    await this.target.query(`DELETE FROM pgtunnel.parked_keys WHERE topic = $1 AND key = $2 AND dead_letters <= 0`, [letter.original.topic, letter.key]);
  }
}
