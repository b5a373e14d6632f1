import { Writable } from 'node:stream';
import type { TestContext } from 'node:test';
import pino from 'pino';
import { loadConfig, type TunnelConfig } from '../../src/config/load.js';
import { withTables } from '../../src/config/tables.js';
import { describeError } from '../../src/errors.js';
import { tableId } from '../../src/names.js';
import type { Logger } from '../../src/instruments/log.js';
import { redact } from '../../src/redact.js';
import { subscribe, type TelemetryChannel, type TelemetryEvents } from '../../src/instruments/telemetry.js';
import { prepare } from '../../src/setup/prepare.js';
import { Tunnel } from '../../src/pipeline/tunnel.js';
import { compareTable, type TableDifference } from '../../src/verify/compare.js';
import { onCleanup, waitFor, watch, type UnderTest } from './services.js';

// Every channel, checked by the compiler: a channel added to TelemetryEvents must be added here.
const everyChannel: Record<TelemetryChannel, true> = {
  'pgtunnel:captured': true,
  'pgtunnel:filtered': true,
  'pgtunnel:produced': true,
  'pgtunnel:checkpoint': true,
  'pgtunnel:snapshot': true,
  'pgtunnel:applied': true,
  'pgtunnel:latencies': true,
  'pgtunnel:applied-set': true,
  'pgtunnel:group-commit-failed': true,
  'pgtunnel:dead-lettered': true,
  'pgtunnel:retried': true,
  'pgtunnel:assigned': true,
  'pgtunnel:phase': true,
  'pgtunnel:leadership': true,
  'pgtunnel:change-table': true,
  'pgtunnel:degraded': true,
  'pgtunnel:backfill': true,
  'pgtunnel:stages': true,
  'pgtunnel:slot': true,
};

export interface Recorded<K extends TelemetryChannel = TelemetryChannel> {
  channel: K;
  /** `performance.now()` when it was published: timings between events without reading logs. */
  at: number;
  event: TelemetryEvents[K];
}

/**
 * Keeps every event published on the `pgtunnel:*` diagnostics channels while it is open. Channels are
 * per process: two tunnels in one test share one recording (their events name their table or instance).
 */
export class EventRecorder {
  readonly recorded: Recorded[] = [];
  private readonly unsubscribes: (() => void)[];

  constructor() {
    this.unsubscribes = (Object.keys(everyChannel) as TelemetryChannel[]).map((channel) =>
      subscribe(channel, (event) => this.recorded.push({ channel, at: performance.now(), event } as Recorded)));
  }

  /** Events of one channel, oldest first (`since`: only those recorded after that index of `recorded`). */
  of<K extends TelemetryChannel>(channel: K, since = 0): Recorded<K>[] {
    return this.recorded.slice(since).filter((r): r is Recorded<K> => r.channel === channel);
  }

  /** The sum of a numeric field over one channel's events (rows applied, records produced…). */
  total<K extends TelemetryChannel>(channel: K, value: (event: TelemetryEvents[K]) => number, since = 0): number {
    return this.of(channel, since).reduce((sum, r) => sum + value(r.event), 0);
  }

  close(): void {
    for (const unsubscribe of this.unsubscribes.splice(0)) unsubscribe();
  }
}

export interface StartOptions {
  /** As `pgtunnel run --role`. */
  role?: 'all' | 'producer' | 'consumer';
  /** Wait until every table streams (default: true for roles that produce). */
  waitForStreaming?: boolean;
  /** The recorder to publish into (a test with several tunnels shares one); a new one when not given. */
  recorder?: EventRecorder;
}

/** What `pgtunnel install` does (capture, offsets table, topics), in this process; returns the tables as `schema.name`. */
export async function installInProcess(env: Record<string, string>): Promise<string[]> {
  const tables = await prepare(await withTables(loadConfig({ env })), pino({ level: 'silent' }), { installOnly: true });
  return tables.map((t) => tableId(t.config));
}

/**
 * The tunnel `pgtunnel run` runs (config from PGTUNNEL_* variables, `prepare`, `Tunnel.run`) inside the test
 * process: no process start per test, events instead of log text, stop through an AbortSignal. What needs
 * a process (signals, kill -9, exit codes) stays with TunnelProcess.
 */
export class InProcessTunnel implements UnderTest {
  /** The log, as JSON lines, for a failure's message (tests assert on events, not on this). */
  readonly logLines: string[] = [];
  readonly config: TunnelConfig;
  private readonly controller = new AbortController();
  private running: Promise<void> = Promise.resolve();
  private failure: unknown;
  private finished = false;
  private stopped = false;
  private tables: string[] = [];

