import { execFile } from 'node:child_process';
import { chmodSync, existsSync, readFileSync, statSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { TunnelError } from '../errors.js';
import type { Logger } from '../instruments/log.js';
import { sleep } from '../retry.js';

export const isRoot = process.getuid?.() === 0;

/** PostgreSQL refuses to run as root: as root, its tools run as the `postgres` system user. */
export function asServiceUser(command: string, args: string[]): [string, string[]] {
  return isRoot ? ['runuser', ['-u', 'postgres', '--', command, ...args]] : [command, args];
}

export function run(command: string, args: string[], options: { timeoutMs?: number } = {}): Promise<{ stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    execFile(command, args, { timeout: options.timeoutMs ?? 120_000, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      if (err) {
        reject(new TunnelError('PGT_STACK_COMMAND', `${path.basename(command)} ${args.join(' ')} failed: ${stderr.trim() || err.message}`, { errorClass: 'fatal', cause: err }));
      } else resolve({ stdout, stderr });
    });
  });
}

/** True when a process with this pid exists and its command line contains `marker`. */
export function processAlive(pid: number, marker: string): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(marker);
  } catch {
    return true;
  }
}

/** SIGTERM, then SIGKILL if the process (still carrying `marker`) has not ended within `graceMs`. */
export async function stopProcess(pid: number, marker: string, graceMs: number): Promise<void> {
  if (!processAlive(pid, marker)) return;
  process.kill(pid, 'SIGTERM');
  const deadline = Date.now() + graceMs;
  while (processAlive(pid, marker) && Date.now() < deadline) await sleep(100);
  if (processAlive(pid, marker)) process.kill(pid, 'SIGKILL');
}

export function portOpen(port: number, host = '127.0.0.1'): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ port, host });
    socket.setTimeout(1000);
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
    socket.once('timeout', () => {
      socket.destroy();
      resolve(false);
    });
  });
}

export async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs: number, onFail?: () => string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await sleep(200);
  }
  throw new TunnelError('PGT_STACK_TIMEOUT', `${what} did not become ready within ${timeoutMs / 1000} s${onFail ? `\n${onFail()}` : ''}`, { errorClass: 'fatal' });
}

/**
 * As root, the `postgres` user must be able to reach its data directory; a home such as a 0700 /tmp
 * directory blocks it. Add search (o+x) permission on each ancestor that lacks it, and say so.
 */
export function ensureTraversable(dir: string, log: Logger): void {
  if (!isRoot) return;
  let current = path.resolve(dir);
  const ancestors: string[] = [];
  while (current !== path.dirname(current)) {
    current = path.dirname(current);
    ancestors.push(current);
  }
  for (const a of ancestors) {
    if (!existsSync(a)) continue;
    const mode = statSync(a).mode;
    if ((mode & 0o001) === 0) {
      chmodSync(a, mode | 0o001);
      log.info({ dir: a }, 'granted search permission (o+x) so the postgres user can reach its data directory');
    }
  }
}

export function tail(file: string, lines = 20): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}
