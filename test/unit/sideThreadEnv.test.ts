import assert from 'node:assert/strict';
import { once } from 'node:events';
import { test } from 'node:test';
import { Worker } from 'node:worker_threads';
import { sideThreadEnv } from '../../src/pipeline/sideThread.js';

/** The compile cache directory a worker started with this env sees (undefined: the cache is off there). */
async function workerCacheDir(env: NodeJS.ProcessEnv): Promise<string | undefined> {
  const worker = new Worker("require('node:worker_threads').parentPort.postMessage(require('node:module').getCompileCacheDir())", { eval: true, env });
  const [dir] = (await once(worker, 'message')) as [string | undefined];
  await worker.terminate();
  return dir;
}

test('a side thread loads its modules with the compile cache on', async () => {
  const { NODE_COMPILE_CACHE: _dir, NODE_DISABLE_COMPILE_CACHE: _off, ...plain } = process.env;
  const env = sideThreadEnv(plain);
  assert.equal(env.PATH, plain.PATH, 'the rest of the environment is the process\'s');
  assert.ok(await workerCacheDir(env), 'the worker has a compile cache');
  assert.equal(await workerCacheDir(plain), undefined, 'without it a worker has none (enabling it on the main thread does not reach workers)');
});

test('a user\'s compile cache choice stands', () => {
  const chosen = { NODE_COMPILE_CACHE: '/var/cache/pgtunnel-node' };
  assert.equal(sideThreadEnv(chosen).NODE_COMPILE_CACHE, '/var/cache/pgtunnel-node');
  const off = { NODE_DISABLE_COMPILE_CACHE: '1' };
  assert.equal(sideThreadEnv(off).NODE_COMPILE_CACHE, undefined);
});
