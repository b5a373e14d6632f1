import assert from 'node:assert/strict';
import { test } from 'node:test';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { loadConfig } from '../../src/config/load.js';
import { classify } from '../../src/errors.js';
import { capText, maxMessageChars, redact, registerSecret } from '../../src/redact.js';
import { deadLetterMessage } from '../../src/validate/deadLetters.js';

const secret = 'Zq9-very-SECRET';

/** Every spelling of a password in a connection string that a user may write. */
export const passwordForms: [string, string][] = [
  ['user:password@', `postgres://app:${secret}@db:5432/x`],
  ['password with @ : / ? #', `postgres://app:${secret}@:/?#x@db:5432/x`],
  ['password with @ and an IPv6 host', `postgresql://app:p@${secret}@[::1]:5432/x`],
  ['percent-encoded password', `postgres://app:${encodeURIComponent(`${secret}@/:`)}@db/x`],
  ['empty user name', `postgres://:${secret}@db/x`],
  ['?password=', `postgres://app@db/x?password=${secret}&sslmode=require`],
  ['&sslpassword=', `postgres://app@db/x?sslmode=verify-full&sslpassword=${secret}`],
  ['sslkey path', `postgres://app@db/x?sslkey=/keys/${secret}.key`],
  ['conninfo password=', `host=db password=${secret} dbname=x`],
  ['quoted conninfo password', `host=db password='${secret} with blanks' dbname=x`],
  ['no host after @', `postgres://app:${secret}@`],
  ['multi-host', `postgres://app:${secret}@db1:5432,db2:5432/x`],
  ['PGPASSWORD=', `PGPASSWORD=${secret} psql -h db`],
  ['env *_PASSWORD=', `PGTUNNEL_TARGET_PASSWORD=${secret} pgtunnel run`],
  ['JSON "password":', `{"user":"app","password":"${secret}"}`],
  ['JSON "password" with blanks', `{"password" : "${secret} \\" x"}`],
  ['YAML password:', `user: app\npassword: ${secret}\nhost: db`],
  ['YAML quoted password:', `password: "${secret} with blanks"`],
  ['https://TOKEN@host', `https://${secret}@github.com/org/repo.git`],
];

test('a password never survives redaction, in any spelling and inside longer messages', () => {
  for (const [form, url] of passwordForms) {
    for (const text of [url, `cannot connect to ${url}: ECONNREFUSED`, `{"url":"${url}","n":1}`, `(${url})`]) {
      const out = redact(text);
      assert.ok(!out.includes('very-SECRET'), `${form}: ${out}`);
      assert.ok(!out.includes('very%2DSECRET') && !out.includes('SECRET'), `${form}: ${out}`);
    }
  }
});

test('redaction keeps what a user needs to see', () => {
  assert.equal(redact('connect to postgres://app:s3cret@db:5432/x failed'), 'connect to postgres://app:***@db:5432/x failed');
  assert.equal(redact('postgres://postgres@127.0.0.1:5433/db1'), 'postgres://postgres@127.0.0.1:5433/db1');
  assert.equal(redact('postgres://:pw@h/db'), 'postgres://:***@h/db');
  assert.equal(redact('postgres://u:a@b@h:1/db'), 'postgres://u:***@h:1/db');
  assert.equal(redact('postgres://u@h/db?sslmode=verify-full&sslrootcert=/ca.pem&password=x'), 'postgres://u@h/db?sslmode=verify-full&sslrootcert=/ca.pem&password=***');
  assert.equal(redact('host=h password=pw port=5432'), 'host=h password=*** port=5432');
  assert.equal(redact('the password is checked'), 'the password is checked');
  assert.equal(redact('PGPASSWORD=pw psql'), 'PGPASSWORD=*** psql');
  assert.equal(redact('{"password":"pw","port":5432}'), '{"password":"***","port":5432}');
  assert.equal(redact('password: pw\nport: 5432'), 'password: ***\nport: 5432');
  assert.equal(redact('clone https://ghp_x@github.com/o/r failed'), 'clone https://***@github.com/o/r failed');
  assert.equal(redact('https://u:pw@h/x and postgres://u:pw@h/y'), 'https://u:***@h/x and postgres://u:***@h/y');
});

