import type { TableConfig, TunnelConfig } from '../config/load.js';
import { describeError } from '../errors.js';
import { qualified, withClient, type Client } from '../pg.js';
import { tableId } from '../names.js';
import type { Logger } from '../instruments/log.js';
import { subscribe, telemetry, type ChangeTableSize } from '../instruments/telemetry.js';

/**
 * One change table's backlog: its rows are the changes not yet published (publishing deletes them in
 * the checkpoint's transaction), the oldest found by the primary key rather than a scan of captured_at.
 */
export async function changeTableSize(client: Client, t: TableConfig): Promise<ChangeTableSize> {
  const changeTable = qualified(t.schema, t.changeTable);
  const { rows } = await client.query<{ n: number; bytes: string; oldest: number | null }>(
    `SELECT count(*)::int AS n, pg_total_relation_size($1::regclass)::text AS bytes,
       (SELECT extract(epoch FROM clock_timestamp() - captured_at)::float8 FROM ${changeTable} ORDER BY change_id LIMIT 1) AS oldest
     FROM ${changeTable}`,
    [changeTable],
  );
  const size = { table: tableId(t), rows: rows[0]!.n, bytes: Number(rows[0]!.bytes), oldestSeconds: rows[0]!.oldest === null ? null : Math.max(0, rows[0]!.oldest) };
  telemetry.changeTable(size);
  return size;
}

/** Warns once when a change table crosses a threshold and says when it is back below: not once per poll. */
export class ChangeTableGuard {
  private readonly over = new Set<string>();
  private readonly unsubscribe: () => void;

  constructor(private readonly config: Pick<TunnelConfig, 'changeTableWarnRows' | 'changeTableWarnSeconds'>, private readonly log: Logger) {
    this.unsubscribe = subscribe('pgtunnel:change-table', (size) => this.observe(size));
  }

  observe({ table, rows, bytes, oldestSeconds }: ChangeTableSize): void {
    const age = Math.round(oldestSeconds ?? 0);
    const { changeTableWarnRows: maxRows, changeTableWarnSeconds: maxSeconds } = this.config;
    const back = (what: string) => () => this.log.info({ table, rows, oldestSeconds: age }, `the change table of ${table} is back below changeTableWarn${what}`);
    this.cross(`${table} rows`, rows > maxRows, back('Rows'), () => this.log.warn({ table, rows, bytes, threshold: maxRows },
      `the change table of ${table} holds ${rows} unpublished changes (${bytes} bytes), above changeTableWarnRows ${maxRows}: is its producer running and leading? (pgtunnel status)`));
    this.cross(`${table} age`, age > maxSeconds, back('Seconds'), () => this.log.warn({ table, oldestSeconds: age, threshold: maxSeconds },
      `the oldest unpublished change of ${table} has waited ${age} s, above changeTableWarnSeconds ${maxSeconds}: is its producer running and leading? (pgtunnel status)`));
  }

  private cross(key: string, above: boolean, back: () => void, warn: () => void): void {
    if (above && !this.over.has(key)) {
      this.over.add(key);
      warn();
    } else if (!above && this.over.delete(key)) back();
  }

  close(): void {
    this.unsubscribe();
  }
}

/**
 * Measures every change table on a slow timer, so the guard and the metrics see a backlog even when
 * nobody watches the dashboard (the status poller measures too, every poll, while watched).
 */
export class ChangeTableWatch {
  private timer: NodeJS.Timeout | undefined;
  private readonly guard: ChangeTableGuard;

  constructor(private readonly config: TunnelConfig, private readonly log: Logger, private readonly everyMs = 30_000) {
    this.guard = new ChangeTableGuard(config, log);
  }

  start(): void {
    this.timer = setInterval(() => void this.measure(), this.everyMs);
    this.timer.unref();
  }

  private async measure(): Promise<void> {
    try {
      await withClient(this.config.sourceUrl, 'source', async (client) => {
        for (const t of this.config.tables) await changeTableSize(client, t);
      });
    } catch (err) {
      // the producer reports the source's problems; the watch only skips this round
      this.log.debug({ err: describeError(err) }, 'change tables not measured');
    }
  }

  stop(): void {
    clearInterval(this.timer);
    this.guard.close();
  }
}
