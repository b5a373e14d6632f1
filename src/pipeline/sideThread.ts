import { tmpdir } from 'node:os';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { classify, TunnelError } from '../errors.js';
import { republish } from '../instruments/telemetry.js';
import type { MetricsJson } from '../instruments/threadMetrics.js';
import { Reloads, runSide, sideStopMs, type Side, type SideContext, type SideTable } from './sides.js';
import { fromWire, type FromSide, type SideSpawn, type ToSide } from './threadMessages.js';

/** A running side: its end (rejected with a classified error when it failed), a way to stop it, its thread's metrics. */
export interface RunningSide {
  readonly done: Promise<void>;
  stop(): void;
  /** Runs these tables from now on (added ones start, removed ones stop). */
  reload(tables: SideTable[]): void;
  metrics(): Promise<MetricsJson>;
}

/** A side on the calling thread (the in-process test harness; events need no forwarding there). */
export class LocalSide implements RunningSide {
  private readonly controller = new AbortController();
  private readonly reloads = new Reloads();
  readonly done: Promise<void>;

  constructor(side: Side, ctx: SideContext) {
    this.done = runSide(side, { ...ctx, reloads: this.reloads }, this.controller.signal);
  }

  stop(): void {
    this.controller.abort();
  }

  reload(tables: SideTable[]): void {
    void this.reloads.reload(tables);
  }

  async metrics(): Promise<MetricsJson> {
    return [];
  }
}

/**
 * V8 heap caps per side, in MB. Old space: heap used peaked at 37 MB (producer) and 107 MB (consumer) over a
 * 1M-row snapshot; the caps leave room for the transactional apply's buffer. The young generation is what the
 * RSS follows (bench/memory.ts, bench/RESULTS.md "Peak RSS by heap caps"): every set and piece lives across
 * awaits, so a large young generation only holds more garbage: 32 → 16 → 8 MB gave 425 → 365 → 326 MB over
 * a 1M-row snapshot (a loaded machine; the old-space caps mattered little). A side outgrowing its cap stops
 * the process, naming it.
 */
export const heapLimits: Record<Side, { maxOldGenerationSizeMb: number; maxYoungGenerationSizeMb: number }> = {
  producer: { maxOldGenerationSizeMb: 256, maxYoungGenerationSizeMb: 8 },
  consumer: { maxOldGenerationSizeMb: 384, maxYoungGenerationSizeMb: 8 },
};

/**
 * A side thread's environment: the process's, with Node's on-disk compile cache on unless the user chose a
 * directory or turned it off. Each thread loads ~870 modules into a fresh isolate before it can start (0.4–0.5 s
 * of CPU, the two-thread tunnel's start-up; bench/RESULTS.md "Two-thread start"); the cache cuts that by ~15%.
 * `module.enableCompileCache()` on the main thread does not reach workers; their env does.
 */
export function sideThreadEnv(env: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  if (env.NODE_COMPILE_CACHE !== undefined || env.NODE_DISABLE_COMPILE_CACHE !== undefined) return env;
  return { ...env, NODE_COMPILE_CACHE: path.join(tmpdir(), 'node-compile-cache') };
}

const levelOf: Record<number, 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal'> = { 10: 'trace', 20: 'debug', 30: 'info', 40: 'warn', 50: 'error', 60: 'fatal' };

/**
 * A side in its own worker thread, with its own event loop and heap caps. Its telemetry is re-published on
 * this thread's channels, so metrics, the dashboard's history and test recorders see both sides as before.
 * Spawned before the services are prepared (the thread loads its modules meanwhile), started after.
 */
export class SideThread implements RunningSide {
  private readonly worker: Worker;
  private readonly waiting = new Map<number, (metrics: MetricsJson) => void>();
  private nextId = 0;
  private ended = false;
  private stopping = false;
  private ctx: SideContext | undefined;
  readonly done: Promise<void>;

