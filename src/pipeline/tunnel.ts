import type { TunnelConfig } from '../config/load.js';
import { clientIds, tableId } from '../names.js';
import { tableApply, type PreparedTable } from '../apply/tableApply.js';
import { EnvelopeProducer } from '../transport/kafka.js';
import type { Logger } from '../instruments/log.js';
import { Health } from '../instruments/health.js';
import { ObserveServer } from '../report/server.js';
import { ChangeTableWatch } from '../report/changeTables.js';
import type { Phase } from '../capture/stateStore.js';
import { ApplyConsumer } from './applyConsumer.js';
import { CaptureProducer } from './captureProducer.js';
import { LogicalProducer } from './logicalProducer.js';
import type { CaptureChoice } from '../capture/logicalInstall.js';
import { SchemaRegistry } from '../contracts/registry.js';
import { sleep } from '../retry.js';
import { telemetry } from '../instruments/telemetry.js';

const shutdownGraceMs = 3500;

/** The running tunnel: one capture producer per table and one apply consumer, until the signal aborts. */
export class Tunnel {
  private readonly phases = new Map<string, Phase>();

  constructor(
    private readonly config: TunnelConfig,
    private readonly tables: (PreparedTable & { capture?: CaptureChoice })[],
    private readonly log: Logger,
    private readonly onPhase: (phase: Phase) => void = () => {},
  ) {}

  /** `streaming` once every table finished its snapshot. */
  get phase(): Phase {
    return [...this.phases.values()].every((p) => p === 'streaming') && this.phases.size === this.tables.length ? 'streaming' : 'snapshot';
  }

  async run(signal: AbortSignal, parts: { produce?: boolean; apply?: boolean } = {}): Promise<void> {
    const inner = new AbortController();
    const stop = () => inner.abort();
    signal.addEventListener('abort', stop, { once: true });
    const producer = new EnvelopeProducer(this.config, clientIds.producer);
    const role = parts.produce === false ? 'consumer' : parts.apply === false ? 'producer' : 'all';
    const health = new Health(this.config.home, role);
    const observe = new ObserveServer(this.config, health, this.log);
    if (this.config.httpPort !== 'off') await observe.start(this.config.httpHost, this.config.httpPort);
    // a change table growing while no producer publishes it is warned about in the log, watched or not
    const watch = new ChangeTableWatch(this.config, this.log);
    watch.start();
    const tasks: Promise<void>[] = [];
    const registry = this.config.registry ? new SchemaRegistry(this.config.registry, this.log) : undefined;
    if (parts.produce !== false) {
      for (const t of this.tables) {
        const id = tableId(t.config);
        const onPhase = (phase: Phase) => {
          const before = this.phase;
          this.phases.set(id, phase);
          telemetry.phase(id, phase);
          if (this.phase !== before || this.phases.size === this.tables.length) this.onPhase(this.phase);
        };
        const Producer = t.capture?.mode === 'logical' ? LogicalProducer : CaptureProducer;
        const capture = new Producer(this.config, t.config, t.source, producer, this.log, health, onPhase, registry);
        tasks.push(capture.run(inner.signal));
      }
    }
    if (parts.apply !== false) {
      const tables = new Map(this.tables.map((t) => [t.config.topic, tableApply(t, this.config, this.log)]));
      tasks.push(new ApplyConsumer(this.config, tables, producer, this.log, health, undefined, registry).run(inner.signal));
    }
    try {
      // A fatal error in one part stops the others: the tunnel never half-runs.
      await Promise.all(tasks.map((task) => task.catch((err) => { inner.abort(); throw err; })));
    } finally {
      signal.removeEventListener('abort', stop);
      inner.abort();
      // Work in flight finishes or is abandoned: everything resumes from the checkpoints, so a hung
      // broker call must not keep a stopping tunnel alive past its deadline.
      const settled = await Promise.race([Promise.allSettled(tasks).then(() => true), sleep(shutdownGraceMs).then(() => false)]);
      if (!settled) this.log.warn({ graceMs: shutdownGraceMs }, 'in-flight work abandoned at shutdown; it resumes from the checkpoint');
      await Promise.race([producer.close(), sleep(500)]);
      watch.stop();
      await observe.stop();
      health.close();
    }
  }
}
