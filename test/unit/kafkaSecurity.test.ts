import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { loadConfig } from '../../src/config/load.js';
import { classify, describeError } from '../../src/errors.js';
import { redact } from '../../src/redact.js';
import { kafkaClientOptions } from '../../src/transport/kafka.js';

const services = { PGTUNNEL_SOURCE_URL: 'postgres://u@h:1/a', PGTUNNEL_TARGET_URL: 'postgres://u@h:2/b', PGTUNNEL_KAFKA_BROKERS: 'k:9093' };

function files(): string {
  const cwd = mkdtempSync(path.join(tmpdir(), 'kafka-sec-'));
  writeFileSync(path.join(cwd, 'ca.pem'), 'CA PEM');
  writeFileSync(path.join(cwd, 'client.pem'), 'CLIENT PEM');
  writeFileSync(path.join(cwd, 'client.key'), 'KEY PEM');
  writeFileSync(path.join(cwd, 'kafka.pw'), 'file-secret-9f3c\n');
  return cwd;
}

test('kafkaSasl and kafkaTls from yaml reach every client as sasl and tls options, with file contents read', () => {
  const cwd = files();
  writeFileSync(
    path.join(cwd, 'pgtunnel.yaml'),
    ['kafkaSasl: { mechanism: SCRAM-SHA-512, username: tunnel, passwordFile: kafka.pw }', 'kafkaTls: { ca: ca.pem, cert: client.pem, key: client.key, serverName: kafka.internal }'].join('\n'),
  );
  const cfg = loadConfig({ cwd, env: services });
  const options = kafkaClientOptions(cfg);
  assert.deepEqual(options.bootstrapBrokers, ['k:9093']);
  assert.deepEqual(options.sasl, { mechanism: 'SCRAM-SHA-512', username: 'tunnel', password: 'file-secret-9f3c' });
  assert.deepEqual(options.tls, { ca: 'CA PEM', cert: 'CLIENT PEM', key: 'KEY PEM' });
  assert.equal(options.tlsServerName, 'kafka.internal');
  // the password never prints
  assert.doesNotMatch(redact('login with file-secret-9f3c failed'), /file-secret-9f3c/);
});

test('PGTUNNEL_KAFKA_SASL_* and PGTUNNEL_KAFKA_TLS* override the file key by key; no security means plaintext', () => {
  const cwd = files();
  writeFileSync(path.join(cwd, 'pgtunnel.yaml'), 'kafkaSasl: { mechanism: PLAIN, username: tunnel, password: yaml-secret-77aa }\nkafkaTls: true\n');
  const cfg = loadConfig({
    cwd,
    env: { ...services, PGTUNNEL_KAFKA_SASL_MECHANISM: 'scram-sha-256', PGTUNNEL_KAFKA_SASL_PASSWORD: 'env-secret-5b21', PGTUNNEL_KAFKA_TLS_CA: 'ca.pem' },
  });
  assert.deepEqual(cfg.kafkaSecurity.sasl, { mechanism: 'SCRAM-SHA-256', username: 'tunnel', password: 'env-secret-5b21' });
  assert.deepEqual(kafkaClientOptions(cfg).tls, { ca: 'CA PEM' });
  assert.doesNotMatch(redact('env-secret-5b21 yaml-secret-77aa'), /secret/);
  const off = loadConfig({ cwd, env: { ...services, PGTUNNEL_KAFKA_TLS: 'false' } });
  assert.equal(kafkaClientOptions(off).tls, undefined);
  const plain = kafkaClientOptions(loadConfig({ cwd: mkdtempSync(path.join(tmpdir(), 'kafka-sec-')), env: services }));
  assert.deepEqual(Object.keys(plain), ['bootstrapBrokers']);
});

test('an incomplete or unreadable Kafka security setting is a config error naming the fix', () => {
  const cwd = files();
  writeFileSync(path.join(cwd, 'pgtunnel.yaml'), 'kafkaSasl: { mechanism: SCRAM-SHA-1, username: tunnel }\n');
  assert.throws(() => loadConfig({ cwd, env: services }), /kafkaSasl\.mechanism: .*'SCRAM-SHA-512'/);
  writeFileSync(path.join(cwd, 'pgtunnel.yaml'), 'kafkaTls: { cert: client.pem, ca: missing.pem }\n');
  assert.throws(() => loadConfig({ cwd, env: services }), (err: Error & { code?: string }) => {
    assert.equal(err.code, 'PGT_CONFIG');
    assert.match(err.message, /kafkaTls: cert and key go together/);
    assert.match(err.message, /kafkaTls\.ca: cannot read .*missing\.pem/);
    return true;
  });
  writeFileSync(path.join(cwd, 'pgtunnel.yaml'), 'kafkaSasl: { mechanism: PLAIN }\n');
  assert.throws(() => loadConfig({ cwd, env: services }), /kafkaSasl: missing username .*password or passwordFile/);
});

/** Shaped like @platformatic/kafka's errors: a protocol error wrapped in connection and retry errors. */
function wrapped(inner: object): Error {
  const network = Object.assign(new Error('Connection to 127.0.0.1:9093 failed.'), { code: 'PLT_KFK_NETWORK', cause: inner });
  const any = Object.assign(new Error('Cannot connect to any broker.'), { code: 'PLT_KFK_MULTIPLE', errors: [network] });
  return Object.assign(new Error('metadata failed 4 times.'), { code: 'PLT_KFK_MULTIPLE', errors: [any] });
}

test('a refused SASL login or TLS certificate is a config error, not an outage to retry', () => {
  const sasl = classify(wrapped(Object.assign(new Error('SASL authentication failed.'), {
    code: 'PLT_KFK_AUTHENTICATION',
    cause: Object.assign(new Error('Received response with error'), { code: 'PLT_KFK_RESPONSE', errors: [{ apiId: 'SASL_AUTHENTICATION_FAILED' }] }),
  })));
  assert.equal(sasl.code, 'PGT_KAFKA_AUTH');
  assert.equal(sasl.errorClass, 'config');
  assert.equal(sasl.retryable, false);
  assert.match(sasl.hint!, /PGTUNNEL_KAFKA_SASL_MECHANISM/);
  const untrusted = classify(wrapped(Object.assign(new Error('self-signed certificate in certificate chain'), { code: 'SELF_SIGNED_CERT_IN_CHAIN' })));
  assert.equal(untrusted.code, 'PGT_TLS_UNTRUSTED');
  assert.match(describeError(untrusted), /kafkaTls\.ca/);
  const noClientCert = classify(wrapped(Object.assign(new Error('sslv3 alert bad certificate'), { code: 'ERR_SSL_SSLV3_ALERT_BAD_CERTIFICATE' })));
  assert.equal(noClientCert.code, 'PGT_TLS_REFUSED');
  assert.match(noClientCert.hint!, /kafkaTls\.cert and kafkaTls\.key/);
  // node-postgres raises the TLS error itself: the hint speaks of the URL's sslrootcert
  const pgUntrusted = classify(Object.assign(new Error('self-signed certificate in certificate chain'), { code: 'SELF_SIGNED_CERT_IN_CHAIN' }));
  assert.equal(pgUntrusted.errorClass, 'config');
  assert.match(pgUntrusted.hint!, /sslrootcert=/);
});
