// What the embedded schema registry says when it cannot start: no Java 21+, or Apicurio not fetched.
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import type { TunnelError } from '../../src/errors.js';
import { createLogger } from '../../src/instruments/log.js';
import { findJava, registryAppDir, SchemaRegistryServer } from '../../src/stack/schemaRegistry.js';

/** A JDK directory as Debian and Temurin lay them out: bin/java and a `release` file naming the version. */
function fakeJdk(root: string, name: string, version: string): string {
  const bin = path.join(root, name, 'bin');
  mkdirSync(bin, { recursive: true });
  writeFileSync(path.join(root, name, 'release'), `IMPLEMENTOR="test"\nJAVA_VERSION="${version}"\n`);
  writeFileSync(path.join(bin, 'java'), '#!/bin/sh\nexit 1\n');
  chmodSync(path.join(bin, 'java'), 0o755);
  return path.join(bin, 'java');
}

test('the newest JDK is chosen; one older than 21 is refused with the fix', () => {
  const jvm = mkdtempSync(path.join(tmpdir(), 'jvm-'));
  const java17 = fakeJdk(jvm, 'java-17-openjdk-amd64', '17.0.16');
  assert.throws(() => findJava({ PATH: '' }, jvm), (err: TunnelError) => {
    assert.equal(err.code, 'PGT_REGISTRY_JAVA');
    assert.match(err.message, /needs Java 21 or newer; the newest found is Java 17/);
    assert.match(err.hint!, /openjdk-21-jre-headless.*PGTUNNEL_REGISTRY_JAVA/);
    return true;
  });
  const java25 = fakeJdk(jvm, 'temurin-25-jdk-amd64', '25.0.1');
  assert.equal(findJava({ PATH: '' }, jvm), java25);
  assert.throws(() => findJava({ PATH: '', PGTUNNEL_REGISTRY_JAVA: java17 }, jvm), /Java 17/, 'a named Java is the one used');
  assert.throws(() => findJava({ PATH: '' }, path.join(jvm, 'none')), /no Java was found/);
});

test('a registry that was never fetched names setup.sh --registry', async () => {
  const home = mkdtempSync(path.join(tmpdir(), 'home-'));
  const server = new SchemaRegistryServer(path.join(home, 'registry'), registryAppDir(home), 1, 2, '127.0.0.1:9', createLogger('test'));
  await assert.rejects(server.start(), (err: TunnelError) => {
    assert.equal(err.code, 'PGT_REGISTRY_MISSING');
    assert.match(err.hint!, /bash scripts\/setup\.sh --registry/);
    return true;
  });
  assert.equal(server.isRunning(), false);
});
