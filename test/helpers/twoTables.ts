import type { TestContext } from 'node:test';
import { onCleanup, query, waitFor } from './services.js';

/** The slots of the test's database and the walsenders streaming them (other tests share the cluster). */
export const replication = async (url: string) => (await query<{ slots: string[]; walsenders: number }>(url,
  `SELECT coalesce((SELECT array_agg(slot_name::text ORDER BY slot_name) FROM pg_replication_slots WHERE database = current_database() AND NOT temporary), '{}'::text[]) AS slots,
          (SELECT count(*)::int FROM pg_stat_replication r JOIN pg_replication_slots s ON s.active_pid = r.pid WHERE s.database = current_database()) AS walsenders`))[0]!;

/**
 * A writer on two tables (`id int PRIMARY KEY, v int`, rows 1..300) until stopped: each transaction inserts a row
 * of `moving` and updates one, and updates one of `staying`, so transactions touch both.
 */
export class TwoTableWriter {
  private writing = true;
  private done: Promise<void>;
  count = 0;

  constructor(t: TestContext, url: string, moving: string, staying: string) {
    this.done = (async () => {
      while (this.writing) {
        const n = ++this.count;
        await query(url, `BEGIN; INSERT INTO ${moving} VALUES (1000 + ${n}, ${n}); UPDATE ${moving} SET v = v + 1 WHERE id = 1 + ${n} % 300;
          UPDATE ${staying} SET v = v + 1 WHERE id = 1 + ${n} % 50; COMMIT`);
      }
    })();
    onCleanup(t, () => this.stop().catch(() => {}));
  }

  /** Waits (with a deadline) for `more` transactions committed after this call. */
  async writes(more: number): Promise<void> {
    const from = this.count;
    await waitFor(`${more} more writes`, async () => this.count > from + more, 60_000, 20);
  }

  async stop(): Promise<void> {
    this.writing = false;
    await this.done;
  }
}
