import { createHash } from 'node:crypto';

/**
 * Every name and composite key pgtunnel builds from other names, in one place: table ids, topics,
 * registry subjects, capture objects, consumer group members, and the keys of in-memory maps.
 */

/** `schema.name`: a table's id in logs, metrics, pgtunnel.state and pgtunnel.captures. */
export function tableId(table: { schema: string; name: string }): string {
  return `${table.schema}.${table.name}`;
}

/**
 * The application_name of a table's producer session: a standby tells a pgtunnel leader from any other
 * session holding the producer lock by it.
 */
export function producerApplicationName(id: string): string {
  return `pgtunnel producer ${id}`;
}

/** `schema.changeTable`: a captured table's change table, as messages name it. */
export function changeTableId(table: { schema: string; changeTable: string }): string {
  return `${table.schema}.${table.changeTable}`;
}

/** The pgtunnel.migrations scope of one table's capture objects. */
export function captureScope(id: string): string {
  return `table:${id}`;
}

/** A table's topic: `<prefix>.<schema>.<table>` (Debezium's naming). */
export function tableTopic(topicPrefix: string, table: { schema: string; name: string }): string {
  return `${topicPrefix}.${tableId(table)}`;
}

/** A table topic's topic prefix, given the table it carries. */
export function topicPrefixOf(topic: string, table: { schema: string; name: string }): string {
  return topic.slice(0, topic.length - tableId(table).length - 1);
}

/** A table topic's dead-letter topic. */
export function dlqTopicOf(topic: string): string {
  return `${topic}.dlq`;
}

/** The table topic a dead-letter topic belongs to. */
export function topicOfDlq(dlqTopic: string): string {
  return dlqTopic.replace(/\.dlq$/, '');
}

/** The registry subjects of a topic's key and value schemas (Confluent's TopicNameStrategy). */
export function keySubject(topic: string): string {
  return `${topic}-key`;
}

export function valueSubject(topic: string): string {
  return `${topic}-value`;
}

/** The change table a captured table gets unless configured: `emp_cdc` for the seed's employees, else `<table>_cdc`. */
export function defaultChangeTable(table: string): string {
  if (table === 'employees') return 'emp_cdc';
  if (Buffer.byteLength(table) <= 59) return `${table}_cdc`;
  // a long name keeps a readable head and a hash of the whole name, so two long names never collide
  return `${Buffer.from(table).subarray(0, 46).toString().replace(/\uFFFD$/, '')}_${createHash('sha256').update(table).digest('hex').slice(0, 8)}_cdc`;
}

/**
 * Capture functions live in the pgtunnel schema under a name that stays distinct within PostgreSQL's
 * 63-byte limit for any table name: a readable head and a hash of the whole table id.
 */
export function functionPrefix(table: { schema: string; name: string }): string {
  const head = Buffer.from(table.name.replace(/[^A-Za-z0-9_]/g, '')).subarray(0, 32).toString();
  return `${head}_${createHash('sha256').update(tableId(table)).digest('hex').slice(0, 12)}`;
}

/** The topic prefix unless configured. */
export const defaultTopicPrefix = 'pgtunnel';

/** Debezium's transaction metadata topic: BEGIN and END of each source transaction. */
export function transactionTopic(topicPrefix: string): string {
  return `${topicPrefix}.transaction`;
}

/** Debezium's heartbeat topic (`__debezium-heartbeat.<prefix>` there): a record per idle table, keyed by table. */
export function heartbeatTopic(topicPrefix: string): string {
  return `${topicPrefix}.heartbeat`;
}

/** The compacted topic of the producers' committed positions (exactly-once), keyed by table id. */
export function positionsTopic(topicPrefix: string): string {
  return `${topicPrefix}.positions`;
}

/** The Kafka client id of a table's transactional producer. */
export function tableProducerClientId(table: string): string {
  return `pgtunnel-producer ${table}`;
}

/** A table's Kafka transactional id (exactly-once): the one publisher of the table fences its predecessor by it. */
export function transactionalId(tableTopic: string): string {
  return `pgtunnel-producer:${tableTopic}`;
}

/** Kafka client ids, one per part, so a broker's logs and quotas tell them apart (readers use them as group ids too). */
export const clientIds = {
  producer: 'pgtunnel-producer',
  apply: 'pgtunnel-apply',
  admin: 'pgtunnel-admin',
  offsets: 'pgtunnel-offsets',
  reader: 'pgtunnel-reader',
  positions: 'pgtunnel-positions',
  status: 'pgtunnel-status',
  once: 'pgtunnel-once',
  replay: 'pgtunnel-replay',
  dlqReader: 'pgtunnel-dlq-reader',
  stack: 'pgtunnel-stack',
  demoPoisoner: 'pgtunnel-demo-poisoner',
} as const;

