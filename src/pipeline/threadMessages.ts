import type { MetricObjectWithValues, MetricValue } from 'prom-client';
import type { TunnelConfig } from '../config/load.js';
import type { Phase } from '../capture/stateStore.js';
import { classify, TunnelError, unexpectedStack, type Decision, type ErrorClass } from '../errors.js';
import type { PartState } from '../instruments/health.js';
import type { TelemetryChannel } from '../instruments/telemetry.js';
import type { Side, SideTable } from './sides.js';

/** What a side's thread is spawned with (workerData), before the services are prepared. */
export interface SideSpawn {
  side: Side;
  logLevel: string;
}

/**
 * Main thread to a side: start with the prepared tables (plain data: the worker recompiles their rules),
 * stop (drain and end), or send a metrics snapshot for a scrape.
 */
export type ToSide =
  | { type: 'start'; config: TunnelConfig; tables: Omit<SideTable, 'rules'>[] }
  | { type: 'reload'; tables: Omit<SideTable, 'rules'>[] }
  | { type: 'stop' }
  | { type: 'metrics'; id: number };

export type WorkerMetrics = MetricObjectWithValues<MetricValue<string>>[];

/** A side to the main thread: everything the main thread shows or decides on. */
export type FromSide =
  | { type: 'telemetry'; channel: TelemetryChannel; event: unknown }
  | { type: 'health'; part: string; state: PartState; reason?: string }
  | { type: 'phase'; table: string; phase: Phase }
  | { type: 'log'; line: string }
  | { type: 'metrics'; id: number; metrics: WorkerMetrics }
  | { type: 'fatal'; error: WireError }
  | { type: 'stopped' };

/** A classified error as it crosses threads (a structured clone keeps no class and no cause). */
export interface WireError {
  code: string;
  message: string;
  errorClass: ErrorClass;
  decision: Decision;
  hint?: string;
  unexpected: boolean;
  /** The original's stack, for a bug's report. */
  stack?: string;
}

export function toWire(err: unknown): WireError {
  const e = classify(err);
  return { code: e.code, message: e.message, errorClass: e.errorClass, decision: e.decision, hint: e.hint, unexpected: e.unexpected, stack: unexpectedStack(e) };
}

/** The same classification on this side: the process exits with the code it would have had on one thread. */
export function fromWire(w: WireError, side: Side): TunnelError {
  const cause = w.stack === undefined ? undefined : Object.assign(new Error(w.message), { stack: w.stack });
  return new TunnelError(w.code, w.message, { errorClass: w.errorClass, decision: w.decision, hint: w.hint, unexpected: w.unexpected, cause: cause ?? `the ${side} thread` });
}
