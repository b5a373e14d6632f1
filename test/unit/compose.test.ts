import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { parse } from 'yaml';
import { defaultBroker, embeddedDefaults } from '../../src/config/load.js';
import { employeesDdl } from '../../src/stack/demo.js';

const root = new URL('../../../', import.meta.url);

interface Service {
  image: string;
  environment?: Record<string, string | number>;
  ports: string[];
  volumes?: string[];
}

const compose = parse(readFileSync(new URL('docker-compose.yml', root), 'utf8')) as { services: Record<string, Service> };

test('docker-compose.yml serves the two databases and Kafka where the embedded stack does', () => {
  const { source, target, kafka } = compose.services;
  assert.ok(source && target && kafka, 'services source, target and kafka');
  assert.deepEqual(source.ports, [`127.0.0.1:${embeddedDefaults.sourcePort}:5432`]);
  assert.deepEqual(target.ports, [`127.0.0.1:${embeddedDefaults.targetPort}:5432`]);
  assert.equal(source.environment!.POSTGRES_DB, embeddedDefaults.sourceDb);
  assert.equal(target.environment!.POSTGRES_DB, embeddedDefaults.targetDb);
  for (const pg of [source, target]) {
    assert.equal(pg.image, 'postgres:15');
    assert.equal(pg.environment!.POSTGRES_USER, 'postgres');
    assert.equal(pg.environment!.POSTGRES_HOST_AUTH_METHOD, 'trust');
  }
  assert.deepEqual(kafka.ports, [`127.0.0.1:${embeddedDefaults.kafkaPort}:9092`]);
  assert.equal(kafka.environment!.KAFKA_ADVERTISED_LISTENERS, `PLAINTEXT://${defaultBroker}`);
  assert.equal(kafka.environment!.KAFKA_PROCESS_ROLES, 'broker,controller');
});

test('the compose Kafka image is the version the embedded broker runs', () => {
  const pom = readFileSync(new URL('stack/kafka/pom.xml', root), 'utf8');
  const version = pom.match(/<kafka\.version>([^<]+)</)![1];
  assert.equal(compose.services.kafka!.image, `apache/kafka:${version}`);
});

test('the compose databases create the same employees table as the embedded stack', () => {
  const sql = readFileSync(new URL('stack/docker/employees.sql', root), 'utf8');
  assert.ok(sql.includes(`${employeesDdl};`), 'stack/docker/employees.sql holds employeesDdl');
  for (const s of [compose.services.source!, compose.services.target!]) {
    assert.deepEqual(s.volumes, ['./stack/docker/employees.sql:/docker-entrypoint-initdb.d/employees.sql:ro']);
  }
});
