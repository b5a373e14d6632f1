import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { loadConfig } from '../../src/config/load.js';

test('the embedded stack\'s password file is read when no services are named, and only then', () => {
  const cwd = mkdtempSync(path.join(tmpdir(), 'cfg-'));
  assert.equal(loadConfig({ env: {}, cwd }).sourceUrl, 'postgres://postgres@127.0.0.1:5433/db1', 'before the stack made one');
  mkdirSync(path.join(cwd, '.pgtunnel'));
  writeFileSync(path.join(cwd, '.pgtunnel', 'postgres.pw'), '0a1b2c\n', { mode: 0o600 });
  const embedded = loadConfig({ env: {}, cwd });
  assert.equal(embedded.sourceUrl, 'postgres://postgres:0a1b2c@127.0.0.1:5433/db1');
  assert.equal(embedded.targetUrl, 'postgres://postgres:0a1b2c@127.0.0.1:5434/db2');
  assert.equal(loadConfig({ env: { PGTUNNEL_SOURCE_PASSWORD: 'mine' }, cwd }).sourceUrl, 'postgres://postgres:mine@127.0.0.1:5433/db1', 'a password given wins');
  const named = loadConfig({ env: { PGTUNNEL_SOURCE_URL: 'postgres://app@db:5432/a', PGTUNNEL_TARGET_URL: 'postgres://app@db:5432/b', PGTUNNEL_KAFKA_BROKERS: 'k:9092' }, cwd });
  assert.equal(named.sourceUrl, 'postgres://app@db:5432/a', 'services of one\'s own never get the stack\'s password');
});
