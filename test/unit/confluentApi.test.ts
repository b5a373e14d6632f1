// The registry client against a small local HTTP server speaking the Confluent API's answers (the real
// registry is tested in integration/registry.test.ts); and the registry's configuration keys.
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import { loadConfig } from '../../src/config/load.js';
import { SchemaRegistry } from '../../src/contracts/registry.js';
import { TunnelError } from '../../src/errors.js';
import { redact } from '../../src/redact.js';

interface Seen {
  method: string;
  url: string;
  authorization?: string;
  contentType?: string;
  body: string;
}

/** Answers each request with `answer(method, url)`: [status, body]. */
async function registryServer(t: TestContext, answer: (method: string, url: string) => [number, unknown]): Promise<{ url: string; seen: Seen[] }> {
  const seen: Seen[] = [];
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (d: Buffer) => (body += d.toString()));
    req.on('end', () => {
      seen.push({ method: req.method!, url: req.url!, authorization: req.headers.authorization, contentType: req.headers['content-type'], body });
      const [status, out] = answer(req.method!, req.url!);
      res.writeHead(status, { 'content-type': 'application/vnd.schemaregistry.v1+json' });
      res.end(JSON.stringify(out));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/apis/ccompat/v7`, seen };
}

const notFound: [number, unknown] = [404, { error_code: 40401, message: 'Subject not found.' }];

test('register: a new subject gets BACKWARD first, every request carries the basic-auth header, a known schema asks nothing again', async (t) => {
  const { url, seen } = await registryServer(t, (method) => {
    if (method === 'POST') return [200, { id: 7 }];
    if (method === 'PUT') return [200, { compatibility: 'BACKWARD' }];
    return notFound;
  });
  const registry = new SchemaRegistry({ url, username: 'tunnel', password: 'pa:ss word' });
  assert.equal(await registry.register('orders-value', '{"type":"string"}', 'AVRO'), 7);
  assert.equal(await registry.register('orders-value', '{"type":"string"}', 'AVRO'), 7);
  assert.deepEqual(seen.map((s) => `${s.method} ${s.url}`), [
    'GET /apis/ccompat/v7/subjects/orders-value/versions',
    'GET /apis/ccompat/v7/config/orders-value',
    'PUT /apis/ccompat/v7/config/orders-value',
    'POST /apis/ccompat/v7/subjects/orders-value/versions',
  ]);
  const basic = `Basic ${Buffer.from('tunnel:pa:ss word').toString('base64')}`;
  assert.ok(seen.every((s) => s.authorization === basic));
  assert.deepEqual(JSON.parse(seen[2]!.body), { compatibility: 'BACKWARD' });
  assert.deepEqual(JSON.parse(seen[3]!.body), { schema: '{"type":"string"}' }, 'Avro goes without schemaType, as Confluent\'s clients send it');
  assert.equal(seen[3]!.contentType, 'application/vnd.schemaregistry.v1+json');
  assert.deepEqual(await registry.schemaById(7), { schema: '{"type":"string"}', schemaType: 'AVRO' });
  assert.equal(seen.length, 4, 'the id of a schema it registered is known without asking');
});

test('credentials in the URL become the header; an existing subject keeps its compatibility; JSON Schema names its type', async (t) => {
  const { url, seen } = await registryServer(t, (method, u) => {
    if (u.endsWith('/versions') && method === 'GET') return [200, [2, 1]];
    if (u.includes('/schemas/ids/')) return [200, { schema: '{"type":"object"}', schemaType: 'JSON' }];
    return [200, { id: 3 }];
  });
  const withUser = url.replace('http://', 'http://user:secret-in-url@');
  const registry = new SchemaRegistry({ url: withUser });
  assert.equal(registry.url, url, 'the user info is not part of the requests\' URL');
  assert.equal(redact(`at ${withUser}`), `at ${url.replace('http://', 'http://user:***@')}`);
  assert.equal(await registry.register('x-value', '{"type":"object"}', 'JSON'), 3);
  assert.deepEqual(seen.map((s) => s.method), ['GET', 'POST'], 'no PUT /config for a subject that has versions');
  assert.deepEqual(JSON.parse(seen[1]!.body), { schema: '{"type":"object"}', schemaType: 'JSON' });
  assert.equal(seen[0]!.authorization, `Basic ${Buffer.from('user:secret-in-url').toString('base64')}`);
  assert.deepEqual(await registry.versions('x-value'), [1, 2]);
  assert.deepEqual(await new SchemaRegistry({ url }).schemaById(9), { schema: '{"type":"object"}', schemaType: 'JSON' });
});

test('refusals are classified: 409 incompatible with the registry\'s message, 401 auth, 5xx and a closed port unreachable', async (t) => {
  const { url } = await registryServer(t, (method, u) => {
    if (u.includes('/config/')) return [200, { compatibilityLevel: 'BACKWARD' }];
    if (u.includes('incompatible')) return method === 'POST' ? [409, { error_code: 409, message: 'Schema being registered is incompatible with an earlier schema' }] : [200, [1]];
    if (u.includes('locked')) return [401, { error_code: 401, message: 'Unauthorized' }];
    if (u.includes('/schemas/ids/')) return [404, { error_code: 40403, message: 'Schema 9 not found' }];
    if (u.includes('/elsewhere/')) return [404, 'no such page'];
    return [503, { error_code: 50003, message: 'storage not ready' }];
  });
  const registry = new SchemaRegistry({ url, username: 'u', password: 'hunter2-long-password' });
  const error = async (p: Promise<unknown>) => p.then(() => assert.fail('expected an error'), (e: unknown) => e as TunnelError);
  const incompatible = await error(registry.register('incompatible-value', '{"type":"int"}', 'AVRO'));
  assert.equal(incompatible.code, 'PGT_REGISTRY_INCOMPATIBLE');
  assert.match(incompatible.message, /incompatible-value: Schema being registered is incompatible with an earlier schema/);
  assert.equal(incompatible.retryable, false);
  const auth = await error(registry.latest('locked-value'));
  assert.equal(auth.code, 'PGT_REGISTRY_AUTH');
  assert.match(auth.hint!, /registryPassword/);
  const busy = await error(registry.latest('busy-value'));
  assert.equal(busy.code, 'PGT_REGISTRY_UNREACHABLE');
  assert.equal(busy.retryable, true);
  // a port just freed (fetch refuses to dial well-known ports such as 1)
  const spare = http.createServer();
  await new Promise<void>((resolve) => spare.listen(0, '127.0.0.1', resolve));
  const port = (spare.address() as AddressInfo).port;
  await new Promise<void>((resolve) => spare.close(() => resolve()));
  const closed = await error(new SchemaRegistry({ url: `http://127.0.0.1:${port}/apis/ccompat/v7` }).versions('x'));
  assert.equal(closed.code, 'PGT_REGISTRY_UNREACHABLE');
  assert.match(closed.message, /ECONNREFUSED/);
  const unknownId = await error(registry.schemaById(9));
  assert.equal(unknownId.code, 'PGT_REGISTRY_NO_SCHEMA');
  assert.match(unknownId.hint!, /another registry/);
  const wrongUrl = await error(new SchemaRegistry({ url: url.replace('/apis/ccompat/v7', '/elsewhere') }).versions('x'));
  assert.equal(wrongUrl.code, 'PGT_REGISTRY_NOT_FOUND');
  assert.match(wrongUrl.hint!, /apis\/ccompat\/v7/);
  for (const e of [incompatible, auth, busy]) assert.doesNotMatch(`${e.message} ${e.hint}`, /hunter2/);
  assert.equal(await registry.compatibility('any'), 'BACKWARD');
  assert.equal(await registry.latest('missing-subject').catch(() => 'error'), 'error', 'a 503 is not taken for "not registered"');
});

