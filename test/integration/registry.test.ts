import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { before, test } from 'node:test';
import { SchemaRegistry } from '../../src/contracts/registry.js';
import type { TunnelError } from '../../src/errors.js';
import { createLogger } from '../../src/instruments/log.js';
import { registryAppDir, SchemaRegistryServer } from '../../src/stack/schemaRegistry.js';
import { onCleanup, services, uniqueName } from '../helpers/services.js';
import { freePort } from '../../testkit/testStack.js';
import { runCli } from '../helpers/tunnelProcess.js';
import { registryAnswers } from '../helpers/wireBytes.js';

// scripts/test.mjs starts the suite's registry beside the first files: wait until it answers
before(registryAnswers);

const avro = (fields: object[]) => JSON.stringify({ type: 'record', name: 'Value', namespace: 'pgtunnel.test', fields });
const v1 = avro([{ name: 'id', type: 'int' }, { name: 'name', type: 'string' }]);
// backward compatible: a reader of v2 can read v1 data (the new field has a default)
const v2 = avro([{ name: 'id', type: 'int' }, { name: 'name', type: 'string' }, { name: 'note', type: ['null', 'string'], default: null }]);
// not: a new required field without a default
const incompatible = avro([{ name: 'id', type: 'int' }, { name: 'name', type: 'string' }, { name: 'salary', type: 'long' }]);

function sharedRegistryUrl(): string {
  const url = process.env.PGTUNNEL_TEST_REGISTRY_URL;
  if (!url) throw new Error('this test needs the test stack\'s schema registry: run it with node scripts/test.mjs registry (test.mjs starts one for it)');
  return url;
}

async function refusal(promise: Promise<unknown>): Promise<TunnelError> {
  try {
    await promise;
  } catch (err) {
    return err as TunnelError;
  }
  assert.fail('expected the registry to refuse');
}

test('the embedded registry keeps schemas, ids and compatibility across a restart; refuses an incompatible schema; asks for credentials', { timeout: 600_000 }, async (t) => {
  // a registry of its own (own ports, own kafkasql topics in the test stack's Kafka), so the shared one stays up
  const root = mkdtempSync(path.join(tmpdir(), 'pgtunnel-registry-'));
  onCleanup(t, () => rmSync(root, { recursive: true, force: true }));
  const home = path.resolve(process.env.PGTUNNEL_TEST_STACK_ROOT!, '..');
  const password = randomBytes(12).toString('hex');
  const server = new SchemaRegistryServer(root, registryAppDir(home), await freePort(), await freePort(), services().brokers, createLogger('registry-test'), {
    topicPrefix: uniqueName('registry-test'),
    // HTTP basic auth with one embedded user, as a registry behind a password is met in production
    properties: {
      'quarkus.http.auth.basic': 'true',
      'quarkus.security.users.embedded.enabled': 'true',
      'quarkus.security.users.embedded.plain-text': 'true',
      'quarkus.security.users.embedded.users.tunnel': password,
      'quarkus.security.users.embedded.roles.tunnel': 'sr-admin',
      'quarkus.http.auth.permission.apis.paths': '/apis/*',
      'quarkus.http.auth.permission.apis.policy': 'authenticated',
    },
  });
  onCleanup(t, () => server.stop());
  assert.equal(await server.start(), true);
  assert.equal(await server.start(), false, 'a running registry is reused');

  const subject = `${uniqueName('pgtunnel.public.t')}-value`;
  const registry = new SchemaRegistry({ url: server.url, username: 'tunnel', password });
  const id1 = await registry.register(subject, v1, 'AVRO');
  assert.equal(await registry.compatibility(subject), 'BACKWARD', 'a new subject gets BACKWARD (Apicurio\'s default is NONE)');
  const id2 = await registry.register(subject, v2, 'AVRO');
  assert.notEqual(id1, id2);
  assert.deepEqual(await registry.versions(subject), [1, 2]);

  const refused = await refusal(registry.register(subject, incompatible, 'AVRO'));
  assert.equal(refused.code, 'PGT_REGISTRY_INCOMPATIBLE');
  assert.match(refused.message, /Incompatible artifact/, 'the registry\'s own message is carried');
  assert.match(refused.hint!, /backward compatible/);
  assert.deepEqual(await registry.versions(subject), [1, 2], 'nothing was registered');

  for (const access of [{ username: 'tunnel', password: 'wrong-password-1' }, {}]) {
    const denied = await refusal(new SchemaRegistry({ url: server.url, ...access }).versions(subject));
    assert.equal(denied.code, 'PGT_REGISTRY_AUTH');
    assert.doesNotMatch(`${denied.message} ${denied.hint}`, /wrong-password-1/);
  }

  await server.stop();
  assert.equal(server.isRunning(), false);
  const down = await refusal(new SchemaRegistry({ url: server.url, username: 'tunnel', password }).latest(subject));
  assert.equal(down.code, 'PGT_REGISTRY_UNREACHABLE');
  assert.equal(down.retryable, true);
  assert.match(down.hint!, /stack up --registry/);

  assert.equal(await server.start(), true);
  // a fresh client: nothing comes from a cache
  const again = new SchemaRegistry({ url: server.url, username: 'tunnel', password });
  assert.deepEqual(await again.versions(subject), [1, 2]);
  const latest = await again.latest(subject);
  assert.deepEqual({ id: latest?.id, version: latest?.version, type: latest?.schemaType }, { id: id2, version: 2, type: 'AVRO' });
  assert.deepEqual(JSON.parse(latest!.schema), JSON.parse(v2));
  assert.deepEqual(JSON.parse((await again.schemaById(id1)).schema), JSON.parse(v1), 'ids still name the same schemas');
  assert.equal(await again.register(subject, v2, 'AVRO'), id2, 'registering a known schema returns its id');
  assert.equal(await again.compatibility(subject), 'BACKWARD');
  assert.equal((await refusal(again.register(subject, incompatible, 'AVRO'))).code, 'PGT_REGISTRY_INCOMPATIBLE', 'the compatibility rule survived too');
});

