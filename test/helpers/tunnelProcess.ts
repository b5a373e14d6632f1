import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { TestContext } from 'node:test';
import { freePort } from '../../testkit/testStack.js';
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

  constructor(private readonly env: Record<string, string>, args: string[] = ['run']) {
    // the suite covers the worker threads on any host (threads: auto picks the main thread on 2 cores; that
    // path is the in-process harness's); a test may still ask for either
    const threads = { PGTUNNEL_THREADS: process.env.PGTUNNEL_THREADS ?? 'on' };
    this.child = spawn(process.execPath, [cliPath, ...args], { env: { ...process.env, ...threads, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    this.child.stdout!.on('data', (d: Buffer) => (this.output += d.toString()));
    this.child.stderr!.on('data', (d: Buffer) => (this.output += d.toString()));
    this.exited = new Promise((resolve) => this.child.once('exit', (code) => resolve(code)));
    this.closed = new Promise((resolve) => this.child.once('close', () => resolve()));
  }

  static async start(t: TestContext, env: Record<string, string>, waitForStreaming = true): Promise<TunnelProcess> {
    const tunnel = TunnelProcess.spawn(t, env);
    if (waitForStreaming) await tunnel.waitForLog('phase: streaming', 60_000);
    return tunnel;
  }

  /** Starts `pgtunnel <args>` serving HTTP on a free port chosen here: the test reads its /api/status, not its log. */
  static async spawnServed(t: TestContext, env: Record<string, string>, args: string[] = ['run']): Promise<TunnelProcess> {
    return TunnelProcess.spawn(t, { ...env, PGTUNNEL_HTTP_HOST: '127.0.0.1', PGTUNNEL_HTTP_PORT: String(await freePort()) }, args);
  }

  /** Its HTTP address (`http://127.0.0.1:port/`) when started with a port of its own. */
  get url(): string | undefined {
    const port = Number(this.env.PGTUNNEL_HTTP_PORT);
    return port > 0 ? `http://${this.env.PGTUNNEL_HTTP_HOST ?? '127.0.0.1'}:${port}/` : undefined;
  }

  /** Starts `pgtunnel <args>` for the test `t`: killed when it ends, watched so every wait gives up at once if it exits on its own. */
  static spawn(t: TestContext, env: Record<string, string>, args: string[] = ['run']): TunnelProcess {
    const tunnel = new TunnelProcess(env, args);
    onCleanup(t, () => tunnel.kill('SIGKILL'));
    watch(t, tunnel);
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