test('registry keys: env and file, the password from a file and never printed, format follows the registry', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'cfg-'));
  writeFileSync(path.join(dir, 'registry.pw'), 'file-password-123\n');
  const cfg = loadConfig({ cwd: dir, env: { PGTUNNEL_REGISTRY_URL: 'http://reg:8081', PGTUNNEL_REGISTRY_USERNAME: 'tunnel', PGTUNNEL_REGISTRY_PASSWORD_FILE: 'registry.pw' } });
  assert.deepEqual(cfg.registry, { url: 'http://reg:8081', username: 'tunnel', password: 'file-password-123' });
  assert.equal(cfg.format, 'avro', 'Avro is the default with a registry');
  assert.equal(redact('login file-password-123'), 'login ***');
  const envPassword = loadConfig({ cwd: dir, env: { PGTUNNEL_REGISTRY_URL: 'http://reg:8081', PGTUNNEL_REGISTRY_PASSWORD: 'env-password-456', PGTUNNEL_FORMAT: 'json-schema' } });
  assert.equal(envPassword.registry?.password, 'env-password-456');
  assert.equal(envPassword.format, 'json-schema');
  assert.equal(redact('env-password-456'), '***');

  const embedded = loadConfig({ cwd: dir, env: { PGTUNNEL_REGISTRY: 'embedded' } });
  assert.equal(embedded.embeddedRegistry, true);
  assert.equal(embedded.registry?.url, 'http://127.0.0.1:8081/apis/ccompat/v7');
  const plain = loadConfig({ cwd: dir, env: {} });
  assert.equal(plain.registry, undefined);
  assert.equal(plain.format, 'json', 'plain JSON without a registry');

  writeFileSync(path.join(dir, 'pgtunnel.yaml'), 'format: avro\nregistryUrl: not a url\n');
  assert.throws(() => loadConfig({ cwd: dir, env: {} }), (err: TunnelError) => {
    assert.match(err.message, /registryUrl: Invalid url/);
    return true;
  });
  writeFileSync(path.join(dir, 'pgtunnel.yaml'), 'format: avro\n');
  assert.throws(() => loadConfig({ cwd: dir, env: {} }), /format: avro needs a schema registry — fix: set registryUrl \(PGTUNNEL_REGISTRY_URL\), or registry: embedded, or format: json/);
});