test('schema show prints the key and value subjects: versions, latest schema, id, compatibility; --json too', { timeout: 120_000 }, async (t) => {
  const url = sharedRegistryUrl();
  const prefix = uniqueName('show');
  const home = mkdtempSync(path.join(tmpdir(), 'pgtunnel-schema-show-'));
  onCleanup(t, () => rmSync(home, { recursive: true, force: true }));
  const env = { PGTUNNEL_HOME: home, PGTUNNEL_REGISTRY_URL: url, PGTUNNEL_TOPIC_PREFIX: prefix };
  const topic = `${prefix}.public.employees`;
  const registry = new SchemaRegistry({ url });
  const keySchema = avro([{ name: 'id', type: 'int' }]).replace('"Value"', '"Key"');
  const keyId = await registry.register(`${topic}-key`, keySchema, 'AVRO');
  await registry.register(`${topic}-value`, v1, 'AVRO');
  const valueId = await registry.register(`${topic}-value`, v2, 'AVRO');

  const shown = await runCli(['schema', 'show', 'employees'], env);
  assert.equal(shown.code, 0, shown.stderr);
  assert.match(shown.stdout, new RegExp(`${topic}-key  compatibility BACKWARD  versions 1\\n`));
  assert.match(shown.stdout, new RegExp(`${topic}-value  compatibility BACKWARD  versions 1, 2\\n`));
  assert.match(shown.stdout, new RegExp(`latest: version 2, id ${valueId}, AVRO\\n\\{\\n  "type": "record"`));
  assert.match(shown.stdout, /"name": "note"/, 'the latest schema, pretty');

  const json = await runCli(['schema', 'show', 'public.employees', '--json'], env);
  assert.equal(json.code, 0, json.stderr);
  const report = JSON.parse(json.stdout) as { topic: string; key: { latest: { id: number } }; value: { versions: number[]; compatibility: string; latest: { version: number; schema: { fields: unknown[] } } } };
  assert.equal(report.topic, topic);
  assert.equal(report.key.latest.id, keyId);
  assert.deepEqual(report.value.versions, [1, 2]);
  assert.equal(report.value.compatibility, 'BACKWARD');
  assert.equal(report.value.latest.schema.fields.length, 3);

  const missing = await runCli(['schema', 'show', 'orders'], env);
  assert.equal(missing.code, 4);
  assert.match(missing.stderr, new RegExp(`no subject ${prefix}\\.public\\.orders-key or ${prefix}\\.public\\.orders-value`));
  assert.match(missing.stderr, /fix: run the tunnel for public\.orders with format: avro or json-schema/);

  const noRegistry = await runCli(['schema', 'show', 'employees'], { PGTUNNEL_HOME: home });
  assert.equal(noRegistry.code, 2);
  assert.match(noRegistry.stderr, /no schema registry is configured\n  fix: set registryUrl \(PGTUNNEL_REGISTRY_URL\)/);
});
