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
}

const shutdownGraceMs = 3500;

/**
 * Runs one side until the signal aborts or one of its parts fails; a fatal error in one part stops the
 * others (the side never half-runs). Each side has its own Kafka producer: on two threads nothing is shared.
 */
export async function runSide(side: Side, ctx: SideContext, signal: AbortSignal): Promise<void> {
  const inner = new AbortController();
  const stop = () => inner.abort();
  signal.addEventListener('abort', stop, { once: true });
  if (signal.aborted) inner.abort();
  const producer = new EnvelopeProducer(ctx.config, clientIds.producer);
  const registry = ctx.config.registry ? new SchemaRegistry(ctx.config.registry, ctx.log) : undefined;
  const tasks: Promise<void>[] = [];
  if (side === 'producer') {
    for (const t of ctx.tables) {
      const id = tableId(t.config);
      const Producer = t.capture?.mode === 'logical' ? LogicalProducer : CaptureProducer;
      const capture = new Producer(ctx.config, t.config, t.source, producer, ctx.log, ctx.health, (phase) => ctx.onPhase(id, phase), registry);
      tasks.push(capture.run(inner.signal));
    }
  } else {
    const tables = new Map(ctx.tables.map((t) => [t.config.topic, tableApply(t, ctx.config, ctx.log)]));
    const consumer = ctx.config.apply === 'transactional'
      ? new TransactionalConsumer(ctx.config, tables, producer, ctx.log, ctx.health)
      : new ApplyConsumer(ctx.config, tables, producer, ctx.log, ctx.health, undefined, registry);
    tasks.push(consumer.run(inner.signal));
  }
  try {
    await Promise.all(tasks.map((task) => task.catch((err) => { inner.abort(); throw err; })));
  } finally {
    signal.removeEventListener('abort', stop);
    inner.abort();
    // Work in flight finishes or is abandoned: everything resumes from the checkpoints, so a hung
    // broker call must not keep a stopping side alive past its deadline.
    const settled = await Promise.race([Promise.allSettled(tasks).then(() => true), sleep(shutdownGraceMs).then(() => false)]);
    if (!settled) ctx.log.warn({ side, graceMs: shutdownGraceMs }, 'in-flight work abandoned at shutdown; it resumes from the checkpoint');
    await Promise.race([producer.close(), sleep(500)]);
  }
}

/** How long a stopping side may take before its thread is ended: its own grace and its producer's close, plus a margin. */
export const sideStopMs = shutdownGraceMs + 1500;
