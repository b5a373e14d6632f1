/**
 * The one redaction of pgtunnel: every URL, error message, log line, status report, HTTP answer, run file
 * and dead-letter header passes through `redact` before it leaves the process.
 *
 * Text here can come from records (a forged key echoed by an error), so every step is linear in the text:
 * URLs are found by scanning for "://" and their authority is read by hand, and the remaining patterns
 * have no nested or overlapping quantifiers.
 */

const hidden = '***';

/** Query parameters (URL) and conninfo keys whose values are secrets; sslcert/sslrootcert paths stay visible. */
const secretKeys = 'password|passwd|pwd|pgpassword|sslpassword|sslkey|token|secret|access_token|api_key|apikey';
const secretParam = new RegExp(`([?&;](?:${secretKeys})=)[^&#\\s"'<>\`]*`, 'gi');
// A value: single-quoted (conninfo escapes), double-quoted (YAML, shell) or bare up to a blank or quote.
const secretValue = `('(?:[^'\\\\]|\\\\.)*'|"(?:[^"\\\\]|\\\\.)*"|[^\\s"'<>\`]+)`;
// conninfo `password=x`, env `PGPASSWORD=x` and YAML `password: x`; not after ?/&/; (URL parameters) nor inside a word.
const secretKeyValue = new RegExp(`(?<![?&;\\w])((?:${secretKeys})(?:[ \\t]*=[ \\t]*|:[ \\t]+))${secretValue}`, 'gi');
// env-style names ending in a secret word: PGTUNNEL_TARGET_PASSWORD=x, REGISTRY_TOKEN=x
const envSecret = /\b([A-Za-z][A-Za-z0-9]*(?:_[A-Za-z0-9]+)*?_(?:password|passwd|secret|token|key)[ \t]*=[ \t]*)([^\s"'<>`]+)/gi;
// JSON `"password":"x"`
const jsonSecret = new RegExp(`("(?:${secretKeys}|[A-Za-z0-9_]*_password)"\\s*:\\s*")(?:[^"\\\\]|\\\\.)*(?=")`, 'gi');

/** Literal secrets (passwords from env or files, the HTTP token, the mask salt) hidden wherever they would appear. */
const secrets = new Set<string>();
const minSecretLength = 8;

/** Registers a secret value, also in its JSON- and URL-escaped spellings; short ones are not (they would hide common words). */
export function registerSecret(value: string | undefined): void {
  if (!value || value.length < minSecretLength) return;
  for (const form of [value, JSON.stringify(value).slice(1, -1), encodeURIComponent(value)]) secrets.add(form);
}

/** Longest text a message, reason or header keeps: a record's 200 KB key must not be carried (or scanned) whole. */
export const maxMessageChars = 8192;

/** The text cut to `max` characters, saying how much was left out. */
export function capText(text: string, max = maxMessageChars): string {
  return text.length <= max ? text : `${text.slice(0, max)}… (${text.length - max} more characters)`;
}

const urlEnd = new Set([' ', '\t', '\n', '\r', '\f', '\v', '"', "'", '<', '>', '`']);
const maxSchemeLength = 64;

function isSchemeChar(c: number): boolean {
  return (c >= 97 && c <= 122) || (c >= 65 && c <= 90) || (c >= 48 && c <= 57) || c === 43 || c === 46 || c === 45;
}

function isLetter(c: number): boolean {
  return (c >= 97 && c <= 122) || (c >= 65 && c <= 90);
}

function isWordChar(c: number): boolean {
  return isLetter(c) || (c >= 48 && c <= 57) || c === 95;
}

/** Where a URL's scheme starts, for the "://" at `sep`; -1 when no scheme precedes it. */
function schemeStart(text: string, sep: number, floor: number): number {
  let start = sep;
  while (start > floor && sep - start < maxSchemeLength && isSchemeChar(text.charCodeAt(start - 1))) start--;
  // a scheme too long to be one is still taken for one: hide too much, never too little
  const cut = start > floor && isSchemeChar(text.charCodeAt(start - 1));
  // else the first letter at a word boundary, as \b[A-Za-z] would find it
  for (let p = start; p < sep; p++) {
    if (isLetter(text.charCodeAt(p)) && (cut || p === 0 || !isWordChar(text.charCodeAt(p - 1)))) return p;
  }
  return -1;
}

const hostChars = /[A-Za-z0-9.\-_~%!$]/;
const authorityEnd = new Set(['/', '?', '#', ')', ']', ',', ';']);

/** Whether the @ at `at` is followed by a host (name or [IPv6]), an optional port, then the end of the authority. */
function hostFollows(url: string, at: number): boolean {
  let j = at + 1;
  while (j < url.length && hostChars.test(url[j]!)) j++;
  if (url[j] === '[') {
    let k = j + 1;
    while (k < url.length && /[0-9A-Fa-f:.]/.test(url[k]!)) k++;
    if (k > j + 1 && url[k] === ']') j = k + 1;
  }
  if (url[j] === ':') {
    j++;
    while (j < url.length && url.charCodeAt(j) >= 48 && url.charCodeAt(j) <= 57) j++;
  }
  return j === url.length || authorityEnd.has(url[j]!);
}

/** Schemes whose user name is an account name, kept visible; elsewhere (https://TOKEN@host) it may be the secret. */
const namedUserSchemes = new Set(['postgres', 'postgresql']);

function redactUserinfo(url: string): string {
  const scheme = url.indexOf('://') + 3;
  // A password may hold @ : / ? # unencoded: the user info ends at the LAST @ followed by a host and the end of the authority.
  let at = -1;
  for (let i = url.indexOf('@', scheme); i >= 0; i = url.indexOf('@', i + 1)) if (hostFollows(url, i)) at = i;
  // No host-like end found: still treat everything up to the last @ as user info (hide too much, never too little).
  if (at < 0) at = url.lastIndexOf('@');
  if (at < scheme) return url;
  const userinfo = url.slice(scheme, at);
  const colon = userinfo.indexOf(':');
  if (colon < 0) {
    if (namedUserSchemes.has(url.slice(0, scheme - 3).toLowerCase())) return url;
    return `${url.slice(0, scheme)}${hidden}${url.slice(at)}`;
  }
  return `${url.slice(0, scheme)}${userinfo.slice(0, colon)}:${hidden}${url.slice(at)}`;
}

/** Each URL in the text (scheme://… up to a blank or quote) replaced by `each(url)`, in one pass. */
function replaceUrls(text: string, each: (url: string) => string): string {
  let out = '';
  let done = 0;
  for (let sep = text.indexOf('://'); sep >= 0; sep = text.indexOf('://', sep + 3)) {
    const start = schemeStart(text, sep, done);
    if (start < 0) continue;
    let end = sep + 3;
    while (end < text.length && !urlEnd.has(text[end]!)) end++;
    if (end === sep + 3) continue;
    out += text.slice(done, start) + each(text.slice(start, end));
    done = end;
    sep = end - 3;
  }
  return done === 0 ? text : out + text.slice(done);
}

/** Hides passwords in URLs (user info, secret parameters), conninfo, env and JSON/YAML keys, and registered secrets within any text. */
export function redact(text: string): string {
  let out = replaceUrls(text, (url) => redactUserinfo(url).replace(secretParam, `$1${hidden}`));
  out = out.replace(secretKeyValue, `$1${hidden}`).replace(envSecret, `$1${hidden}`).replace(jsonSecret, `$1${hidden}`);
  for (const s of secrets) if (out.includes(s)) out = out.split(s).join(hidden);
  return out;
}

/** An error's message, redacted: what a caller may print or send. */
export function redactError(err: unknown): string {
  return redact(err instanceof Error ? err.message : String(err));
}
