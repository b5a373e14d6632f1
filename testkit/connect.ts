import { spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { stopProcess, tail } from '../src/stack/processes.js';
import { freePort } from './testStack.js';

const mainClass = 'org.apache.kafka.connect.cli.ConnectStandalone';

export interface ConnectorStatus {
  connector: { state: string; trace?: string };
  tasks: { id: number; state: string; trace?: string }[];
}

/**
 * A Kafka Connect standalone worker (scripts/connect.sh resolves it with Debezium's connectors) against a
 * given broker, its REST API on a free loopback port, its log in `<dir>/connect.log`. Connectors are
 * added through REST, so one worker serves a whole test file.
 */
export class ConnectWorker {
  readonly logFile: string;
  private pid: number | undefined;

  private constructor(readonly dir: string, readonly url: string) {
    this.logFile = path.join(dir, 'connect.log');
  }

  /** Starts a worker and waits for its REST API; `heap` is -Xmx (Connect's own default is 2 GB). */
  static async start(home: string, dir: string, brokers: string, options: { heap?: string; timeoutMs?: number } = {}): Promise<ConnectWorker> {
    const connectHome = path.join(home, 'connect');
    const libs = path.join(connectHome, 'libs');
    if (!existsSync(libs) || !readdirSync(libs).some((f) => f.startsWith('connect-runtime-'))) {
      throw new Error(`Kafka Connect is missing from ${libs}: run \`bash scripts/setup.sh --connect\` (npm test does)`);
    }
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
    const port = await freePort();
    const worker = new ConnectWorker(dir, `http://127.0.0.1:${port}`);
    writeFileSync(path.join(dir, 'worker.properties'), [
      `bootstrap.servers=${brokers}`,
      `listeners=http://127.0.0.1:${port}`,
      'rest.advertised.host.name=127.0.0.1',
      `plugin.path=${path.join(connectHome, 'plugins')}`,
      // plugins found through their META-INF/services entries only: a 3 s start instead of 27 s
      'plugin.discovery=service_load',
      `offset.storage.file.filename=${path.join(dir, 'offsets')}`,
      'offset.flush.interval.ms=1000',
      'key.converter=org.apache.kafka.connect.json.JsonConverter',
      'value.converter=org.apache.kafka.connect.json.JsonConverter',
      '',
    ].join('\n'));
    writeFileSync(path.join(dir, 'log4j2.properties'), ['status = warn', 'appender.out.type = Console', 'appender.out.name = out',
      'appender.out.layout.type = PatternLayout', 'appender.out.layout.pattern = [%d] %p %m (%c)%n', 'rootLogger.level = INFO',
      'rootLogger.appenderRef.out.ref = out', 'logger.kafka.name = org.apache.kafka', 'logger.kafka.level = WARN',
      'logger.runtime.name = org.apache.kafka.connect.runtime.WorkerTask', 'logger.runtime.level = INFO', ''].join('\n'));
    const out = openSync(worker.logFile, 'a');
    const child = spawn('java', [`-Xmx${options.heap ?? '512m'}`, '-Djava.awt.headless=true', `-Dlog4j2.configurationFile=${path.join(dir, 'log4j2.properties')}`,
      '-cp', `${libs}/*`, mainClass, path.join(dir, 'worker.properties')], { detached: true, stdio: ['ignore', out, out] });
    closeSync(out);
    child.unref();
    worker.pid = child.pid;
    let exited = false;
    child.once('exit', () => (exited = true));
    const deadline = Date.now() + (options.timeoutMs ?? 90_000);
    for (;;) {
      if (exited) throw new Error(`Kafka Connect exited at start; its log ends:\n${tail(worker.logFile)}`);
      if (await fetch(`${worker.url}/connectors`, { signal: AbortSignal.timeout(2000) }).then((r) => r.ok, () => false)) return worker;
      if (Date.now() > deadline) {
        await worker.stop();
        throw new Error(`Kafka Connect did not answer on ${worker.url} in time; its log ends:\n${tail(worker.logFile)}`);
      }
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  private async rest(method: string, route: string, body?: unknown): Promise<unknown> {
    const res = await fetch(`${this.url}${route}`, {
      method, headers: { 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body), signal: AbortSignal.timeout(30_000),
    });
    const text = await res.text();
    if (!res.ok) throw new Error(`Connect ${method} ${route}: HTTP ${res.status} ${text}`);
    return text ? JSON.parse(text) : undefined;
  }

  /** Creates (or reconfigures) a connector and waits until it and its tasks run; a failed task fails with its trace. */
  async addConnector(name: string, config: Record<string, string | number | boolean>, timeoutMs = 60_000): Promise<void> {
    await this.rest('PUT', `/connectors/${encodeURIComponent(name)}/config`, Object.fromEntries(Object.entries(config).map(([k, v]) => [k, String(v)])));
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const status = await this.status(name).catch(() => undefined);
      const failed = status && [status.connector, ...status.tasks].find((s) => s.state === 'FAILED');
      if (failed) throw new Error(`connector ${name} failed: ${failed.trace ?? '(no trace)'}`);
      if (status?.connector.state === 'RUNNING' && status.tasks.length > 0 && status.tasks.every((t) => t.state === 'RUNNING')) return;
      if (Date.now() > deadline) throw new Error(`connector ${name} not running after ${timeoutMs} ms: ${JSON.stringify(status)}; log ends:\n${tail(this.logFile)}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  status(name: string): Promise<ConnectorStatus> {
    return this.rest('GET', `/connectors/${encodeURIComponent(name)}/status`) as Promise<ConnectorStatus>;
  }

  /** A task that failed after it started (e.g. on a record it cannot write), with its trace. */
  async failure(name: string): Promise<string | undefined> {
    const status = await this.status(name);
    return [status.connector, ...status.tasks].find((s) => s.state === 'FAILED')?.trace;
  }

  async removeConnector(name: string): Promise<void> {
    await this.rest('DELETE', `/connectors/${encodeURIComponent(name)}`);
  }

  /** Peak resident set size of the worker's JVM so far, in MB (for the bench). */
  peakRssMb(): number {
    const status = this.pid === undefined ? '' : readFileSync(`/proc/${this.pid}/status`, 'utf8');
    const m = status.match(/VmHWM:\s+(\d+) kB/);
    return m ? Number(m[1]) / 1024 : NaN;
  }

  async stop(): Promise<void> {
    const pid = this.pid;
    if (pid !== undefined) await stopProcess(pid, mainClass, 20_000);
    this.pid = undefined;
  }
}

/**
 * Converter settings for Apicurio's Avro converter in the Confluent wire format: 4-byte schema ids as the
 * Confluent-compatible API hands them out (Apicurio's content ids), no headers. `ccompatUrl` is the
 * registry's /apis/ccompat/v7 URL; the converter talks to the same registry's v2 API. `register` lets a
 * source connector register its schemas.
 */
export function apicurioAvroConverter(side: 'key' | 'value', ccompatUrl: string, register = false): Record<string, string | boolean> {
  const p = `${side}.converter`;
  return {
    [p]: 'io.apicurio.registry.utils.converter.AvroConverter',
    [`${p}.apicurio.registry.url`]: ccompatUrl.replace(/\/apis\/ccompat\/v7\/?$/, '/apis/registry/v2'),
    [`${p}.apicurio.registry.as-confluent`]: true,
    [`${p}.apicurio.registry.use-id`]: 'contentId',
    [`${p}.apicurio.registry.headers.enabled`]: false,
    ...(register ? { [`${p}.apicurio.registry.auto-register`]: true, [`${p}.apicurio.registry.find-latest`]: true } : {}),
  };
}