test('registered secrets (passwords from env or files, the HTTP token) are hidden anywhere', () => {
  registerSecret('from-a-file-42');
  assert.equal(redact('authentication failed: from-a-file-42'), 'authentication failed: ***');
  assert.equal(redact('x from-a-file-42 y'), 'x *** y');
  // the HTTP token and the mask salt, registered by the configuration loader
  const config = loadConfig({ cwd: mkdtempSync(path.join(tmpdir(), 'redact-')), env: { PGTUNNEL_HTTP_TOKEN: 'a-token-of-16-chars+', PGTUNNEL_MASK_SALT: 'a-salt-of-16-chars+' } });
  assert.ok(config.httpToken);
  assert.equal(redact('Bearer a-token-of-16-chars+ salt a-salt-of-16-chars+'), 'Bearer *** salt ***');
  registerSecret('short');
  assert.equal(redact('a short word'), 'a short word');
});

test('classified errors carry redacted messages', () => {
  const e = classify(new Error(`connect to postgres://app:${secret}@db/x refused`));
  assert.ok(!e.message.includes(secret));
});

test('dead-letter headers, which outlive the process in Kafka, carry redacted reasons', () => {
  const message = deadLetterMessage({
    record: { topic: 't', partition: 0, offset: 1n, key: '{"id":1}', value: '{}' },
    letter: { errorClass: 'target', message: `cannot connect to postgres://app:${secret}@db/x`, details: { detail: `password=${secret} host=db` } },
  });
  for (const value of message.headers!.values()) assert.ok(!String(value).includes('SECRET'), String(value));
});

/** Text a forger can put in a key or value that the target's error then echoes: each was quadratic or worse once. */
const adversarial: [string, (n: number) => string][] = [
  ['dotted', (n) => 'a.'.repeat(n / 2)],
  ['base64 with +', (n) => 'QUJD+/9x'.repeat(n / 8)],
  ['long user info', (n) => `https://${'u:p@'.repeat(n / 4)}`],
  ['many @ and commas', (n) => `x://${'@h,'.repeat(n / 3)}`],
  ['schemes', (n) => 'a+b://'.repeat(n / 6)],
  ['open JSON secrets', (n) => '"password":"'.repeat(n / 12)],
  ['env-like words', (n) => 'A_'.repeat(n / 2)],
  ['trailing long scheme', (n) => `${'a'.repeat(n)}://u:p@h`],
];

/** CPU milliseconds, not wall: a loaded machine pauses a long run more often than a short one. */
function timed(text: string): number {
  const start = process.cpuUsage();
  redact(text);
  const used = process.cpuUsage(start);
  return (used.user + used.system) / 1000;
}

test('redaction is linear: 1 MB of adversarial text takes about four times 256 KB, and well under seconds', () => {
  for (const [name, make] of adversarial) {
    const small = make(256 * 1024);
    const large = make(1024 * 1024);
    timed(small); // warm the code paths
    // the best of five: a GC pause lengthens a run, never shortens one
    const best = (text: string) => Math.min(...Array.from({ length: 5 }, () => timed(text)));
    const t1 = best(small);
    const t4 = best(large);
    // linear work grows 4x, quadratic 16x; the floor keeps a sub-millisecond case from deciding on noise
    assert.ok(t4 < 8 * Math.max(t1, 5), `${name}: ${t1.toFixed(1)} ms for 256 KB, ${t4.toFixed(1)} ms for 1 MB`);
    assert.ok(t4 < 5000, `${name}: ${t4.toFixed(0)} ms for 1 MB`);
  }
  assert.equal(redact(`${'a'.repeat(100)}://u:pw@h`), `${'a'.repeat(100)}://u:***@h`);
});

test('long messages are cut before redaction, saying how much was left out', () => {
  assert.equal(capText('short'), 'short');
  const cut = capText('x'.repeat(maxMessageChars + 10));
  assert.ok(cut.startsWith('x'.repeat(maxMessageChars)) && cut.endsWith('… (10 more characters)'), cut.slice(-40));
  const e = classify(new Error(`invalid input syntax for type integer: "${'a.'.repeat(100_000)}"`));
  assert.ok(e.message.length < maxMessageChars + 100, String(e.message.length));
});
