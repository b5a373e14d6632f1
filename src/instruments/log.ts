import { Writable } from 'node:stream';
import pino from 'pino';
import { redact } from '../redact.js';

export type Logger = pino.Logger;

const levelNames: Record<number, string> = { 10: 'trace', 20: 'debug', 30: 'info', 40: 'warn', 50: 'error', 60: 'fatal' };
const hidden = new Set(['level', 'time', 'pid', 'hostname', 'msg', 'name']);

/** A one-line bar redrawn in place: `snapshot ▕██████░░░░▏ 61%  412,000/675,000 rows  38,000/s  ETA 7 s`. */
function progressBar(entry: Record<string, unknown>): string {
  const done = Number(entry.done);
  const total = Number(entry.total) || done;
  const width = 30;
  const filled = total > 0 ? Math.round((width * done) / total) : 0;
  const eta = entry.etaSeconds === null || entry.etaSeconds === undefined ? '' : `  ETA ${String(entry.etaSeconds)} s`;
  return `${String(entry.table)} snapshot ▕${'█'.repeat(filled)}${'░'.repeat(width - filled)}▏ ${Math.round((100 * done) / Math.max(1, total))}%  ${done.toLocaleString('en')}/${total.toLocaleString('en')} rows  ${Number(entry.rowsPerSecond).toLocaleString('en')}/s${eta}`;
}

/** pino's JSON lines, reformatted as short readable lines for a person at a terminal. */
function terminalStream(out: NodeJS.WriteStream): Writable {
  let barShown = false;
  return new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of redact(chunk.toString()).split('\n')) {
        if (!line) continue;
        const entry = JSON.parse(line) as Record<string, unknown>;
        if (typeof entry.msg === 'string' && entry.msg.startsWith('snapshot progress')) {
          out.write(`\r\x1b[K${progressBar(entry)}`);
          barShown = true;
          continue;
        }
        if (barShown) out.write('\n');
        barShown = false;
        const time = new Date(entry.time as number).toISOString().slice(11, 19);
        const level = levelNames[entry.level as number] ?? 'info';
        const fields = Object.entries(entry)
          .filter(([k]) => !hidden.has(k))
          .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
          .join(' ');
        out.write(`${time} ${level === 'info' ? '' : level.toUpperCase() + ' '}${entry.msg as string}${fields ? '  ' + fields : ''}\n`);
      }
      done();
    },
  });
}

/** JSON lines when piped (for machines), readable lines on a terminal; PGTUNNEL_LOG_FORMAT overrides. Both redacted. */
export function createLogger(name = 'pgtunnel'): Logger {
  const format = process.env.PGTUNNEL_LOG_FORMAT ?? (process.stdout.isTTY ? 'pretty' : 'json');
  const level = process.env.PGTUNNEL_LOG_LEVEL ?? 'info';
  if (format === 'pretty') return pino({ name, level }, terminalStream(process.stdout));
  const out = pino.destination({ dest: 1, sync: true });
  // Every line is redacted as written, whatever field a URL or an error message came in.
  return pino({ name, level, base: undefined }, { write: (line: string) => out.write(redact(line)) });
}
