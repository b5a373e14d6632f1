import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { loadConfig } from '../../src/config/load.js';
import { TunnelError } from '../../src/errors.js';

test('no configuration means the embedded stack with the seed defaults', () => {
  const cfg = loadConfig({ env: {}, cwd: mkdtempSync(path.join(tmpdir(), 'cfg-')) });
  assert.equal(cfg.embedded, true);
  assert.equal(cfg.sourceUrl, 'postgres://postgres@127.0.0.1:5433/db1');
  assert.equal(cfg.targetUrl, 'postgres://postgres@127.0.0.1:5434/db2');
  assert.deepEqual(cfg.kafkaBrokers, ['127.0.0.1:9092']);
  assert.equal(cfg.tables[0]!.changeTable, 'emp_cdc');
  assert.equal(cfg.tables[0]!.topic, 'pgtunnel.public.employees');
  assert.equal(cfg.tables[0]!.dlqTopic, 'pgtunnel.public.employees.dlq');
  assert.equal(cfg.partitions, 3);
  assert.equal(cfg.threads, 'auto', 'pgtunnel run: worker threads or not by the host (threadChoice.test.ts)');
});

test('threads: false (the file or PGTUNNEL_THREADS) keeps both sides on the main thread', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'cfg-'));
  writeFileSync(path.join(dir, 'pgtunnel.yaml'), 'threads: false\n');
  assert.equal(loadConfig({ cwd: dir, env: {} }).threads, false);
  assert.equal(loadConfig({ cwd: dir, env: { PGTUNNEL_THREADS: 'on' } }).threads, true, 'the environment overrides the file');
  assert.equal(loadConfig({ env: { PGTUNNEL_THREADS: 'off' }, cwd: mkdtempSync(path.join(tmpdir(), 'cfg-')) }).threads, false);
  assert.equal(loadConfig({ cwd: dir, env: { PGTUNNEL_THREADS: 'Auto' } }).threads, 'auto');
  writeFileSync(path.join(dir, 'pgtunnel.yaml'), 'threads: auto\n');
  assert.equal(loadConfig({ cwd: dir, env: {} }).threads, 'auto');
  writeFileSync(path.join(dir, 'pgtunnel.yaml'), 'threads: sometimes\n');
  assert.throws(() => loadConfig({ cwd: dir, env: {} }), /threads/, 'anything else is refused, naming the setting');
});

test('kafkaCompression: lz4 unless the file or PGTUNNEL_KAFKA_COMPRESSION says none', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'cfg-'));
  assert.equal(loadConfig({ cwd: dir, env: {} }).kafkaCompression, 'lz4');
  writeFileSync(path.join(dir, 'pgtunnel.yaml'), 'kafkaCompression: none\n');
  assert.equal(loadConfig({ cwd: dir, env: {} }).kafkaCompression, 'none');
  assert.equal(loadConfig({ cwd: dir, env: { PGTUNNEL_KAFKA_COMPRESSION: 'lz4' } }).kafkaCompression, 'lz4', 'the environment overrides the file');
  assert.throws(() => loadConfig({ cwd: dir, env: { PGTUNNEL_KAFKA_COMPRESSION: 'zstd' } }), /kafkaCompression/, 'a codec the producer does not write is refused, naming the setting');
});

test('environment variables name real services and override the file', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'cfg-'));
  writeFileSync(path.join(dir, 'pgtunnel.yaml'), 'partitions: 6\ntables: [employees]\n');
  const cfg = loadConfig({
    cwd: dir,
    env: { PGTUNNEL_SOURCE_URL: 'postgres://u@h:1/a', PGTUNNEL_TARGET_URL: 'postgres://u@h:2/b', PGTUNNEL_KAFKA_BROKERS: 'k1:9092,k2:9092', PGTUNNEL_TABLES: 'employees,sales.orders' },
  });
  assert.equal(cfg.embedded, false);
  assert.deepEqual(cfg.kafkaBrokers, ['k1:9092', 'k2:9092']);
  assert.equal(cfg.partitions, 6);
  assert.deepEqual(cfg.tables.map((t) => [t.schema, t.name, t.changeTable]), [['public', 'employees', 'emp_cdc'], ['sales', 'orders', 'orders_cdc']]);
});

test('a table may have its own partition count and each consumer process its own groupInstanceId', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'cfg-'));
  writeFileSync(path.join(dir, 'pgtunnel.yaml'), 'partitions: 6\ntables: [employees, { name: orders, partitions: 12 }]\n');
  const cfg = loadConfig({ cwd: dir, env: { PGTUNNEL_GROUP_INSTANCE_ID: 'host-a-consumer-1' } });
  assert.deepEqual(cfg.tables.map((t) => [t.name, t.partitions]), [['employees', 6], ['orders', 12]]);
  assert.equal(cfg.groupInstanceId, 'host-a-consumer-1');
  assert.equal(loadConfig({ cwd: dir, env: {} }).groupInstanceId, undefined, 'default: a slot claimed at run time');
});

test('a table may have its own capture, over the top-level one (one table switches while the others stay)', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'cfg-'));
  writeFileSync(path.join(dir, 'pgtunnel.yaml'), 'capture: logical\ntables: [employees, { name: orders, capture: trigger }]\n');
  const cfg = loadConfig({ cwd: dir, env: {} });
  assert.equal(cfg.capture, 'logical');
  assert.deepEqual(cfg.tables.map((t) => [t.name, t.capture ?? cfg.capture]), [['employees', 'logical'], ['orders', 'trigger']]);
  writeFileSync(path.join(dir, 'pgtunnel.yaml'), 'apply: transactional\ntables: [{ name: orders, capture: logical }]\n');
  assert.throws(() => loadConfig({ cwd: dir, env: {} }), /apply: transactional runs with trigger capture only/);
});

test('every configuration error is reported at once, each with its fix', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'cfg-'));
  writeFileSync(path.join(dir, 'pgtunnel.yaml'), 'sourceUrl: mysql://nope\npartitions: 0\ntabels: [x]\n');
  try {
    loadConfig({ cwd: dir, env: { PGTUNNEL_KAFKA_BROKERS: 'no-port' } });
    assert.fail('expected a config error');
  } catch (err) {
    assert.ok(err instanceof TunnelError);
    assert.equal(err.errorClass, 'config');
    assert.match(err.message, /sourceUrl: must be a URL like postgres:\/\/.*fix: set PGTUNNEL_SOURCE_URL/);
    assert.match(err.message, /partitions: .*fix: use a whole number/);
    assert.match(err.message, /unknown key\(s\) tabels/);
    assert.match(err.message, /kafkaBrokers.*must be host:port/);
  }
});

test('naming only some services is an error, not a silent embedded stack', () => {
  assert.throws(() => loadConfig({ cwd: tmpdir(), env: { PGTUNNEL_SOURCE_URL: 'postgres://u@h:1/a' } }), /must be given together/);
});

test('a YAML syntax error names the file', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'cfg-'));
  writeFileSync(path.join(dir, 'bad.yaml'), 'tables: [employees\n');
  assert.throws(() => loadConfig({ cwd: dir, env: {}, configFile: 'bad.yaml' }), /bad\.yaml: cannot be read as YAML/);
});
