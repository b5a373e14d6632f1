import { createHash, timingSafeEqual } from 'node:crypto';
import type http from 'node:http';
import { isIP } from 'node:net';

/** 127.0.0.0/8, ::1 and localhost: reachable only from this machine. */
export function isLoopback(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  return h === 'localhost' || h === '::1' || (isIP(h) === 4 && h.startsWith('127.'));
}

/** The host part of a Host header, lower case, IPv6 in brackets: `[::1]:8080` → `[::1]`. */
function hostOf(header: string): string {
  const h = header.trim().toLowerCase();
  if (h.startsWith('[')) return h.slice(0, h.indexOf(']') + 1);
  return h.replace(/:\d*$/, '');
}

const bracketed = (host: string) => (isIP(host) === 6 ? `[${host.toLowerCase()}]` : host.toLowerCase());
const digest = (text: string) => createHash('sha256').update(text).digest();

/**
 * Who may read what from the HTTP port. The Host allow-list stops DNS rebinding (a web page on another
 * site resolving its own name to 127.0.0.1); the token, when set, guards the dashboard and /api/*; dead-letter
 * row data is served only behind the token, or without one only on a loopback bind.
 */
export class HttpAccess {
  private readonly hosts: Set<string>;
  readonly loopbackBind: boolean;

  constructor(bindHost: string, allowedHosts: string[], private readonly token: string | undefined) {
    this.hosts = new Set(['localhost', '127.0.0.1', '[::1]', bindHost, ...allowedHosts].map(bracketed));
    this.loopbackBind = isLoopback(bindHost);
  }

  hostAllowed(req: http.IncomingMessage): boolean {
    return req.headers.host !== undefined && this.hosts.has(hostOf(req.headers.host));
  }

  /** True without a configured token; else the request carries it as `Authorization: Bearer` or `?token=`. */
  authorized(req: http.IncomingMessage, query: URLSearchParams): boolean {
    if (this.token === undefined) return true;
    const header = req.headers.authorization?.match(/^Bearer\s+(\S+)$/i)?.[1];
    const given = header ?? query.get('token') ?? '';
    return timingSafeEqual(digest(given), digest(this.token));
  }

  /** Keys and values of dead letters: behind the token, or (no token configured) only on a loopback bind. */
  get rowData(): boolean {
    return this.token !== undefined || this.loopbackBind;
  }
}
