import { parentPort, workerData } from 'node:worker_threads';
import pino from 'pino';
import client from 'prom-client';
import { tableId } from '../names.js';
import { Health, type PartState } from '../instruments/health.js';
import { subscribe, telemetryChannels } from '../instruments/telemetry.js';
import { threadMetrics } from '../instruments/threadMetrics.js';
import { compileRules } from '../validate/rules.js';
import { Reloads, runSide } from './sides.js';
import { toWire, type FromSide, type SideSpawn, type ToSide } from './threadMessages.js';

/**
 * The entry of one side's worker thread (sideThread.ts starts it). It talks to the main thread only by
 * messages: telemetry, health, phases and log lines go up; stop and metrics requests come down.
 */
const port = parentPort!;
const start = workerData as SideSpawn;
const post = (message: FromSide) => port.postMessage(message);

/** Health kept by the main thread (one file per process): here every change is sent up. */
class ForwardedHealth extends Health {
  override set(part: string, state: PartState, reason?: string): void {
    super.set(part, state, reason);
    post({ type: 'health', part, state, reason });
  }
}

// Lines go to the main thread's logger: one format, one redaction, one stream (or the test's memory).
const log = pino({ name: 'pgtunnel', level: start.logLevel, base: { thread: start.side } }, { write: (line: string) => post({ type: 'log', line }) });
for (const channel of telemetryChannels) subscribe(channel, (event) => post({ type: 'telemetry', channel, event }));
const registry = new client.Registry();
client.collectDefaultMetrics({ register: registry, prefix: 'pgtunnel_', eventLoopMonitoringPrecision: 1000 });

const controller = new AbortController();
const reloads = new Reloads();

/** Compiled rules are closures: rebuilt here from the same specs prepare compiled them from. */
const compiled = (tables: Extract<ToSide, { type: 'start' }>['tables']) => tables.map((t) => ({ ...t, rules: compileRules(t.config.rules, t.target.types, tableId(t.config)) }));

function begin(message: Extract<ToSide, { type: 'start' }>): void {
  const ctx = { config: message.config, tables: compiled(message.tables), log, reloads, health: new ForwardedHealth(undefined, start.side), onPhase: (table: string, phase: 'snapshot' | 'streaming') => post({ type: 'phase', table, phase }) };
  runSide(start.side, ctx, controller.signal).then(
    () => post({ type: 'stopped' }),
    (err: unknown) => post({ type: 'fatal', error: toWire(err) }),
  );
}

port.on('message', (message: ToSide) => {
  if (message.type === 'start') begin(message);
  else if (message.type === 'stop') controller.abort();
  else if (message.type === 'reload') void reloads.reload(compiled(message.tables));
  else void threadMetrics(registry, start.side).then((metrics) => post({ type: 'metrics', id: message.id, metrics }));
});