/** A group of its own for a one-off reader that never commits: the client id and something unique. */
export function oneOffGroupId(clientId: string, unique: string): string {
  return `${clientId}-${unique}`;
}

/** PostgreSQL application_name of pgtunnel's sessions, as pg_stat_activity shows them. */
export const applicationNames = {
  default: 'pgtunnel',
  apply: 'pgtunnel apply',
  once: 'pgtunnel once',
  status: 'pgtunnel-status',
} as const;

/**
 * Advisory locks: the key is hashtext(name), and hashtext(what is held) as the second key where there is
 * one (a table id, a group slot). Running versions of pgtunnel must agree on them: never rename one.
 */
export const lockNames = {
  /** install and migrations of a database */
  migrate: 'pgtunnel.migrate',
  /** a table's publisher, with the table id */
  producer: 'pgtunnel.producer',
  /** the reader of a source's shared replication slot, with the slot name */
  sourceSlot: 'pgtunnel.source-slot',
  /** a consumer's group slot, with groupSlotLock */
  consumer: 'pgtunnel.consumer',
  /** the one transactional applier of a group (apply: transactional), with the group id */
  transactionalApply: 'pgtunnel.apply-transactional',
  /** one `dlq replay` or `dlq discard` per target */
  dlqReplay: 'pgtunnel.dlq-replay',
} as const;

/** The consumer group of a topic prefix unless configured. */
export function defaultGroupId(topicPrefix: string): string {
  return `${topicPrefix}-apply`;
}

/** A consumer's static membership id in its group, slot n (src/pipeline/groupMembership.ts). */
export function groupInstanceId(groupId: string, slot: number): string {
  return `${groupId}-${slot}`;
}

/** The advisory-lock name that holds slot n of a group. */
export function groupSlotLock(groupId: string, slot: number): string {
  return `${groupId}/${slot}`;
}

/** A map key of several parts (topic and partition, topic and key, …): NUL never occurs in any part. */
export function compositeKey(...parts: (string | number | bigint)[]): string {
  return parts.join('\u0000');
}

/** A partition's id in maps: topic and partition number. */
export function partitionId(topic: string, partition: number): string {
  return compositeKey(topic, partition);
}

/** A parked key's id: topic and canonical key (split again by keyParts). */
export function keyId(topic: string, key: string): string {
  return compositeKey(topic, key);
}

/** The parts of a compositeKey. */
export function keyParts(key: string): string[] {
  return key.split('\u0000');
}

/** [a-z0-9_] only (what slot names allow), within 63 bytes: a readable head of the table id and a hash of `scope`. */
function captureObjectName(table: { schema: string; name: string }, scope: string): string {
  const head = tableId(table).toLowerCase().replace(/[^a-z0-9_]/g, '_').slice(0, 30);
  return `pgtunnel_${head}_${createHash('sha256').update(scope).digest('hex').slice(0, 12)}`;
}

/**
 * Logical capture's replication slot of a table. Slots belong to the whole cluster, publications to one
 * database: the slot's hash covers the database too, so two databases of one source never share a slot.
 */
export function slotName(table: { schema: string; name: string }, database: string): string {
  return captureObjectName(table, `${database}\u0000${tableId(table)}`);
}

export function publicationName(table: { schema: string; name: string }): string {
  return captureObjectName(table, tableId(table));
}

/**
 * The one slot of a source's logically captured tables (issue 22), per database and tunnel instance (its
 * topic prefix): two tunnels on one source each read their own slot; their tables never mix.
 */
export function sourceSlotName(database: string, instance: string): string {
  return `pgtunnel_source_${createHash('sha256').update(`${database}\u0000${instance}`).digest('hex').slice(0, 16)}`;
}

/** The temporary slot whose exported snapshot a table of the shared slot is read in: one per table and process at a time. */
export function joinSlotName(sharedSlot: string, table: { schema: string; name: string }, pid: number): string {
  return `${sharedSlot}_j${createHash('sha256').update(tableId(table)).digest('hex').slice(0, 8)}_${pid}`;
}

/** The publication of a source's shared slot: its tables are added and removed by ALTER PUBLICATION. */
export function sourcePublicationName(instance: string): string {
  return `pgtunnel_source_${createHash('sha256').update(instance).digest('hex').slice(0, 16)}`;
}
