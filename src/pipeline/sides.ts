import type { TunnelConfig } from '../config/load.js';
import { clientIds, tableId } from '../names.js';
import { tableApply, type PreparedTable } from '../apply/tableApply.js';
import { EnvelopeProducer } from '../transport/kafka.js';
import type { Logger } from '../instruments/log.js';
import type { Health } from '../instruments/health.js';
import type { Phase } from '../capture/stateStore.js';
import { SchemaRegistry } from '../contracts/registry.js';
import { sleep } from '../retry.js';
import { ApplyConsumer } from './applyConsumer.js';
import { CaptureProducer } from './captureProducer.js';
import { TransactionalConsumer } from './transactionalConsumer.js';
import { LogicalProducer } from './logicalProducer.js';
import { SourceSlot } from './sourceSlot.js';
import type { CaptureChoice } from '../capture/logicalInstall.js';

/** The producer side owns every source (capture today, logical decoding next); the consumer side every applier. */
export type Side = 'producer' | 'consumer';

/** A prepared table with its capture mode (trigger or logical): plain data besides its compiled rules. */
export type SideTable = PreparedTable & { capture?: CaptureChoice };

export interface SideContext {
  config: TunnelConfig;
  tables: SideTable[];
  log: Logger;
  health: Health;
  /** A table's capture phase, as its producer reports it. */
  onPhase: (table: string, phase: Phase) => void;
  /** Where the side hears of tables added or removed while it runs (tableReload.ts). */
  reloads?: Reloads;
}

/** The tables a running side is to run from now on: the side registers what it does with them. */
export class Reloads {
  private handler: ((tables: SideTable[]) => Promise<void>) | undefined;

  on(handler: (tables: SideTable[]) => Promise<void>): void {
    this.handler = handler;
  }

  async reload(tables: SideTable[]): Promise<void> {
    await this.handler?.(tables);
  }
}

const shutdownGraceMs = 3500;
/** The part reading the source's shared slot (not a table id: those are schema-qualified). */
const sourceSlotPart = 'source slot';

/**
 * Runs one side until the signal aborts or one of its parts fails; a fatal error in one part stops the
 * others (the side never half-runs). Each side has its own Kafka producer: on two threads nothing is shared.
 * Tables come and go while it runs (`ctx.reloads`): the producer side starts and stops one producer per
 * table; the consumer side replaces its consumer by one for the new tables (offsets live in the target).
 */
