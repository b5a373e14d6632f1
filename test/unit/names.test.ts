import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { loadConfig } from '../../src/config/load.js';
import {
  captureScope, changeTableId, clientIds, compositeKey, defaultChangeTable, defaultGroupId, defaultTopicPrefix, dlqTopicOf, functionPrefix, groupInstanceId,
  groupSlotLock, keyId, keyParts, keySubject, lockNames, partitionId, positionsTopic, publicationName, slotName, tableId, tableTopic, topicOfDlq, topicPrefixOf, transactionalId, valueSubject,
} from '../../src/names.js';
import { likePattern } from '../../src/config/tables.js';

test('names pgtunnel creates stay distinct within 63 bytes, whatever the table names', () => {
  const a = `${'x'.repeat(60)}_a`;
  const b = `${'x'.repeat(60)}_b`;
  for (const name of [defaultChangeTable(a), defaultChangeTable(b)]) assert.ok(Buffer.byteLength(name) <= 63, name);
  assert.notEqual(defaultChangeTable(a), defaultChangeTable(b));
  assert.equal(defaultChangeTable('employees'), 'emp_cdc');
  assert.equal(defaultChangeTable('orders'), 'orders_cdc');
  const fa = functionPrefix({ schema: 'public', name: a });
  const fb = functionPrefix({ schema: 'public', name: b });
  const other = functionPrefix({ schema: 'shop', name: a });
  assert.equal(new Set([fa, fb, other]).size, 3);
  for (const f of [fa, fb, other]) assert.ok(Buffer.byteLength(`${f}_trunc`) <= 63);
});

test('composite names: table ids, topics, subjects, group members, as users and other tools see them', () => {
  const t = { schema: 'shop', name: 'order.lines', changeTable: 'order_lines_cdc' };
  assert.equal(tableId(t), 'shop.order.lines');
  assert.equal(changeTableId(t), 'shop.order_lines_cdc');
  assert.equal(captureScope(tableId(t)), 'table:shop.order.lines');
  const topic = tableTopic('pgtunnel', t);
  assert.equal(topic, 'pgtunnel.shop.order.lines', "Debezium's <prefix>.<schema>.<table>");
  assert.equal(topicPrefixOf(topic, t), 'pgtunnel');
  assert.equal(topicPrefixOf(tableTopic('a.b', t), t), 'a.b', 'a prefix with dots comes back whole');
  assert.equal(dlqTopicOf(topic), 'pgtunnel.shop.order.lines.dlq');
  assert.equal(topicOfDlq(dlqTopicOf(topic)), topic);
  assert.equal(keySubject(topic), 'pgtunnel.shop.order.lines-key', "Confluent's TopicNameStrategy");
  assert.equal(valueSubject(topic), 'pgtunnel.shop.order.lines-value');
  assert.equal(defaultGroupId('pgtunnel'), 'pgtunnel-apply');
  assert.equal(groupInstanceId('pgtunnel-apply', 2), 'pgtunnel-apply-2');
  assert.equal(groupSlotLock('pgtunnel-apply', 2), 'pgtunnel-apply/2');
});

test('composite map keys never collide across parts and split back into them', () => {
  assert.notEqual(compositeKey('a:1', 2), compositeKey('a', '1:2'));
  assert.notEqual(compositeKey('t', 1, 10n), compositeKey('t', 11, 0n));
  assert.deepEqual(keyParts(compositeKey('t', '{"id":1}')), ['t', '{"id":1}']);
  assert.deepEqual(keyParts(partitionId('a.b', 3)), ['a.b', '3']);
  assert.notEqual(keyId('t', '{"id":1}'), partitionId('t', 1));
});

test('names other processes and other versions share: positions topic, transactional ids, advisory locks', () => {
  // a running older version takes the same locks and fences the same transactional ids: these never change
  // (sourceSlot is new with the shared slot: older versions never take it, so it cannot clash with them)
  assert.deepEqual(lockNames, { migrate: 'pgtunnel.migrate', producer: 'pgtunnel.producer', sourceSlot: 'pgtunnel.source-slot', consumer: 'pgtunnel.consumer', transactionalApply: 'pgtunnel.apply-transactional', dlqReplay: 'pgtunnel.dlq-replay' });
  assert.equal(positionsTopic(defaultTopicPrefix), 'pgtunnel.positions');
  assert.equal(transactionalId(tableTopic('pgtunnel', { schema: 'public', name: 'employees' })), 'pgtunnel-producer:pgtunnel.public.employees');
  assert.equal(new Set(Object.values(clientIds)).size, Object.keys(clientIds).length, 'each part has its own client id');
});

test('a change table can never be the captured table or another captured table', () => {
  assert.throws(() => loadConfigWith('tables: [{ name: employees, changeTable: employees }]'), /names itself/);
  assert.throws(() => loadConfigWith('tables: [employees, { name: orders, changeTable: employees }]'), /a captured table/);
  assert.throws(() => loadConfigWith('tables: [{ name: people, mask: { email: sha256 } }]'), /maskSalt/);
  assert.throws(() => loadConfigWith('tables: [{ name: "shop_*", changeTable: x_cdc }]'), /pattern/);
});

test('table patterns become LIKE patterns with LIKE\'s own wildcards escaped', () => {
  assert.equal(likePattern('order_*'), 'order\\_%');
  assert.equal(likePattern('a?c%'), 'a_c\\%');
});

function loadConfigWith(yaml: string) {
  const dir = mkdtempSync(path.join(tmpdir(), 'pgtunnel-names-'));
  writeFileSync(path.join(dir, 'pgtunnel.yaml'), yaml);
  return loadConfig({ env: {}, cwd: dir });
}

test('a replication slot (one namespace per cluster) is named per database; a publication (per database) per table', () => {
  const table = { schema: 'public', name: 'Employees With A Very Long Name That Goes On And On' };
  const slots = ['db1', 'db2', 'db1 '].map((db) => slotName(table, db));
  assert.equal(new Set(slots).size, 3, 'two databases of one source cluster never share a slot');
  for (const name of [...slots, publicationName(table)]) {
    assert.match(name, /^[a-z0-9_]+$/);
    assert.ok(Buffer.byteLength(name) <= 63, name);
  }
  assert.equal(slotName(table, 'db1'), slotName({ ...table }, 'db1'));
});