  constructor(private readonly side: Side, logLevel: string) {
    const spawn: SideSpawn = { side, logLevel };
    this.worker = new Worker(new URL('./sideWorker.js', import.meta.url), { workerData: spawn, env: sideThreadEnv(), resourceLimits: heapLimits[side], name: `pgtunnel ${side}` });
    this.done = new Promise<void>((resolve, reject) => {
      const end = (err?: unknown) => {
        if (this.ended) return;
        this.ended = true;
        for (const answer of this.waiting.values()) answer([]);
        void this.worker.terminate();
        if (err === undefined) resolve();
        else reject(err);
      };
      this.worker.on('message', (message: FromSide) => {
        if (message.type === 'stopped') end();
        else if (message.type === 'fatal') end(fromWire(message.error, side));
        else this.receive(message);
      });
      this.worker.on('error', (err) => end(this.threadError(err)));
      this.worker.on('exit', (code) => end(this.stopping ? undefined : new TunnelError('PGT_THREAD_EXIT', `the ${side} thread ended on its own (exit code ${code})`, { unexpected: true, hint: 'a bug: report it with the log above' })));
    });
    // a thread failing before it is started is reported by whoever starts or stops it, never as an unhandled rejection
    this.done.catch(() => {});
  }

  reload(tables: SideTable[]): void {
    this.worker.postMessage({ type: 'reload', tables: tables.map(({ rules: _rules, ...plain }) => plain) } satisfies ToSide);
  }

  /** Hands the prepared tables over: the side's loops begin. */
  start(ctx: SideContext): this {
    this.ctx = ctx;
    const tables = ctx.tables.map(({ rules: _rules, ...plain }) => plain);
    this.worker.postMessage({ type: 'start', config: ctx.config, tables } satisfies ToSide);
    return this;
  }

  private receive(message: Exclude<FromSide, { type: 'stopped' | 'fatal' }>): void {
    if (!this.ctx) return;
    if (message.type === 'telemetry') republish(message.channel, message.event as never);
    else if (message.type === 'health') this.ctx.health.set(message.part, message.state, message.reason);
    else if (message.type === 'phase') this.ctx.onPhase(message.table, message.phase);
    else if (message.type === 'log') this.relog(message.line);
    else this.waiting.get(message.id)?.(message.metrics);
  }

  /** A worker's log line, written by this thread's logger (same format, redaction and destination). */
  private relog(line: string): void {
    const { level, msg, time: _time, name: _name, ...fields } = JSON.parse(line) as Record<string, unknown>;
    this.ctx?.log[levelOf[level as number] ?? 'info'](fields, typeof msg === 'string' ? msg : '');
  }

  private threadError(err: Error): TunnelError {
    if ((err as { code?: string }).code !== 'ERR_WORKER_OUT_OF_MEMORY') return classify(err);
    const { maxOldGenerationSizeMb } = heapLimits[this.side];
    return new TunnelError('PGT_THREAD_MEMORY', `the ${this.side} thread ran out of its ${maxOldGenerationSizeMb} MB heap`, {
      errorClass: 'fatal',
      cause: err,
      hint: 'a set or page held more than the heap allows: lower the batch and apply-set sizes in the config, or report it with the table\'s row sizes',
    });
  }

  stop(): void {
    if (this.ended || this.stopping) return;
    this.stopping = true;
    if (!this.ctx) {
      void this.worker.terminate();
      return;
    }
    this.worker.postMessage({ type: 'stop' } satisfies ToSide);
    // a side that does not end within its own grace is ended: everything resumes from the checkpoints
    setTimeout(() => {
      if (this.ended) return;
      this.ctx?.log.warn({ side: this.side, graceMs: sideStopMs }, 'the thread did not stop in time; ended, it resumes from the checkpoint');
      void this.worker.terminate();
    }, sideStopMs).unref();
  }

  /** The thread's per-isolate metrics; none when it does not answer within a second (a scrape never hangs on a busy side). */
  metrics(): Promise<MetricsJson> {
    if (this.ended) return Promise.resolve([]);
    const id = this.nextId++;
    return new Promise((resolve) => {
      const timer = setTimeout(() => answer([]), 1000);
      const answer = (metrics: MetricsJson) => {
        clearTimeout(timer);
        this.waiting.delete(id);
        resolve(metrics);
      };
      this.waiting.set(id, answer);
      this.worker.postMessage({ type: 'metrics', id } satisfies ToSide);
    });
  }
}