export async function runSide(side: Side, ctx: SideContext, signal: AbortSignal): Promise<void> {
  const parts = new SideParts(signal);
  const producer = new EnvelopeProducer(ctx.config, clientIds.producer);
  const registry = ctx.config.registry ? new SchemaRegistry(ctx.config.registry, ctx.log) : undefined;
  let sourceSlot: SourceSlot | undefined;
  const run = async (tables: SideTable[]) => {
    if (side === 'producer') {
      const ids = new Set(tables.map((t) => tableId(t.config)));
      for (const id of parts.keys()) if (!ids.has(id) && id !== sourceSlotPart) await parts.stop(id);
      // the tables read from the source's one slot (issue 22): one leader and one stream for all of them
      // (a table switching onto it from trigger capture too: the slot holds for it from the start)
      const shared = tables.filter((t) => t.capture?.shared).map((t) => tableId(t.config));
      if (shared.length > 0 && (!sourceSlot || sourceSlot.closed)) {
        const slot = new SourceSlot(ctx.config, decodeURIComponent(new URL(ctx.config.sourceUrl).pathname.slice(1)), shared, ctx.log, ctx.health);
        sourceSlot = slot;
        parts.start(sourceSlotPart, (s) => slot.run(s));
      } else sourceSlot?.setTables(shared);
      for (const t of tables) {
        const id = tableId(t.config);
        if (parts.has(id)) continue;
        const Producer = t.capture?.mode === 'logical' ? LogicalProducer : CaptureProducer;
        const capture = new Producer(ctx.config, t.config, t.source, producer, ctx.log, ctx.health, (phase) => ctx.onPhase(id, phase), registry);
        if (t.capture?.shared && sourceSlot) capture.useSourceSlot(sourceSlot);
        parts.start(id, async (s) => {
          await capture.run(s);
          // a switch of capture mode: the one capture published up to the boundary and handed over to the other
          if (!capture.handedOver) return;
          if (capture instanceof CaptureProducer) {
            const next = new LogicalProducer(ctx.config, t.config, t.source, producer, ctx.log, ctx.health, (phase) => ctx.onPhase(id, phase), registry);
            await (t.capture?.shared && sourceSlot ? next.useSourceSlot(sourceSlot) : next).run(s);
          } else await new CaptureProducer(ctx.config, t.config, t.source, producer, ctx.log, ctx.health, (phase) => ctx.onPhase(id, phase), registry).run(s);
        });
      }
    } else {
      await parts.stop('consumer');
      const applied = new Map(tables.map((t) => [t.config.topic, tableApply(t, ctx.config, ctx.log)]));
      const consumer = ctx.config.apply === 'transactional'
        ? new TransactionalConsumer(ctx.config, applied, producer, ctx.log, ctx.health)
        : new ApplyConsumer(ctx.config, applied, producer, ctx.log, ctx.health, undefined, registry);
      parts.start('consumer', (s) => consumer.run(s));
    }
  };
  await run(ctx.tables);
  // a table that cannot start stops the side, as at the start
  ctx.reloads?.on((tables) => run(tables).catch((err: unknown) => parts.failWith(err)));
  try {
    await parts.ended;
  } finally {
    // Work in flight finishes or is abandoned: everything resumes from the checkpoints, so a hung
    // broker call must not keep a stopping side alive past its deadline.
    const settled = await Promise.race([parts.stopAll().then(() => true), sleep(shutdownGraceMs).then(() => false)]);
    if (!settled) ctx.log.warn({ side, graceMs: shutdownGraceMs }, 'in-flight work abandoned at shutdown; it resumes from the checkpoint');
    await Promise.race([producer.close(), sleep(500)]);
  }
}

/** The running parts of a side, each with its own stop; `ended` settles when the signal aborts or a part fails. */
class SideParts {
  private readonly running = new Map<string, { controller: AbortController; task: Promise<void> }>();
  readonly ended: Promise<void>;
  private fail: (err: unknown) => void = () => {};
  private finish: () => void = () => {};

  constructor(private readonly signal: AbortSignal) {
    this.ended = new Promise((resolve, reject) => {
      this.fail = reject;
      this.finish = resolve;
      if (signal.aborted) resolve();
      signal.addEventListener('abort', () => resolve(), { once: true });
    });
    this.ended.catch(() => {});
  }

  failWith(err: unknown): void {
    this.fail(err);
  }

  keys(): string[] {
    return [...this.running.keys()];
  }

  has(key: string): boolean {
    return this.running.has(key);
  }

  start(key: string, run: (signal: AbortSignal) => Promise<void>): void {
    const controller = new AbortController();
    if (this.signal.aborted) controller.abort();
    // a fatal error in one part stops the others: the side never half-runs
    const part = { controller, task: Promise.resolve() };
    part.task = run(controller.signal).then(() => {
      // a part that ended on its own: the side ends when none is left, as before tables could come and go
      if (this.running.get(key) !== part) return;
      this.running.delete(key);
      if (this.running.size === 0) this.finish();
    }, (err: unknown) => this.fail(err));
    this.running.set(key, part);
  }

  async stop(key: string): Promise<void> {
    const part = this.running.get(key);
    if (!part) return;
    this.running.delete(key);
    part.controller.abort();
    await part.task;
  }

  async stopAll(): Promise<void> {
    await Promise.all(this.keys().map((key) => this.stop(key)));
  }
}

/** How long a stopping side may take before its thread is ended: its own grace and its producer's close, plus a margin. */
export const sideStopMs = shutdownGraceMs + 1500;
