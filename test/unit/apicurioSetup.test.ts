// The embedded schema registry's set-up: Java 21+ found or refused with the fix, Apicurio fetched on first use.
import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import type { TunnelError } from '../../src/errors.js';
import { fetchRegistryApp, findJava, registryAppDir } from '../../src/stack/schemaRegistry.js';

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

test('a registry that was never fetched is fetched on first use, once, saying what it does', { timeout: 300_000 }, async () => {
  const home = mkdtempSync(path.join(tmpdir(), 'home-'));
  try {
    const appDir = registryAppDir(home);
    let said = '';
    assert.equal(await fetchRegistryApp(appDir, (text) => (said += text)), true);
    assert.ok(existsSync(path.join(appDir, 'quarkus-run.jar')), said);
    assert.match(said, /fetching Apicurio Registry 3\.3\.3 from Maven Central into .* \(158 MB, once\)/);
    assert.match(said, /Apicurio Registry 3\.3\.3 is in /);
    assert.deepEqual(readdirSync(path.dirname(appDir)), [path.basename(appDir)], 'no temporary folder is left behind');
    said = '';
    assert.equal(await fetchRegistryApp(appDir, (text) => (said += text)), false, 'a second start fetches nothing');
    assert.equal(said, '');
  } finally {
    rmSync(home, { recursive: true, force: true });
  }
});

test('a fetch that fails names the reason and the fix', async () => {
  const home = mkdtempSync(path.join(tmpdir(), 'home-'));
  writeFileSync(path.join(home, 'registry'), 'a file where the folder should be');
  await assert.rejects(fetchRegistryApp(registryAppDir(home), () => {}), (err: TunnelError) => {
    assert.equal(err.code, 'PGT_REGISTRY_MISSING');
    assert.match(err.message, /could not be fetched into .*: setup: error: cannot create /);
    assert.match(err.hint!, /bash scripts\/setup\.sh --registry/);
    return true;
  });
  rmSync(home, { recursive: true, force: true });
});