  private constructor(env: Record<string, string>, readonly events: EventRecorder, private readonly ownsRecorder: boolean) {
    this.config = loadConfig({ env });
  }

  static async start(t: TestContext, env: Record<string, string>, options: StartOptions = {}): Promise<InProcessTunnel> {
    const tunnel = new InProcessTunnel(env, options.recorder ?? new EventRecorder(), !options.recorder);
    onCleanup(t, () => tunnel.stop().catch(() => {}));
    watch(t, tunnel);
    await tunnel.begin(options.role ?? 'all');
    if (options.waitForStreaming ?? options.role !== 'consumer') await tunnel.waitForStreaming();
    return tunnel;
  }

  private async begin(role: 'all' | 'producer' | 'consumer'): Promise<void> {
    const log = this.logger();
    const cfg = await withTables(this.config);
    const tables = await prepare(cfg, log);
    this.tables = tables.map((t) => tableId(t.config));
    const tunnel = new Tunnel(cfg, tables, log);
    const parts = { produce: role !== 'consumer', apply: role !== 'producer' };
    this.running = tunnel.run(this.controller.signal, parts).then(
      () => void (this.finished = true),
      (err) => {
        this.failure = err;
        this.finished = true;
      },
    );
  }

  /** Logs go to memory, redacted like the CLI's: the tail is shown when the tunnel fails. */
  private logger(): Logger {
    const lines = this.logLines;
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        lines.push(...redact(chunk.toString()).split('\n').filter(Boolean));
        if (lines.length > 2000) lines.splice(0, lines.length - 2000);
        done();
      },
    });
    return pino({ name: 'pgtunnel', level: process.env.PGTUNNEL_LOG_LEVEL ?? 'info' }, sink);
  }

  /** The tables this tunnel runs (patterns resolved), as `schema.name`. */
  get tableIds(): string[] {
    return [...this.tables];
  }

  /** Every table of this tunnel reported `streaming` (a restarted tunnel reports it again at once). */
  async waitForStreaming(timeoutMs = 60_000): Promise<void> {
    const tables = this.tables;
    await this.waitForEvents('pgtunnel:phase', `every table streaming (${tables.join(', ')})`, (events) =>
      tables.every((table) => events.some((e) => e.table === table && e.phase === 'streaming')), timeoutMs);
  }

  /** Waits until `holds` is true of one channel's events (recorded since index `since`); returns them. */
  async waitForEvents<K extends TelemetryChannel>(channel: K, what: string, holds: (events: TelemetryEvents[K][]) => boolean, timeoutMs = 30_000, since = 0): Promise<TelemetryEvents[K][]> {
    return waitFor(what, async () => {
      const events = this.events.of(channel, since).map((r) => r.event);
      return holds(events) ? events : undefined;
    }, timeoutMs);
  }

  /** What `pgtunnel verify` compares, table by table: an empty list when the target equals the source. */
  async differences(): Promise<TableDifference[]> {
    const cfg = await withTables(this.config);
    const out: TableDifference[] = [];
    for (const table of cfg.tables) {
      const diff = await compareTable(cfg, table);
      if (diff.differingKeys.length > 0) out.push(diff);
    }
    return out;
  }

  /** Waits until `pgtunnel verify` would find every table equal. */
  async waitForEqual(timeoutMs = 60_000): Promise<void> {
    let last: TableDifference[] = [];
    await waitFor('the target equal to the source (as verify compares)', async () => (last = await this.differences()).length === 0, timeoutMs, 100).catch((err: Error) => {
      throw new Error(`${err.message}; differing: ${last.map((d) => `${d.table} (${d.sourceRows} rows in the source, ${d.targetRows} in the target)`).join(', ')}`, { cause: err });
    });
  }

  ended(): boolean {
    return !this.stopped && this.finished;
  }

  async howItEnded(): Promise<string> {
    const how = this.failure === undefined ? 'stopped on its own' : `failed: ${describeError(this.failure)}`;
    return `the in-process tunnel ${how}; its log ends:\n${this.logLines.slice(-20).join('\n')}`;
  }

  /** Stops the tunnel as Ctrl-C does and waits until it let go of everything; rethrows a failure it had. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.controller.abort();
    await this.running;
    if (this.ownsRecorder) this.events.close();
    if (this.failure !== undefined) {
      const failure = this.failure;
      this.failure = undefined;
      throw failure;
    }
  }
}
