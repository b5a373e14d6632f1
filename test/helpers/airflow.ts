import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const exampleDir = fileURLToPath(new URL('../../../examples/airflow/', import.meta.url));
const requirements = path.join(exampleDir, 'requirements.txt');

/** Runs a command to completion; its output is kept, and echoed to stderr when `echo` is set. */
export function run(command: string, args: string[], env: Record<string, string | undefined> = process.env, timeoutMs = 600_000, echo = false): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    const keep = (d: Buffer) => {
      output += d.toString();
      if (echo) process.stderr.write(d);
    };
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${command} ${args.join(' ')} did not finish within ${timeoutMs} ms\n${output.slice(-4000)}`));
    }, timeoutMs);
    child.once('error', reject);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, output });
    });
  });
}

/**
 * A Python virtual environment under `<home>/airflow` with the pinned Airflow (examples/airflow/requirements.txt):
 * installed once (about 85 s and 300 MB), reused while the pin file is unchanged — by every clone when set-up linked
 * <home>/airflow into the user's cache (scripts/setup.sh). Returns its bin directory.
 */
export async function airflowVenv(home: string): Promise<string> {
  // the real path: the venv's scripts name the folder it was made in, and <home>/airflow may be set-up's link into the user's cache
  mkdirSync(path.join(home, 'airflow'), { recursive: true });
  const venv = path.join(realpathSync(path.join(home, 'airflow')), 'venv');
  const stamp = path.join(venv, 'pgtunnel-requirements.txt');
  const pins = readFileSync(requirements, 'utf8');
  const bin = path.join(venv, 'bin');
  if (existsSync(path.join(bin, 'airflow')) && existsSync(stamp) && readFileSync(stamp, 'utf8') === pins) return bin;
  const started = Date.now();
  process.stderr.write(`airflow: installing ${pins.split('\n').filter((l) => l && !l.startsWith('#')).join(' ')} into ${venv} (once: about 85 s and 300 MB; reused by later runs)\n`);
  rmSync(venv, { recursive: true, force: true });
  const python = process.env.PGTUNNEL_PYTHON ?? 'python3';
  const made = await run(python, ['-m', 'venv', venv]);
  if (made.code !== 0) throw new Error(`airflow: \`${python} -m venv\` failed (install python3-venv, or set PGTUNNEL_PYTHON):\n${made.output}`);
  // pip's own lines (Collecting …, Installing …) are the progress
  const pip = await run(path.join(bin, 'pip'), ['install', '--disable-pip-version-check', '--progress-bar', 'off', '-r', requirements], process.env, 900_000, true);
  if (pip.code !== 0) throw new Error(`airflow: pip install failed:\n${pip.output.slice(-4000)}`);
  writeFileSync(stamp, pins);
  process.stderr.write(`airflow: installed in ${Math.round((Date.now() - started) / 1000)} s\n`);
  return bin;
}
