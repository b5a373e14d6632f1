import assert from 'node:assert/strict';
import { query, type TunnelEnv } from './services.js';
import { runCli } from './tunnelProcess.js';

export interface ListedLetter {
  errorClass: string;
  rule?: string;
  key: string;
  message: string;
  headers: Record<string, string>;
}

/** The dead letters `pgtunnel dlq list --json` shows (unresolved ones unless `--all`). */
export async function letters(env: Record<string, string>, args: string[] = []): Promise<ListedLetter[]> {
  const result = await runCli(['dlq', 'list', '--json', ...args], env);
  assert.equal(result.code, 0, result.stderr);
  return JSON.parse(result.stdout);
}

export async function targetRow(db: TunnelEnv, id: number): Promise<{ salary: number } | undefined> {
  return (await query<{ salary: number }>(db.targetUrl, 'SELECT salary FROM employees WHERE emp_id = $1', [id]))[0];
}

export const goodEmployee = (id: number) => `INSERT INTO employees VALUES (${id}, 'Good', 'One', '2010-01-01', 'Oslo', 50000)`;
