import assert from 'node:assert/strict';
import { test } from 'node:test';
import { classify } from '../../src/errors.js';
import { redact, registerSecret } from '../../src/redact.js';
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
});

test('registered secrets (passwords from env or files, the HTTP token) are hidden anywhere', () => {
  registerSecret('from-a-file-42');
  assert.equal(redact('authentication failed: from-a-file-42'), 'authentication failed: ***');
  assert.equal(redact('x from-a-file-42 y'), 'x *** y');
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
