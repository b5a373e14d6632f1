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
  command?: string[];
  profiles?: string[];
  deploy?: { replicas?: number };
}

const compose = parse(readFileSync(new URL('docker-compose.yml', root), 'utf8'), { merge: true }) as { services: Record<string, Service> };

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
  assert.equal(String(kafka.environment!.KAFKA_ADVERTISED_LISTENERS).split(',')[0], `PLAINTEXT://${defaultBroker}`);
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

test('the tunnel services run one image: 2 producers (one stands by) and 3 consumer replicas, reaching the services by name', () => {
  const { producer, consumers, kafka } = compose.services;
  assert.ok(producer && consumers, 'services producer and consumers');
  assert.equal(consumers.image, producer.image, 'one image');
  assert.equal(consumers.deploy?.replicas, 3);
  assert.equal(producer.deploy?.replicas, 2);
  assert.deepEqual(consumers.command, ['node', 'bin/pgtunnel.js', 'run', '--role', 'consumer', '--wait']);
  assert.deepEqual(producer.command, ['node', 'bin/pgtunnel.js', 'run', '--role', 'producer', '--wait']);
  for (const s of [producer, consumers]) {
    assert.deepEqual(s.profiles, ['tunnel'], 'only with --profile tunnel: `docker compose up` still starts the services alone');
    const env = s.environment!;
    assert.equal(env.PGTUNNEL_SOURCE_URL, `postgres://postgres@source:5432/${embeddedDefaults.sourceDb}`);
    assert.equal(env.PGTUNNEL_TARGET_URL, `postgres://postgres@target:5432/${embeddedDefaults.targetDb}`);
    // the broker advertises this listener to containers; the host's 127.0.0.1:9092 is not theirs
    assert.ok(String(kafka!.environment!.KAFKA_ADVERTISED_LISTENERS).split(',').includes(`INTERNAL://${env.PGTUNNEL_KAFKA_BROKERS}`));
    assert.ok(String(kafka!.environment!.KAFKA_LISTENER_SECURITY_PROTOCOL_MAP).includes('INTERNAL:PLAINTEXT'));
    assert.equal(env.PGTUNNEL_GROUP_INSTANCE_ID, undefined, 'replicas of one service claim distinct groupInstanceIds themselves');
  }
});
