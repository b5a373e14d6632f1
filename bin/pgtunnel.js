#!/usr/bin/env node
// Under a node older than package.json's config.nodeMinimum (a distribution's `node` behind `npx pgtunnel`), re-run
// this file under the pinned Node.js that set-up fetched into .pgtunnel/.
import { runtimeNode, supported, tooOld } from '../scripts/runtime.mjs';

if (supported(process.versions.node)) {
  // before anything loads: `run` may re-execute itself with the main isolate's heap bounded
  const { capMainHeap } = await import('../dist/src/cli/mainHeap.js');
  await capMainHeap();
  const { main } = await import('../dist/src/cli/main.js');
  // Exit explicitly: a client abandoned at shutdown must not keep the process alive (state is durable).
  process.exit(await main(process.argv));
} else {
  const node = runtimeNode();
  if (!node) {
    console.error(`pgtunnel: ${tooOld()}`);
    process.exit(1);
  }
  const { spawn } = await import('node:child_process');
  const path = await import('node:path');
  const { fileURLToPath } = await import('node:url');
  const { constants } = await import('node:os');
  const env = { ...process.env, PATH: `${path.dirname(node)}${path.delimiter}${process.env.PATH ?? ''}` };
  const child = spawn(node, [fileURLToPath(import.meta.url), ...process.argv.slice(2)], { stdio: 'inherit', env });
  // Ctrl-C reaches the child from the terminal (same process group): forwarding it too would be a second
  // Ctrl-C, which means "exit at once". Signals sent to this process alone are passed on.
  process.on('SIGINT', () => {});
  for (const signal of ['SIGTERM', 'SIGHUP']) process.on(signal, () => child.kill(signal));
  child.on('exit', (code, signal) => process.exit(code ?? 128 + (constants.signals[signal] ?? 0)));
}
