import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { loadConfig } from '../../src/config/load.js';
import { redact } from '../../src/redact.js';
import { compileRules } from '../../src/validate/rules.js';

const services = { PGTUNNEL_SOURCE_URL: 'postgres://u@h:1/a', PGTUNNEL_TARGET_URL: 'postgres://u@h:2/b', PGTUNNEL_KAFKA_BROKERS: 'k:9092' };
const dir = () => mkdtempSync(path.join(tmpdir(), 'cfg-'));

function configErrors(yaml: string, env: Record<string, string> = services): string {
  const cwd = dir();
  writeFileSync(path.join(cwd, 'pgtunnel.yaml'), yaml);
  try {
    loadConfig({ cwd, env });
  } catch (err) {
    return (err as Error).message;
  }
  assert.fail(`expected a configuration error for:\n${yaml}`);
}

test('a URL without a database, a bad httpHost, over-long names and a backtracking regex are all reported at once', () => {
  const long = `t${'x'.repeat(63)}`;
  const message = configErrors(
    [
      'sourceUrl: postgres://u@h:5432',
      'targetUrl: postgres://u@h:5432/',
      'kafkaBrokers: k:9092',
      'httpHost: "http://0.0.0.0:80"',
      'tables:',
      `  - ${long}`,
      '  - name: people',
      '    rules:',
      "      - { name: backref, column: city, op: matches, value: '^(a+)\\1$' }",
      "      - { name: lookahead, column: city, op: matches, value: '^(?=x)' }",
    ].join('\n'),
    {},
  );
  assert.match(message, /sourceUrl: names no database/);
  assert.match(message, /targetUrl: names no database/);
  assert.match(message, /httpHost: must be a host name or an IP address/);
  assert.match(message, /tables\.0: a schema or table name longer than 63 bytes/);
  assert.match(message, /tables\.1\.rules\.0\.value: .*invalid escape/);
  assert.match(message, /tables\.1\.rules\.1\.value: .*RE2 syntax/);
  // Names made from valid parts (change table, topics) are checked once the parts are valid.
  // (a long table name's default change table keeps a head and a hash within 63 bytes: test/unit/names.test.ts)
  const derived = configErrors(`topicPrefix: ${'p'.repeat(240)}\ntables: [{ name: ${'n'.repeat(60)} }]\n`);
  assert.match(derived, /topic p{240}\.public\.n{60}\.dlq is longer than 249 characters/);
  for (const [name, value] of [['0.0.0.0', '0.0.0.0'], ['::1', '::1'], ['a host name', 'dash-1.internal']]) {
    assert.equal(loadConfig({ cwd: dir(), env: { PGTUNNEL_HTTP_HOST: value } }).httpHost, value, name);
  }
});

test('a rule regex runs in linear time: a classic catastrophic pattern answers at once', () => {
  const [rule] = compileRules([{ name: 'evil', column: 'city', op: 'matches', value: '^(a+)+$' }], { city: 'text' }, 'public.people');
  const started = Date.now();
  assert.ok(rule!.check({ city: `${'a'.repeat(100_000)}!` }));
  assert.equal(rule!.check({ city: 'aaaa' }), undefined);
  assert.ok(Date.now() - started < 1000, `took ${Date.now() - started} ms`);
});

test('passwords come from env or a file, go into the connection, and are never in the printed URL', () => {
  const cwd = dir();
  writeFileSync(path.join(cwd, 'target.pw'), 'from:a/file@42\n');
  const cfg = loadConfig({ cwd, env: { ...services, PGTUNNEL_SOURCE_PASSWORD: 'env p@ss%41:/x', PGTUNNEL_TARGET_PASSWORD_FILE: 'target.pw', PGTUNNEL_HTTP_TOKEN: 'a-token-of-16-chars' } });
  assert.equal(new URL(cfg.sourceUrl).hostname, 'h');
  assert.equal(decodeURIComponent(new URL(cfg.sourceUrl).password), 'env p@ss%41:/x');
  assert.equal(decodeURIComponent(new URL(cfg.targetUrl).password), 'from:a/file@42');
  assert.equal(cfg.httpToken, 'a-token-of-16-chars');
  for (const printed of [redact(cfg.sourceUrl), redact(cfg.targetUrl), redact('auth failed for from:a/file@42')]) assert.ok(!/p@ss|file@42/.test(printed), printed);
  const missing = (() => {
    try {
      loadConfig({ cwd, env: { ...services, PGTUNNEL_SOURCE_PASSWORD_FILE: 'nope.pw' } });
    } catch (err) {
      return (err as Error).message;
    }
    return '';
  })();
  assert.match(missing, /sourcePasswordFile: cannot read .*nope\.pw \(ENOENT\)/);
  assert.match(configErrors('httpToken: short\n'), /httpToken: must be at least 16 characters/);
});
