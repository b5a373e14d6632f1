import { readFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import type { TunnelConfig } from '../config/load.js';
import type { Health } from '../instruments/health.js';
import type { Logger } from '../instruments/log.js';
import { HttpAccess } from './access.js';
import { redact } from '../redact.js';
import type { StatusReport } from './status.js';
import { StatusPoller } from './statusPoller.js';
import { signalPaths, signalRequest } from './signalApi.js';
import { LiveHistory } from '../instruments/liveHistory.js';
import { processMetrics } from '../instruments/metrics.js';
import { aggregateThreads, type MetricsJson } from '../instruments/threadMetrics.js';

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
export function problems(report: StatusReport | undefined, health: Health, lagTrend: number[], limits?: Pick<TunnelConfig, 'changeTableWarnRows' | 'changeTableWarnSeconds'>): string[] {
  const out: string[] = [];
  for (const t of limits ? report?.tables ?? [] : []) {
    if (t.changeTableRows > limits!.changeTableWarnRows) out.push(`${t.table}: ${t.changeTableRows} unpublished changes in its change table (above changeTableWarnRows)`);
    if ((t.oldestUnpublishedSeconds ?? 0) > limits!.changeTableWarnSeconds) out.push(`${t.table}: its oldest unpublished change waits for ${Math.round(t.oldestUnpublishedSeconds!)} s (above changeTableWarnSeconds)`);
  }
  for (const [part, h] of Object.entries(health.parts)) {
    if (h.state === 'waiting') out.push(`${part} is waiting: ${h.reason?.split('\n')[0] ?? ''}`);
    if (h.state === 'degraded') out.push(`${part}: ${h.reason?.split('\n')[0] ?? ''}`);
  }
  for (const p of report?.problems ?? []) out.push(p.split('\n')[0]!);
  for (const e of report?.errors ?? []) out.push(e.split('\n')[0]!);
  if (lagTrend.length >= 5 && lagTrend.every((l, i) => i === 0 || l > lagTrend[i - 1]!)) out.push(`lag is growing (${lagTrend.at(-1)} records behind)`);
  return out;
}

/**
 * Liveness only (no data at all) answers any Host header. /metrics and /ready carry states, table names and
 * counts a rebinding page could read: they check the Host like the other paths (add the name or address
 * Prometheus and probes use to httpAllowedHosts).
 */
const anyHost = new Set(['/health']);

/**
 * The running tunnel's HTTP face: Prometheus `/metrics`, `/health` (liveness), `/ready` (readiness),
 * `/api/status` for the dashboard, and the dashboard itself at `/` (static files, no build step).
 */
export class ObserveServer {
  private server: http.Server | undefined;
  private lagTrend: number[] = [];
  private readonly started = Date.now();
  private readonly poller: StatusPoller;
  private readonly access: HttpAccess;
  /** Subscribed to the telemetry channels once served (metrics) and while served (history): with the HTTP port off, nothing listens. */
  private readonly live = new LiveHistory();

  /** `threadMetrics`: the per-isolate metrics of the tunnel's worker threads, merged into each scrape. */
  constructor(private readonly config: TunnelConfig, private readonly health: Health, private readonly log: Logger, private readonly threadMetrics: () => Promise<MetricsJson[]> = async () => []) {
    this.access = new HttpAccess(config.httpHost, config.httpAllowedHosts, config.httpToken);
    this.poller = new StatusPoller(config, log, (report) => {
      for (const p of report.partitions) processMetrics().lag.set({ topic: p.topic, partition: String(p.partition) }, p.lag);
      this.lagTrend = [...this.lagTrend, report.lag].slice(-6);
    });
  }

  async start(host: string, port: number): Promise<string | undefined> {
    processMetrics();
    this.live.start();
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
    if (!this.access.loopbackBind) this.warnExposed(host);
    const shown = host.includes(':') ? `[${host}]` : host;
    const url = `http://${shown}:${(server.address() as AddressInfo).port}/`;
    this.log.info({ url }, `dashboard at ${url}${this.config.httpToken ? ' (add ?token=<httpToken>)' : ''} (metrics at ${url}metrics)`);
    return url;
  }

  private warnExposed(host: string): void {
    const what = `the dashboard and metrics listen on ${host}, reachable from other machines${this.config.httpToken ? '' : ' WITHOUT a token (set httpToken / PGTUNNEL_HTTP_TOKEN); dead-letter row data is hidden'}; only Host names localhost, 127.0.0.1, [::1], ${host} and httpAllowedHosts are answered`;
    this.log.warn({ httpHost: host }, what);
    process.stderr.write(`pgtunnel: WARNING: ${what}\n`);
  }

  private ready(): { ok: boolean; body: object } {
    const parts = this.health.parts;
    const ok = Object.keys(parts).length > 0 && Object.values(parts).every((p) => p.state === 'ok' || p.state === 'standby' || p.state === 'degraded' || p.state === 'removed');
    return { ok, body: { status: ok ? 'ready' : 'not ready', phase: this.poller.report?.phase ?? null, parts } };
  }

  /** Recent dead letters; without the right to row data, their key and message (which hold values) are left out. */
  private deadLetters(): unknown[] {
    if (this.access.rowData) return this.live.deadLetters;
    return this.live.deadLetters.map(({ time, table, errorClass, rule }) => ({ time, table, errorClass, rule, key: null, message: 'row data hidden: set httpToken to see it' }));
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const path = url.pathname;
    const json = (status: number, body: unknown, headers: Record<string, string> = {}) => {
      res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store', ...headers });
      res.end(redact(JSON.stringify(body)));
    };
    try {
      if (!anyHost.has(path) && !this.access.hostAllowed(req)) {
        json(421, { error: 'this Host is not served: add it to httpAllowedHosts (PGTUNNEL_HTTP_ALLOWED_HOSTS)' });
      } else if ((path === '/' || path.startsWith('/api/')) && !this.access.authorized(req, url.searchParams)) {
        json(401, { error: 'token required: open the dashboard as /?token=<httpToken>, or send Authorization: Bearer <httpToken>' }, { 'www-authenticate': 'Bearer' });
      } else if (path === '/metrics') {
        await this.poller.watch();
        const { registry } = processMetrics();
        const threads = (await this.threadMetrics()).filter((m) => m.length > 0);
        const body = threads.length > 0 ? await aggregateThreads(registry, threads) : await registry.metrics();
        res.writeHead(200, { 'content-type': registry.contentType });
        res.end(body);
      } else if (path === '/health') {
        json(200, { status: 'alive', pid: process.pid, uptimeSeconds: Math.round((Date.now() - this.started) / 1000) });
      } else if (path === '/ready') {
        const r = this.ready();
        json(r.ok ? 200 : 503, r.body);
      } else if (signalPaths.has(path)) {
        const answer = await signalRequest(req, path, this.config);
        json(answer.status, answer.body);
      } else if (path === '/api/status') {
        await this.poller.watch();
        const report = this.poller.report;
        json(200, {
          status: report ?? null,
          health: this.health.parts,
          problems: problems(report, this.health, this.lagTrend, this.config),
          history: this.live.history,
          membership: this.live.membership,
          stages: this.live.stageSummary(),
          deadLetters: this.deadLetters(),
          rowData: this.access.rowData,
          uptimeSeconds: Math.round((Date.now() - this.started) / 1000),
        });
      } else if (assets[path]) {
        if (path === '/') void this.poller.watch();
        res.writeHead(200, { 'content-type': assets[path].type, 'cache-control': 'no-store' });
        res.end(readFileSync(assets[path].file));
      } else {
        json(404, { error: `no such page: ${path}` });
      }
    } catch (err) {
      json(500, { error: (err as Error).message });
    }
  }

  async stop(): Promise<void> {
    this.live.stop();
    await this.poller.stop();
    // A dashboard polling every second keeps its connection busy: close it, or close() waits forever.
    const closed = new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
    this.server?.closeAllConnections();
    await closed;
  }
}
