import type { TunnelConfig } from '../config/load.js';
import type { Logger } from '../instruments/log.js';
import { tableId } from '../names.js';
import { Health } from '../instruments/health.js';
import { ObserveServer } from '../report/server.js';
import { ChangeTableWatch } from '../report/changeTables.js';
import type { Phase } from '../capture/stateStore.js';
import { telemetry } from '../instruments/telemetry.js';
import type { Side, SideContext, SideTable } from './sides.js';
import { LocalSide, SideThread, type RunningSide } from './sideThread.js';
import { producerPart } from './producerParts.js';
import { describeThreads } from './threadChoice.js';

export interface RunParts {
  produce?: boolean;
  apply?: boolean;
  /**
   * Each side in its own worker thread (`pgtunnel run`: threads spawned by `spawnSides` before prepare, so their
   * modules load meanwhile); off, both run on the calling thread (the in-process test harness).
   */
  threads?: boolean | SideThread[];
  /** Why the sides run where they do (`threadChoice.ts`), shown by `pgtunnel status`. */
  threadsReason?: string;
}

/**
 * The running tunnel: the producer side (a capture producer per table) and the consumer side (the apply
 * consumer), until the signal aborts. This thread keeps the health file, the HTTP server and the metrics
 * of both sides (docs/architecture.md "Threads").
 */
function sidesOf(parts: RunParts): Side[] {
  return [...(parts.produce !== false ? ['producer' as const] : []), ...(parts.apply !== false ? ['consumer' as const] : [])];
}

/** The threads of the sides `parts` runs, spawned now and started by `Tunnel.run`; stop them if it never runs. */
export function spawnSides(parts: RunParts, log: Logger): SideThread[] {
  return sidesOf(parts).map((side) => new SideThread(side, log.level));
}

export class Tunnel {
  private readonly phases = new Map<string, Phase>();
  private sides: RunningSide[] = [];
  private health: Health | undefined;

  constructor(
    private readonly config: TunnelConfig,
    private tables: SideTable[],
    private readonly log: Logger,
    private readonly onPhase: (phase: Phase) => void = () => {},
  ) {}

  /** `streaming` once every table finished its snapshot. */
  get phase(): Phase {
    return [...this.phases.values()].every((p) => p === 'streaming') && this.phases.size === this.tables.length ? 'streaming' : 'snapshot';
  }

  private tablePhase(id: string, phase: Phase): void {
    const before = this.phase;
    this.phases.set(id, phase);
    telemetry.phase(id, phase);
    if (this.phase !== before || this.phases.size === this.tables.length) this.announce();
  }

  /** This process applies too: `streaming` is said once its consumer joined its group (or stopped trying). */
  private applies = false;
  /** `streaming` held back until then. */
  private held = false;

  /**
   * The phase to `onPhase`. `streaming` waits while this process's consumer is still starting: a change
   * made right after it (what waits for the word: a user, a bench's first row) must not wait out the
   * group join (issue 21: ~0.5 s of the first change's latency after start).
   */
  private announce(): void {
    const consumer = this.health?.parts.consumer?.state;
    this.held = this.phase === 'streaming' && this.applies && (consumer === undefined || consumer === 'starting');
    if (!this.held) this.onPhase(this.phase);
  }

  /**
   * Tables added or removed while running (setup/tableReload.ts prepared the added ones): each side starts
   * and stops its parts; status, the dashboard and the change-table watch follow the new list.
   */
  reload(tables: SideTable[]): void {
    const ids = new Set(tables.map((t) => tableId(t.config)));
    for (const id of this.phases.keys()) if (!ids.has(id)) this.phases.delete(id);
    this.tables = tables;
    this.config.tables = tables.map((t) => t.config);
    for (const side of this.sides) side.reload(tables);
  }

  /** A table the reload took out: its producer's part says what became of its capture (status, /ready). */
  removed(id: string, what: string): void {
    this.health?.set(producerPart(id), 'removed', what);
  }

  async run(signal: AbortSignal, parts: RunParts = {}): Promise<void> {
    const role = parts.produce === false ? 'consumer' : parts.apply === false ? 'producer' : 'all';
    const chosen = sidesOf(parts);
    const onThreads = Boolean(parts.threads);
    const where = describeThreads({ threads: onThreads, reason: parts.threadsReason ?? `threads: ${onThreads}` }, chosen.length);
    const health = (this.health = new Health(this.config.home, role, where));
    this.applies = chosen.includes('consumer');
    health.watch((part, state) => {
      if (part === 'consumer' && state !== 'starting' && this.held) this.announce();
    });
    const observe = new ObserveServer(this.config, health, this.log, () => Promise.all(this.sides.map((s) => s.metrics())));
    if (this.config.httpPort !== 'off') await observe.start(this.config.httpHost, this.config.httpPort);
    // a change table growing while no producer publishes it is warned about in the log, watched or not
    const watch = new ChangeTableWatch(this.config, this.log);
    watch.start();
    const ctx: SideContext = { config: this.config, tables: this.tables, log: this.log, health, onPhase: (id, phase) => this.tablePhase(id, phase) };
    const threads = Array.isArray(parts.threads) ? parts.threads : parts.threads ? spawnSides(parts, this.log) : undefined;
    const sides = (this.sides = threads ? threads.map((t) => t.start(ctx)) : chosen.map((side) => new LocalSide(side, ctx)));
    const stopAll = () => sides.forEach((s) => s.stop());
    signal.addEventListener('abort', stopAll, { once: true });
    if (signal.aborted) stopAll();
    try {
      // A fatal error in one side stops the other: the tunnel never half-runs.
      await Promise.all(sides.map((s) => s.done.catch((err) => { stopAll(); throw err; })));
    } finally {
      signal.removeEventListener('abort', stopAll);
      stopAll();
      await Promise.allSettled(sides.map((s) => s.done));
      watch.stop();
      await observe.stop();
      health.close();
    }
  }
}
