import { chmodSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { redact } from '../redact.js';

/**
 * degraded: running, with something a user must act on (e.g. source columns not captured); removed: a table
 * taken out of the running tunnel (the reason says what became of its capture)
 */
export type PartState = 'starting' | 'ok' | 'waiting' | 'standby' | 'degraded' | 'removed';

export interface PartHealth {
  state: PartState;
  /** What the part is waiting for, in words a user can act on. */
  reason?: string;
  since: string;
}

export interface ProcessHealth {
  pid: number;
  role: string;
  /** Where the sides run: `two worker threads (threads: auto on 4 cores)`, `the main thread (…)`. */
  sides?: string;
  startedAt: string;
  parts: Record<string, PartHealth>;
}

/**
 * What each part of a running tunnel is doing, kept in a small file under PGTUNNEL_HOME/run so that
 * `pgtunnel status` can say what a tunnel waits for even when the database or broker it waits for is down.
 */
export class Health {
  private readonly report: ProcessHealth;
  private readonly file: string | undefined;

  constructor(home: string | undefined, role: string, sides?: string) {
    this.report = { pid: process.pid, role, sides, startedAt: new Date().toISOString(), parts: {} };
    if (home) {
      const dir = path.join(home, 'run');
      // Only the user running the tunnel reads what it waits for (reasons name hosts and users).
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      chmodSync(dir, 0o700);
      this.file = path.join(dir, `tunnel-${process.pid}.json`);
    }
  }

  set(part: string, state: PartState, reason?: string): void {
    const current = this.report.parts[part];
    if (current && current.state === state && current.reason === reason) return;
    this.report.parts[part] = { state, reason, since: new Date().toISOString() };
    this.flush();
    for (const listener of this.listeners) listener(part, state);
  }

  private readonly listeners: ((part: string, state: PartState) => void)[] = [];

  /** Calls `listener` on every change of a part's state from now on. */
  watch(listener: (part: string, state: PartState) => void): void {
    this.listeners.push(listener);
  }

  get parts(): Record<string, PartHealth> {
    return this.report.parts;
  }

  private flush(): void {
    if (!this.file) return;
    // Write then rename, so a reader never sees half a file.
    writeFileSync(`${this.file}.tmp`, redact(JSON.stringify(this.report)), { mode: 0o600 });
    renameSync(`${this.file}.tmp`, this.file);
  }

  close(): void {
    if (this.file) rmSync(this.file, { force: true });
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** The health of every tunnel process running from this home; files of dead processes are removed. */
export function readHealth(home: string): ProcessHealth[] {
  const dir = path.join(home, 'run');
  let files: string[];
  try {
    files = readdirSync(dir).filter((f) => /^tunnel-\d+\.json$/.test(f));
  } catch {
    return [];
  }
  const out: ProcessHealth[] = [];
  for (const f of files) {
    const pid = Number(f.slice(7, -5));
    if (!alive(pid)) {
      rmSync(path.join(dir, f), { force: true });
      continue;
    }
    try {
      out.push(JSON.parse(readFileSync(path.join(dir, f), 'utf8')) as ProcessHealth);
    } catch {
      // being replaced right now; the next status call reads it
    }
  }
  return out;
}
