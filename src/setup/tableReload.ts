import type { TunnelConfig } from '../config/load.js';
import { classify, describeError } from '../errors.js';
import type { Logger } from '../instruments/log.js';
import { tableId } from '../names.js';
import type { Tunnel } from '../pipeline/tunnel.js';
import { prepare } from './prepare.js';
import { removeCapture } from './tableRemoval.js';

/**
 * Tables come and go while the tunnel runs: on SIGHUP and every `tableCheckIntervalMs` the configuration is
 * read again and its patterns expanded against the source catalog. An added table (or a new table matching
 * a pattern) is prepared as at the start (capture installed, topic and target table created) and its
 * producer starts with its snapshot; a removed one's producer stops, its topic is no longer applied, and its
 * capture is uninstalled from the source once the producer let go (tableRemoval.ts), so no change table grows
 * unread. Only the table list changes live; other settings apply at the next start.
 */
export class TableReload {
  private queue: Promise<void> = Promise.resolve();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly config: TunnelConfig,
    private readonly load: () => Promise<TunnelConfig>,
    private readonly tunnel: Tunnel,
    private readonly log: Logger,
    /** This process runs the producer side: a removed table's capture is its to remove. */
    private readonly producing = true,
  ) {}

  /** Checks every `intervalMs` (0: only on request). */
  start(intervalMs: number): void {
    if (intervalMs > 0) this.timer = setInterval(() => void this.check('catalog check'), intervalMs).unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /** One check at a time: a SIGHUP during a check runs after it. */
  check(why: string): Promise<void> {
    this.queue = this.queue.then(() => this.once(why)).catch((err: unknown) => {
      this.log.error({ why }, `tables not reloaded: ${describeError(err)}; the tunnel keeps running its tables`);
    });
    return this.queue;
  }

  private async once(why: string): Promise<void> {
    const next = await this.load();
    const before = new Set(this.config.tables.map(tableId));
    const after = new Set(next.tables.map(tableId));
    const added = [...after].filter((id) => !before.has(id));
    const removed = [...before].filter((id) => !after.has(id));
    if (added.length === 0 && removed.length === 0) {
      if (why === 'SIGHUP') this.log.info({ tables: [...before] }, 'configuration read again: the same tables');
      return;
    }
    // prepared as at the start; the tables that stay are checked again, which costs catalog queries only
    const prepared = await prepare({ ...this.config, tables: next.tables }, this.log);
    const gone = this.config.tables.filter((t) => removed.includes(tableId(t)));
    this.tunnel.reload(prepared);
    for (const id of added) this.log.info({ table: id, why }, `table added: ${id} (capture installed, topic created); its snapshot begins`);
    for (const table of gone) {
      const id = tableId(table);
      if (!this.producing) {
        this.log.info({ table: id, why }, `table removed: ${id} (its topic is no longer applied); its capture is removed by the producer process that runs it, once its configuration drops it too`);
        continue;
      }
      this.log.info({ table: id, why }, `table removed: ${id} (its producer stops, its topic is no longer applied); its capture is removed once the producer stopped`);
      // the reload itself is done: a removal that fails says so for its table alone
      const removal = await removeCapture(this.config, table).catch((err: unknown) => ({
        removed: false,
        what: `capture of ${id} stays installed: ${describeError(classify(err))}; run \`PGTUNNEL_TABLES=${id} pgtunnel uninstall --keep-schema\` once the source answers`,
      }));
      this.tunnel.removed(id, removal.what);
      if (removal.removed) this.log.info({ table: id }, removal.what);
      else this.log.warn({ table: id }, removal.what);
    }
  }
}
