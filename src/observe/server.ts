import { readFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import type { TunnelConfig } from '../config/load.js';
import type { Health } from './health.js';
import type { Logger } from './log.js';
import { collectStatus, type StatusReport } from './status.js';
import { telemetry } from './telemetry.js';

const web = (file: string) => fileURLToPath(new URL(`../../../web/${file}`, import.meta.url));
const uplot = (file: string) => fileURLToPath(new URL(`../../../node_modules/uplot/dist/${file}`, import.meta.url));

const assets: Record<string, { file: string; type: string }> = {
  '/': { file: web('index.html'), type: 'text/html; charset=utf-8' },
  '/dashboard.js': { file: web('dashboard.js'), type: 'text/javascript; charset=utf-8' },
  '/dashboard.css': { file: web('dashboard.css'), type: 'text/css; charset=utf-8' },
  '/uPlot.js': { file: uplot('uPlot.iife.min.js'), type: 'text/javascript; charset=utf-8' },
  '/uPlot.css': { file: uplot('uPlot.min.css'), type: 'text/css; charset=utf-8' },
};

/** What is wrong right now, in words; empty when healthy. */
export function problems(report: StatusReport | undefined, health: Health, lagTrend: number[]): string[] {
  const out: string[] = [];
  for (const [part, h] of Object.entries(health.parts)) if (h.state === 'waiting') out.push(`${part} is waiting: ${h.reason?.split('\n')[0] ?? ''}`);
  for (const e of report?.errors ?? []) out.push(e.split('\n')[0]!);
  if (lagTrend.length >= 5 && lagTrend.every((l, i) => i === 0 || l > lagTrend[i - 1]!)) out.push(`lag is growing (${lagTrend.at(-1)} records behind)`);
  return out;
}

/**
 * The running tunnel's HTTP face: Prometheus `/metrics`, `/health` (liveness), `/ready` (readiness),
 * `/api/status` for the dashboard, and the dashboard itself at `/` (static files, no build step).
 */
export class ObserveServer {
  private server: http.Server | undefined;
  private poller: NodeJS.Timeout | undefined;
  private report: StatusReport | undefined;
  private lagTrend: number[] = [];
  private readonly started = Date.now();

  constructor(private readonly config: TunnelConfig, private readonly health: Health, private readonly log: Logger) {}

  async start(host: string, port: number): Promise<string | undefined> {
    telemetry.start();
    const server = http.createServer((req, res) => void this.handle(req, res));
    const listening = await new Promise<boolean>((resolve) => {
      server.once('error', (err: NodeJS.ErrnoException) => {
        this.log.warn({ port, code: err.code }, `dashboard and metrics not served: ${err.message} (set PGTUNNEL_HTTP_PORT to another port, or 0 for any)`);
        resolve(false);
      });
      server.listen(port, host, () => resolve(true));
    });
    if (!listening) return undefined;
    this.server = server;
    await this.poll();
    this.poller = setInterval(() => void this.poll(), 2000);
    this.poller.unref();
    const url = `http://${host}:${(server.address() as AddressInfo).port}/`;
    this.log.info({ url }, `dashboard at ${url} (metrics at ${url}metrics)`);
    return url;
  }

  private async poll(): Promise<void> {
    try {
      this.report = await collectStatus(this.config);
      for (const p of this.report.partitions) telemetry.lag.set({ topic: p.topic, partition: String(p.partition) }, p.lag);
      this.lagTrend = [...this.lagTrend, this.report.lag].slice(-6);
    } catch (err) {
      this.log.debug({ err: (err as Error).message }, 'status poll failed');
    }
  }

  private ready(): { ok: boolean; body: object } {
    const parts = this.health.parts;
    const ok = Object.keys(parts).length > 0 && Object.values(parts).every((p) => p.state === 'ok' || p.state === 'standby');
    return { ok, body: { status: ok ? 'ready' : 'not ready', phase: this.report?.phase ?? null, parts } };
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0]!;
    const json = (status: number, body: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' });
      res.end(JSON.stringify(body));
    };
    try {
      if (path === '/metrics') {
        res.writeHead(200, { 'content-type': telemetry.registry.contentType });
        res.end(await telemetry.registry.metrics());
      } else if (path === '/health') {
        json(200, { status: 'alive', pid: process.pid, uptimeSeconds: Math.round((Date.now() - this.started) / 1000) });
      } else if (path === '/ready') {
        const r = this.ready();
        json(r.ok ? 200 : 503, r.body);
      } else if (path === '/api/status') {
        json(200, {
          status: this.report ?? null,
          health: this.health.parts,
          problems: problems(this.report, this.health, this.lagTrend),
          history: telemetry.history,
          deadLetters: telemetry.deadLetters,
          uptimeSeconds: Math.round((Date.now() - this.started) / 1000),
        });
      } else if (assets[path]) {
        res.writeHead(200, { 'content-type': assets[path].type });
        res.end(readFileSync(assets[path].file));
      } else {
        json(404, { error: `no such page: ${path}` });
      }
    } catch (err) {
      json(500, { error: (err as Error).message });
    }
  }

  async stop(): Promise<void> {
    if (this.poller) clearInterval(this.poller);
    telemetry.stop();
    // A dashboard polling every second keeps its connection busy: close it, or close() waits forever.
    const closed = new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
    this.server?.closeAllConnections();
    await closed;
  }
}
