import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { TestContext } from 'node:test';
import { onCleanup, waitFor, watch, type UnderTest } from './services.js';

export const cliPath = fileURLToPath(new URL('../../../bin/pgtunnel.js', import.meta.url));

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the real CLI to completion, as a user would. */
export function runCli(args: string[], env: Record<string, string> = {}, timeoutMs = 60_000): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [cliPath, ...args], { env: { ...process.env, PGTUNNEL_LOG_FORMAT: 'json', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`pgtunnel ${args.join(' ')} did not finish within ${timeoutMs} ms\n${stdout}\n${stderr}`));
    }, timeoutMs);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/**
 * A `pgtunnel run` process, for what needs a process (signals, kill -9, exit codes), with its output kept
 * for assertions. Started by `start`, it is watched: a wait gives up at once when it exits on its own.
 */
export class TunnelProcess implements UnderTest {
  readonly child: ChildProcess;
  output = '';
  private exited: Promise<number | null>;
  private stopped = false;
  /** Its output read to the end (stdio closes after the exit). */
  private closed: Promise<void>;

  constructor(env: Record<string, string>, args: string[] = ['run']) {
    this.child = spawn(process.execPath, [cliPath, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    this.child.stdout!.on('data', (d: Buffer) => (this.output += d.toString()));
    this.child.stderr!.on('data', (d: Buffer) => (this.output += d.toString()));
    this.exited = new Promise((resolve) => this.child.once('exit', (code) => resolve(code)));
    this.closed = new Promise((resolve) => this.child.once('close', () => resolve()));
  }

  static async start(t: TestContext, env: Record<string, string>, waitForStreaming = true): Promise<TunnelProcess> {
    const tunnel = new TunnelProcess(env);
    onCleanup(t, () => tunnel.kill('SIGKILL'));
    watch(t, tunnel);
    if (waitForStreaming) await tunnel.waitForLog('phase: streaming', 60_000);
    return tunnel;
  }

  ended(): boolean {
    return !this.stopped && (this.child.exitCode !== null || this.child.signalCode !== null);
  }

  async howItEnded(): Promise<string> {
    await this.closed;
    return `the tunnel (pgtunnel ${this.child.spawnargs.slice(2).join(' ')}) exited with ${this.child.exitCode ?? this.child.signalCode}; its output ends:\n${this.output.slice(-3000)}`;
  }

  async waitForLog(text: string, timeoutMs = 30_000): Promise<void> {
    await waitFor(`"${text}" in the tunnel's output`, async () => this.output.includes(text), timeoutMs, 20, [this]);
  }

  async kill(signal: NodeJS.Signals): Promise<number | null> {
    this.stopped = true;
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill(signal);
    return this.exited;
  }

  async stop(): Promise<number | null> {
    return this.kill('SIGTERM');
  }
}
