import { readFileSync } from 'node:fs';
import path from 'node:path';
import { registerSecret } from '../redact.js';

export interface PasswordSources {
  password?: string;
  passwordFile?: string;
}

function urlPassword(url: string): string | undefined {
  try {
    const password = new URL(url).password;
    return password ? decodeURIComponent(password) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The connection URL with the password from `…Password` / `…PasswordFile` (env or yaml) put in; the
 * password (and one written into the URL) is registered with the redaction, so it is never printed.
 */
export function withPassword(url: string, side: 'source' | 'target', given: PasswordSources, cwd: string, errors: string[]): string {
  registerSecret(urlPassword(url));
  let password = given.password;
  if (given.passwordFile !== undefined) {
    const file = path.resolve(cwd, given.passwordFile);
    try {
      // A trailing newline is how editors and `echo` write a one-line file; it is not part of the password.
      password = readFileSync(file, 'utf8').replace(/\r?\n$/, '');
    } catch (err) {
      errors.push(`${side}PasswordFile: cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? 'error'}) — fix: point PGTUNNEL_${side.toUpperCase()}_PASSWORD_FILE at a readable file holding only the password`);
      return url;
    }
  }
  if (password === undefined) return url;
  registerSecret(password);
  try {
    const u = new URL(url);
    u.password = encodeURIComponent(password);
    return u.href;
  } catch {
    errors.push(`${side}Url: cannot take a password from ${side}Password(File) — fix: write it as postgres://user@host:5432/dbname`);
    return url;
  }
}

/**
 * The schema registry's password from `registryPassword` / `registryPasswordFile` (yaml) or
 * PGTUNNEL_REGISTRY_PASSWORD(_FILE); registered with the redaction so it never prints.
 */
export function registryPassword(given: PasswordSources, cwd: string, errors: string[]): string | undefined {
  registerSecret(given.password);
  if (given.passwordFile === undefined) return given.password;
  const file = path.resolve(cwd, given.passwordFile);
  try {
    const password = readFileSync(file, 'utf8').replace(/\r?\n$/, '');
    registerSecret(password);
    return password;
  } catch (err) {
    errors.push(`registryPasswordFile: cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? 'error'}) — fix: point PGTUNNEL_REGISTRY_PASSWORD_FILE at a readable file holding only the password`);
    return undefined;
  }
}
