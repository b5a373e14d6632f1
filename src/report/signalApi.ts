import type http from 'node:http';
import type { TunnelConfig } from '../config/load.js';
import { askForSnapshot, cancelSnapshotsOf } from '../capture/signals.js';
import { TunnelError, classify, describeError } from '../errors.js';

export const signalPaths = new Set(['/api/snapshot', '/api/snapshot/cancel']);

const maxBody = 64 * 1024;

async function body(req: http.IncomingMessage): Promise<Record<string, unknown>> {
  let text = '';
  for await (const part of req) {
    text += String(part);
    if (text.length > maxBody) throw new TunnelError('PGT_USAGE', 'the request body is larger than 64 KiB', { errorClass: 'config' });
  }
  try {
    const parsed: unknown = JSON.parse(text);
    if (parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed)) return parsed as Record<string, unknown>;
  } catch {
    // answered below, as any body that is not an object
  }
  throw new TunnelError('PGT_USAGE', 'the request body is not a JSON object', { errorClass: 'config', hint: 'send {"table": "employees", "where": "emp_id < 100"}' });
}

/**
 * `POST /api/snapshot {"table", "where"?}` and `POST /api/snapshot/cancel {"table"}`: what `pgtunnel snapshot
 * --table` does. The predicate is SQL the producer runs in the source, so these answer only behind a
 * configured token (the caller already passed it), never on a tokenless dashboard, loopback or not.
 */
export async function signalRequest(req: http.IncomingMessage, path: string, config: TunnelConfig): Promise<{ status: number; body: object }> {
  if (config.httpToken === undefined) return { status: 403, body: { error: 'signals need a token: set httpToken (PGTUNNEL_HTTP_TOKEN), or run pgtunnel snapshot --table on a machine that reaches the source' } };
  if (req.method !== 'POST') return { status: 405, body: { error: `${path} takes POST with a JSON body` } };
  if (!/^application\/json\b/i.test(req.headers['content-type'] ?? '')) return { status: 415, body: { error: 'send Content-Type: application/json' } };
  try {
    const request = await body(req);
    const { table, where } = request;
    if (typeof table !== 'string' || (where !== undefined && where !== null && typeof where !== 'string')) {
      throw new TunnelError('PGT_USAGE', '"table" (a string) is required, "where" is a string when given', { errorClass: 'config' });
    }
    if (path === '/api/snapshot/cancel') return { status: 200, body: await cancelSnapshotsOf(config.sourceUrl, config.tables, table) };
    return { status: 202, body: await askForSnapshot(config.sourceUrl, config.tables, table, (where as string | undefined) ?? null) };
  } catch (err) {
    const e = classify(err);
    return { status: e.errorClass === 'config' ? 400 : 503, body: { error: describeError(e), code: e.code, hint: e.hint ?? null } };
  }
}
