/**
 * The one redaction of pgtunnel: every URL, error message, log line, status report, HTTP answer, run file
 * and dead-letter header passes through `redact` before it leaves the process.
 */

const hidden = '***';

/** Query parameters (URL) and conninfo keys whose values are secrets; sslcert/sslrootcert paths stay visible. */
const secretKeys = 'password|passwd|pwd|sslpassword|sslkey|token|secret|access_token|api_key|apikey';
const secretParam = new RegExp(`([?&;](?:${secretKeys})=)[^&#\\s"'<>\`]*`, 'gi');
// conninfo (`password=x host=y`); not after ?/&/; (URL parameters, done above) nor inside a word.
const secretKeyValue = new RegExp(`(?<![?&;\\w])((?:${secretKeys})\\s*=\\s*)('(?:[^'\\\\]|\\\\.)*'|[^\\s"'<>\`]+)`, 'gi');
// A URL runs to the next blank or quote; a password may hold @ : / ? # unencoded, so the userinfo ends at the
// LAST @ that is followed by a host and then the end of the authority.
const urlToken = /\b[A-Za-z][A-Za-z0-9+.-]*:\/\/[^\s"'<>`]+/g;
const hostAfterAt = /@[A-Za-z0-9.\-_~%!$]*(?:\[[0-9A-Fa-f:.]+\])?(?::\d*)?(?:,[^/?#@\s]*)*(?=[/?#)\],;]|$)/g;

/** Literal secrets (passwords from env or files, the HTTP token) hidden wherever they would appear. */
const secrets = new Set<string>();
const minSecretLength = 8;

/** Registers a secret value, also in its JSON- and URL-escaped spellings; short ones are not (they would hide common words). */
export function registerSecret(value: string | undefined): void {
  if (!value || value.length < minSecretLength) return;
  for (const form of [value, JSON.stringify(value).slice(1, -1), encodeURIComponent(value)]) secrets.add(form);
}

function redactUserinfo(url: string): string {
  const scheme = url.indexOf('://') + 3;
  let at = -1;
  for (const m of url.slice(scheme).matchAll(hostAfterAt)) at = scheme + m.index;
  // No host-like end found: still treat everything up to the last @ as user info (hide too much, never too little).
  if (at < 0) at = url.lastIndexOf('@');
  if (at < scheme) return url;
  const userinfo = url.slice(scheme, at);
  const colon = userinfo.indexOf(':');
  if (colon < 0) return url;
  return `${url.slice(0, scheme)}${userinfo.slice(0, colon)}:${hidden}${url.slice(at)}`;
}

/** Hides passwords in URLs (user info, secret parameters), conninfo strings and registered secrets within any text. */
export function redact(text: string): string {
  let out = text.replace(urlToken, (url) => redactUserinfo(url).replace(secretParam, `$1${hidden}`));
  out = out.replace(secretKeyValue, `$1${hidden}`);
  for (const s of secrets) if (out.includes(s)) out = out.split(s).join(hidden);
  return out;
}

/** An error's message, redacted: what a caller may print or send. */
export function redactError(err: unknown): string {
  return redact(err instanceof Error ? err.message : String(err));
}
