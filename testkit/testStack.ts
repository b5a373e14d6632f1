import { rmSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { createLogger } from '../src/instruments/log.js';
import { LocalStack, type StackPorts } from '../src/stack/localStack.js';
import { query } from './query.js';

function bindable(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

/**
 * A free port below Linux's ephemeral range (32768+): there, a client that keeps reconnecting to a
 * stopped broker can be handed the broker's own port as its local port and connect to itself,
 * taking the port the restarted broker needs.
 */
async function freePort(): Promise<number> {
  for (;;) {
    const port = 20000 + Math.floor(Math.random() * 12000);
    if (await bindable(port)) return port;
  }
}

/** Words of test file names that need the schema registry: the test stack starts one for them (Apicurio takes ~30 s and ~300 MB). */
export const registryTestWords = ['registry', 'avro', 'jsonSchema', 'interop', 'python', 'debezium', 'wireFuzz'];

export function needsRegistry(files: string[]): boolean {
  return files.some((f) => registryTestWords.some((w) => path.basename(f).toLowerCase().includes(w.toLowerCase())));
}

/**
 * A fresh embedded stack on free loopback ports under `<home>/<name>`, apart from the default stack; with `registry`, a schema
 * registry too. With `fsync: false` (the test suite's stack) its PostgreSQL clusters skip fsync: a killed process loses
 * nothing by it (only an operating-system crash would), and each DROP DATABASE's forced checkpoint then costs ~0.1 s, not
 * ~1 s. Benchmarks keep fsync, as a user's database does.
 */
export async function startTestStack(
  home: string,
  name = 'test-stack',
  options: { secure?: boolean; registry?: boolean; fsync?: boolean; registryBeside?: boolean } = {},
): Promise<{ stack: LocalStack; env: Record<string, string>; registryReady?: Promise<void> }> {
  const root = path.join(home, name);
  rmSync(root, { recursive: true, force: true });
  const ports: StackPorts = { sourcePort: await freePort(), targetPort: await freePort(), kafkaPort: await freePort(), controllerPort: await freePort() };
  if (options.registry) Object.assign(ports, { registryPort: await freePort(), registryManagementPort: await freePort() });
  const stack = new LocalStack(home, createLogger(name), ports, root, { secure: options.secure });
  // registryBeside (the suite's): the registry (30-60 s of journal replay) starts while the first files run; the files
  // that use it wait for it (test/helpers/wireBytes.ts registryAnswers)
  const beside = options.registry === true && options.registryBeside === true;
  await stack.up('postgres', 'postgres', options.registry === true && !beside);
  const env = stackEnv(ports, root);
  // the plain stack asks for its password: this process's clients (a bench's, the suite's) take it from PGPASSWORD, as libpq's do
  if (stack.password) {
    env.PGPASSWORD = stack.password.value;
    process.env.PGPASSWORD = env.PGPASSWORD;
  }
  // ALTER SYSTEM keeps it across the restarts the chaos test makes
  if (options.fsync === false) {
    for (const server of [env.PGTUNNEL_TEST_SOURCE_SERVER!, env.PGTUNNEL_TEST_TARGET_SERVER!]) {
      await query(`${server}/postgres`, 'ALTER SYSTEM SET fsync = off');
      await query(`${server}/postgres`, 'SELECT pg_reload_conf()');
    }
  }
  return { stack, env, ...(beside ? { registryReady: stack.registry.start().then(() => {}) } : {}) };
}

/** A free loopback port, for a test's own service. */
export { freePort };

export function stackEnv(ports: StackPorts, root: string): Record<string, string> {
  return {
    ...(ports.registryPort ? { PGTUNNEL_TEST_REGISTRY_URL: `http://127.0.0.1:${ports.registryPort}/apis/ccompat/v7`, PGTUNNEL_TEST_REGISTRY_MANAGEMENT_PORT: String(ports.registryManagementPort) } : {}),
    PGTUNNEL_TEST_SOURCE_SERVER: `postgres://postgres@127.0.0.1:${ports.sourcePort}`,
    PGTUNNEL_TEST_TARGET_SERVER: `postgres://postgres@127.0.0.1:${ports.targetPort}`,
    PGTUNNEL_TEST_BROKERS: `127.0.0.1:${ports.kafkaPort}`,
    PGTUNNEL_TEST_CONTROLLER_PORT: String(ports.controllerPort),
    PGTUNNEL_TEST_STACK_ROOT: root,
  };
}

/** The running test stack, as the test process sees it through its environment. */
export function currentTestStack(): LocalStack {
  const portOf = (url: string) => Number(new URL(url).port);
  const root = process.env.PGTUNNEL_TEST_STACK_ROOT!;
  const ports: StackPorts = {
    sourcePort: portOf(process.env.PGTUNNEL_TEST_SOURCE_SERVER!),
    targetPort: portOf(process.env.PGTUNNEL_TEST_TARGET_SERVER!),
    kafkaPort: Number(process.env.PGTUNNEL_TEST_BROKERS!.split(':')[1]),
    controllerPort: Number(process.env.PGTUNNEL_TEST_CONTROLLER_PORT),
    ...(process.env.PGTUNNEL_TEST_REGISTRY_URL
      ? { registryPort: portOf(process.env.PGTUNNEL_TEST_REGISTRY_URL), registryManagementPort: Number(process.env.PGTUNNEL_TEST_REGISTRY_MANAGEMENT_PORT) }
      : {}),
  };
  return new LocalStack(path.resolve(root, '..'), createLogger('test-stack'), ports, root);
}
