import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import type { ZodIssue } from 'zod';
import { TunnelError } from '../errors.js';
import { changeTableId, defaultChangeTable, defaultGroupId, defaultTopicPrefix, dlqTopicOf, tableId, tableTopic } from '../names.js';
import { fileSchema, type FileConfig, type FilterCondition, type RuleSpec, type TableEntry } from './schema.js';
import { embeddedPassword, registryPassword, withPassword } from './secrets.js';
import { registerSecret } from '../redact.js';
import { kafkaSecurityEnv, resolveKafkaSecurity, type KafkaSecurity } from './kafkaSecurity.js';

export interface TableConfig {
  schema: string;
  name: string;
  /** Primary-key columns; undefined means "read them from the source catalog". */
  key?: string[];
  changeTable: string;
  topic: string;
  dlqTopic: string;
  rules: RuleSpec[];
  onMissingKey: 'upsert' | 'dead-letter';
  orderPolicy: 'park' | 'continue';
  /** This table's encoding; unset: the top-level format. */
  format?: 'json' | 'avro' | 'json-schema';
  exclude: string[];
  mask: Record<string, 'sha256'>;
  /** `full`: capture keeps each update's old row and the envelope carries it in `before`. */
  before: 'full' | 'none';
  /** Row filter: only rows meeting every condition are published (capture/rowFilter.ts). */
  filter: FilterCondition[];
  autoCreate: boolean;
  /** Partitions of the table's topic: created with them, and a start refuses a topic with another count. */
  partitions: number;
  /** This table's capture; unset: the top-level capture. */
  capture?: 'trigger' | 'logical';
  /** schema or name holds * or ?: expanded against the source catalog (src/config/tables.ts) */
  pattern: boolean;
}

/** Where the schema registry is and how to sign in to it. */
export interface RegistryAccess {
  url: string;
  username?: string;
  password?: string;
}

export interface TunnelConfig {
  sourceUrl: string;
  targetUrl: string;
  kafkaBrokers: string[];
  /** SASL and TLS of every Kafka client (kafkaSasl, kafkaTls); {} is plaintext. */
  kafkaSecurity: KafkaSecurity;
  /** True when no service was named: pgtunnel runs its own embedded stack. */
  embedded: boolean;
  home: string;
  tables: TableConfig[];
  topicPrefix: string;
  partitions: number;
  groupId: string;
  /** Kafka static membership of this process's consumer; undefined: a free slot claimed in the target. */
  groupInstanceId?: string;
  batchSize: number;
  snapshotChunkSize: number;
  pollIntervalMs: number;
  /** A heartbeat record per table idle this long (0: none). */
  heartbeatIntervalMs: number;
  /** Tables read again this often while running (0: only on SIGHUP). */
  tableCheckIntervalMs: number;
  /** Change-table guardrails: warn above this many waiting changes, or when the oldest waited longer. */
  changeTableWarnRows: number;
  changeTableWarnSeconds: number;
  exactlyOnce: boolean;
  /** The producer's record-batch compression. */
  kafkaCompression: 'lz4' | 'none';
  transactionMetadata: boolean;
  /** per-partition: each polled set in one target transaction; transactional: each source transaction whole, in order. */
  apply: 'per-partition' | 'transactional';
  transactionBufferBytes: number;
  /** Capture mode asked for; `install` falls back to trigger when the source cannot decode logically. */
  capture: 'trigger' | 'logical';
  /** `pgtunnel run`'s sides in worker threads (true), both on the main thread (false), or by the host's cores (auto: pipeline/threadChoice.ts). */
  threads: boolean | 'auto';
  httpPort: number | 'off';
  httpHost: string;
  /** Salt of masked columns; '' when no table masks a column. */
  maskSalt: string;
  httpToken?: string;
  httpAllowedHosts: string[];
  /** The schema registry, when one is configured (registryUrl, or `registry: embedded`). */
  registry?: RegistryAccess;
  /** `registry: embedded`: run the stack's Apicurio registry. */
  embeddedRegistry: boolean;
  format: 'json' | 'avro' | 'json-schema';
}

export const embeddedDefaults = {
  sourcePort: 5433,
  targetPort: 5434,
  kafkaPort: 9092,
  controllerPort: 9093,
  registryPort: 8081,
  registryManagementPort: 8082,
  sourceDb: 'db1',
  targetDb: 'db2',
} as const;

export const defaultSourceUrl = `postgres://postgres@127.0.0.1:${embeddedDefaults.sourcePort}/${embeddedDefaults.sourceDb}`;
export const defaultTargetUrl = `postgres://postgres@127.0.0.1:${embeddedDefaults.targetPort}/${embeddedDefaults.targetDb}`;
export const defaultBroker = `127.0.0.1:${embeddedDefaults.kafkaPort}`;
export const defaultRegistryUrl = `http://127.0.0.1:${embeddedDefaults.registryPort}/apis/ccompat/v7`;

const fixes: Record<string, string> = {
  sourceUrl: 'set PGTUNNEL_SOURCE_URL or sourceUrl to e.g. postgres://postgres@127.0.0.1:5433/db1',
  targetUrl: 'set PGTUNNEL_TARGET_URL or targetUrl to e.g. postgres://postgres@127.0.0.1:5434/db2',
  kafkaBrokers: 'set PGTUNNEL_KAFKA_BROKERS or kafkaBrokers to a comma-separated host:port list',
  tables: 'set PGTUNNEL_TABLES or tables to e.g. employees,public.orders',
  partitions: 'use a whole number of partitions between 1 and 1000',
  httpPort: 'use a port number (0 for any free port) or "off"',
};

/** The seed names the change table of `employees` `emp_cdc`; other tables get `<name>_cdc`. */

export const isPattern = (name: string) => /[*?]/.test(name);

export function resolveTable(entry: TableEntry, topicPrefix: string, autoCreate: boolean, partitions = 3): TableConfig {
  const spec: Exclude<TableEntry, string> & { schema: string } =
    typeof entry === 'string' ? splitName(entry) : { ...entry, schema: entry.schema ?? 'public' };
  const topic = tableTopic(topicPrefix, spec);
  return {
    schema: spec.schema,
    name: spec.name,
    key: spec.key,
    changeTable: spec.changeTable ?? defaultChangeTable(spec.name),
    topic,
    dlqTopic: dlqTopicOf(topic),
    rules: spec.rules ?? [],
    onMissingKey: spec.onMissingKey ?? 'upsert',
    orderPolicy: spec.orderPolicy ?? 'park',
    ...(spec.format ? { format: spec.format } : {}),
    exclude: spec.exclude ?? [],
    mask: spec.mask ?? {},
    before: spec.before ?? 'none',
    filter: spec.filter ?? [],
    autoCreate: spec.autoCreate ?? autoCreate,
    partitions: spec.partitions ?? partitions,
    ...(spec.capture ? { capture: spec.capture } : {}),
    pattern: isPattern(spec.schema) || isPattern(spec.name),
  };
}

function splitName(qualified: string): { schema: string; name: string } {
  const dot = qualified.indexOf('.');
  return dot < 0 ? { schema: 'public', name: qualified } : { schema: qualified.slice(0, dot), name: qualified.slice(dot + 1) };
}

function formatIssue(issue: ZodIssue, origin: string): string {
  const key = issue.path.join('.') || '(top level)';
  const topKey = String(issue.path[0] ?? '');
  let message = issue.message;
  if (issue.code === 'unrecognized_keys') {
    message = `unknown key(s) ${issue.keys.join(', ')}; known keys: ${Object.keys(fileSchema.shape).join(', ')}`;
  }
  const fix = fixes[topKey];
  return `${origin} ${key}: ${message}${fix ? ` — fix: ${fix}` : ''}`;
}

function readFileConfig(file: string, errors: string[]): unknown {
  try {
    const parsed: unknown = parseYaml(readFileSync(file, 'utf8'));
    return parsed ?? {};
  } catch (err) {
    errors.push(`${file}: cannot be read as YAML (${(err as Error).message.split('\n')[0]}) — fix: correct the file's syntax`);
    return {};
  }
}

function envConfig(env: NodeJS.ProcessEnv): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  if (env.PGTUNNEL_SOURCE_URL) out.sourceUrl = env.PGTUNNEL_SOURCE_URL;
  if (env.PGTUNNEL_TARGET_URL) out.targetUrl = env.PGTUNNEL_TARGET_URL;
  if (env.PGTUNNEL_KAFKA_BROKERS) out.kafkaBrokers = env.PGTUNNEL_KAFKA_BROKERS.split(',').map((s) => s.trim());
  if (env.PGTUNNEL_TABLES) out.tables = env.PGTUNNEL_TABLES.split(',').map((s) => s.trim()).filter(Boolean);
  if (env.PGTUNNEL_TOPIC_PREFIX) out.topicPrefix = env.PGTUNNEL_TOPIC_PREFIX;
  if (env.PGTUNNEL_GROUP_ID) out.groupId = env.PGTUNNEL_GROUP_ID;
  if (env.PGTUNNEL_GROUP_INSTANCE_ID) out.groupInstanceId = env.PGTUNNEL_GROUP_INSTANCE_ID;
  if (env.PGTUNNEL_HTTP_HOST) out.httpHost = env.PGTUNNEL_HTTP_HOST;
  if (env.PGTUNNEL_MASK_SALT) out.maskSalt = env.PGTUNNEL_MASK_SALT;
  if (env.PGTUNNEL_AUTO_CREATE) out.autoCreate = !/^(0|false|no|off)$/i.test(env.PGTUNNEL_AUTO_CREATE);
  if (env.PGTUNNEL_CAPTURE) out.capture = env.PGTUNNEL_CAPTURE;
  if (env.PGTUNNEL_THREADS) out.threads = /^auto$/i.test(env.PGTUNNEL_THREADS) ? 'auto' : !/^(0|false|no|off)$/i.test(env.PGTUNNEL_THREADS);
  if (env.PGTUNNEL_EXACTLY_ONCE) out.exactlyOnce = !/^(0|false|no|off)$/i.test(env.PGTUNNEL_EXACTLY_ONCE);
  if (env.PGTUNNEL_KAFKA_COMPRESSION) out.kafkaCompression = env.PGTUNNEL_KAFKA_COMPRESSION;
  if (env.PGTUNNEL_APPLY) out.apply = env.PGTUNNEL_APPLY;
  if (env.PGTUNNEL_TRANSACTION_METADATA) out.transactionMetadata = !/^(0|false|no|off)$/i.test(env.PGTUNNEL_TRANSACTION_METADATA);
  if (env.PGTUNNEL_HTTP_TOKEN) out.httpToken = env.PGTUNNEL_HTTP_TOKEN;
  for (const [name, key] of [['URL', 'registryUrl'], ['USERNAME', 'registryUsername'], ['PASSWORD', 'registryPassword'], ['PASSWORD_FILE', 'registryPasswordFile']] as const) {
    if (env[`PGTUNNEL_REGISTRY_${name}`]) out[key] = env[`PGTUNNEL_REGISTRY_${name}`];
  }
  if (env.PGTUNNEL_REGISTRY) out.registry = env.PGTUNNEL_REGISTRY;
  if (env.PGTUNNEL_FORMAT) out.format = env.PGTUNNEL_FORMAT;
  if (env.PGTUNNEL_HTTP_ALLOWED_HOSTS) out.httpAllowedHosts = env.PGTUNNEL_HTTP_ALLOWED_HOSTS.split(',').map((s) => s.trim()).filter(Boolean);
  Object.assign(out, kafkaSecurityEnv(env));
  for (const side of ['source', 'target'] as const) {
    const upper = side.toUpperCase();
    if (env[`PGTUNNEL_${upper}_PASSWORD`]) out[`${side}Password`] = env[`PGTUNNEL_${upper}_PASSWORD`];
    if (env[`PGTUNNEL_${upper}_PASSWORD_FILE`]) out[`${side}PasswordFile`] = env[`PGTUNNEL_${upper}_PASSWORD_FILE`];
  }
  for (const [name, key] of [
    ['PGTUNNEL_PARTITIONS', 'partitions'],
    ['PGTUNNEL_BATCH_SIZE', 'batchSize'],
    ['PGTUNNEL_SNAPSHOT_CHUNK_SIZE', 'snapshotChunkSize'],
    ['PGTUNNEL_POLL_INTERVAL_MS', 'pollIntervalMs'],
    ['PGTUNNEL_HEARTBEAT_INTERVAL_MS', 'heartbeatIntervalMs'],
    ['PGTUNNEL_TABLE_CHECK_INTERVAL_MS', 'tableCheckIntervalMs'],
    ['PGTUNNEL_CHANGE_TABLE_WARN_ROWS', 'changeTableWarnRows'],
    ['PGTUNNEL_CHANGE_TABLE_WARN_SECONDS', 'changeTableWarnSeconds'],
    ['PGTUNNEL_HTTP_PORT', 'httpPort'],
    ['PGTUNNEL_TRANSACTION_BUFFER_BYTES', 'transactionBufferBytes'],
  ] as const) {
    const raw = env[name];
    if (raw !== undefined && raw !== '') out[key] = /^\d+$/.test(raw) ? Number(raw) : raw;
  }
  return out;
}

/** What is wrong with one table's options, each with its fix. */
function tableProblems(t: TableConfig, maskSalt: string | undefined): string[] {
  const id = tableId(t);
  const out: string[] = [];
  if (t.pattern && t.changeTable !== defaultChangeTable(t.name)) out.push(`tables: the pattern ${id} cannot set one changeTable for many tables — fix: drop changeTable (each table gets <name>_cdc)`);
  if (t.changeTable === t.name) out.push(`tables: ${id} names itself as its change table — fix: set another changeTable`);
  const keyCols = new Set(t.key ?? []);
  for (const c of [...t.exclude, ...Object.keys(t.mask)]) {
    if (keyCols.has(c)) out.push(`tables: ${id} cannot exclude or mask its key column ${c} — fix: remove it from exclude/mask`);
  }
  for (const c of Object.keys(t.mask)) {
    if (t.exclude.includes(c)) out.push(`tables: ${id} both excludes and masks ${c} — fix: keep one`);
  }
  for (const f of t.filter) {
    if (t.exclude.includes(f.column)) out.push(`tables: ${id} filters on ${f.column}, which it excludes — fix: filter on a captured column`);
    if ((f.op === 'is null' || f.op === 'is not null') !== (f.value === undefined)) out.push(`tables: ${id} filter on ${f.column}: ${f.op} ${f.value === undefined ? 'needs a value' : 'takes no value'}`);
    if ((f.op === 'in' || f.op === 'not in') !== Array.isArray(f.value) && f.value !== undefined) out.push(`tables: ${id} filter on ${f.column}: ${f.op} ${Array.isArray(f.value) ? 'takes one value, not a list' : 'needs a list of values'}`);
  }
  // a moved-in row arrives as an update of a key the target lacks
  if (t.filter.length > 0 && t.onMissingKey === 'dead-letter') out.push(`tables: ${id} has a filter and onMissingKey: dead-letter — a row moving into the filter is an update of a key the target lacks; fix: onMissingKey: upsert`);
  if (Object.keys(t.mask).length > 0 && !maskSalt) out.push(`tables: ${id} masks columns but no maskSalt is set — fix: set maskSalt (or PGTUNNEL_MASK_SALT) to a secret of 16+ characters`);
  return out;
}

export interface LoadOptions {
  configFile?: string;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
}

/** Loads pgtunnel.yaml (if any) and PGTUNNEL_* variables; every problem is reported at once. */
export function loadConfig(options: LoadOptions = {}): TunnelConfig {
  const env = options.env ?? process.env;
  const cwd = options.cwd ?? process.cwd();
  const errors: string[] = [];
  const file = options.configFile ?? env.PGTUNNEL_CONFIG ?? (existsSync(path.join(cwd, 'pgtunnel.yaml')) ? 'pgtunnel.yaml' : undefined);
  let fromFile: unknown = {};
  if (file) {
    const full = path.resolve(cwd, file);
    if (!existsSync(full)) errors.push(`config file ${full} does not exist — fix: create it or drop --config`);
    else fromFile = readFileConfig(full, errors);
  }
  if (typeof fromFile !== 'object' || Array.isArray(fromFile)) {
    errors.push(`${file}: must be a mapping of keys (sourceUrl, targetUrl, kafkaBrokers, tables, …)`);
    fromFile = {};
  }
  const fileResult = fileSchema.safeParse(fromFile);
  if (!fileResult.success) errors.push(...fileResult.error.issues.map((i) => formatIssue(i, file ?? 'config')));
  const rawEnv = envConfig(env);
  const envResult = fileSchema.safeParse(rawEnv);
  if (!envResult.success) errors.push(...envResult.error.issues.map((i) => formatIssue(i, 'environment')));
  const fileData = fileResult.success ? fileResult.data : {};
  const merged: FileConfig = { ...fileData, ...(envResult.success ? envResult.data : {}) };
  // PGTUNNEL_TABLES picks tables; options written for the same table in the file (rules, key…) still apply.
  if (merged.tables && fileData.tables && merged.tables !== fileData.tables) {
    const byName = new Map(fileData.tables.filter((t) => typeof t !== 'string').map((t) => [tableId({ schema: t.schema ?? 'public', name: t.name }), t]));
    merged.tables = merged.tables.map((t) => (typeof t === 'string' ? byName.get(t.includes('.') ? t : `public.${t}`) ?? t : t));
  }

  // Counted on what was written, valid or not, so every problem shows in one report.
  const written = { ...(fromFile as Record<string, unknown>), ...rawEnv };
  const named = (['sourceUrl', 'targetUrl', 'kafkaBrokers'] as const).filter((k) => written[k] !== undefined).length;
  if (named > 0 && named < 3) {
    errors.push(
      'sourceUrl, targetUrl and kafkaBrokers must be given together (or none, for the embedded stack) — fix: set all three of PGTUNNEL_SOURCE_URL, PGTUNNEL_TARGET_URL, PGTUNNEL_KAFKA_BROKERS',
    );
  }
  const topicPrefix = merged.topicPrefix ?? defaultTopicPrefix;
  const tables = (merged.tables ?? ['employees']).map((t) => resolveTable(t, topicPrefix, merged.autoCreate ?? true, merged.partitions ?? 3));
  const seen = new Set<string>();
  for (const t of tables) {
    const id = tableId(t);
    if (seen.has(id)) errors.push(`tables: ${id} is listed twice — fix: list each table once`);
    seen.add(id);
    errors.push(...tableProblems(t, merged.maskSalt));
    // transaction metadata counts every captured change; a dropped insert would never arrive
    if ((merged.transactionMetadata ?? merged.apply === 'transactional') && t.filter.length > 0) errors.push(`tables: ${tableId(t)} has a filter, which transactionMetadata does not support yet (its counts would include dropped rows) — fix: drop one of them`);
    // Kafka refuses topic names over 249 characters: say so now.
    if (t.dlqTopic.length > 249) errors.push(`tables: the topic ${t.dlqTopic} is longer than 249 characters — fix: use a shorter topicPrefix or table name`);
  }
  const names = new Map(tables.map((t) => [tableId(t), t]));
  for (const t of tables) {
    const clash = names.get(changeTableId(t));
    if (clash && clash !== t) errors.push(`tables: the change table of ${tableId(t)} would be ${changeTableId(t)}, a captured table — fix: set another changeTable`);
  }
  const home = path.resolve(cwd, env.PGTUNNEL_HOME ?? '.pgtunnel');
  // the embedded stack's own password, so nobody types it
  const stackPassword = named === 0 ? embeddedPassword(home) : undefined;
  const sourceUrl = withPassword(merged.sourceUrl ?? defaultSourceUrl, 'source', { password: merged.sourcePassword, passwordFile: merged.sourcePasswordFile ?? (merged.sourcePassword ? undefined : stackPassword) }, cwd, errors);
  const targetUrl = withPassword(merged.targetUrl ?? defaultTargetUrl, 'target', { password: merged.targetPassword, passwordFile: merged.targetPasswordFile ?? (merged.targetPassword ? undefined : stackPassword) }, cwd, errors);
  const registryUrl = merged.registryUrl ?? (merged.registry === 'embedded' ? defaultRegistryUrl : undefined);
  const registry = registryUrl === undefined ? undefined : {
    url: registryUrl,
    username: merged.registryUsername,
    password: registryPassword({ password: merged.registryPassword, passwordFile: merged.registryPasswordFile }, cwd, errors),
  };
  const format = merged.format ?? (registry ? 'avro' : 'json');
  if (format !== 'json' && !registry) errors.push(`format: ${format} needs a schema registry — fix: set registryUrl (PGTUNNEL_REGISTRY_URL), or registry: embedded, or format: json`);
  for (const t of tables) if (t.format && t.format !== 'json' && !registry) errors.push(`tables: ${tableId(t)} has format ${t.format}, which needs a schema registry — fix: set registryUrl (PGTUNNEL_REGISTRY_URL), or registry: embedded`);
  errors.push(...transactionalProblems(merged, tables, format));
  const kafkaSecurity = resolveKafkaSecurity(fileData, envResult.success ? envResult.data : {}, cwd, errors);
  if (errors.length > 0) {
    throw new TunnelError('PGT_CONFIG', `invalid configuration:\n  - ${errors.join('\n  - ')}`, { errorClass: 'config' });
  }
  // the token and the salt are secrets like the passwords: hidden wherever they would be printed
  registerSecret(merged.httpToken);
  registerSecret(merged.maskSalt);
  const brokers = merged.kafkaBrokers;
  return {
    sourceUrl,
    targetUrl,
    kafkaBrokers: brokers === undefined ? [defaultBroker] : Array.isArray(brokers) ? brokers : [brokers],
    kafkaSecurity,
    embedded: named === 0,
    home,
    tables,
    topicPrefix,
    partitions: merged.partitions ?? 3,
    groupId: merged.groupId ?? defaultGroupId(topicPrefix),
    groupInstanceId: merged.groupInstanceId,
    batchSize: merged.batchSize ?? 2000,
    snapshotChunkSize: merged.snapshotChunkSize ?? 10_000,
    pollIntervalMs: merged.pollIntervalMs ?? 5,
    heartbeatIntervalMs: merged.heartbeatIntervalMs ?? 0,
    tableCheckIntervalMs: merged.tableCheckIntervalMs ?? 60_000,
    // a million rows or five minutes: far beyond a running producer's backlog, well before the source's disk fills
    changeTableWarnRows: merged.changeTableWarnRows ?? 1_000_000,
    changeTableWarnSeconds: merged.changeTableWarnSeconds ?? 300,
    // a transaction published twice (at-least-once after a crash) would be applied twice, out of order
    exactlyOnce: merged.exactlyOnce ?? merged.apply === 'transactional',
    kafkaCompression: merged.kafkaCompression ?? 'lz4',
    // transactional apply knows a transaction is complete from the metadata: on with it
    transactionMetadata: merged.transactionMetadata ?? merged.apply === 'transactional',
    apply: merged.apply ?? 'per-partition',
    transactionBufferBytes: merged.transactionBufferBytes ?? 64 * 1024 * 1024,
    capture: merged.capture ?? 'trigger',
    threads: merged.threads ?? 'auto',
    httpPort: merged.httpPort ?? 8080,
    httpHost: merged.httpHost ?? '127.0.0.1',
    maskSalt: merged.maskSalt ?? '',
    httpToken: merged.httpToken,
    httpAllowedHosts: merged.httpAllowedHosts ?? [],
    registry,
    embeddedRegistry: merged.registry === 'embedded',
    format,
  };
}

/** What `apply: transactional` needs: the transaction metadata, JSON topics and trigger capture. */
function transactionalProblems(merged: { apply?: string; transactionMetadata?: boolean; exactlyOnce?: boolean; capture?: string }, tables: { format?: string; capture?: string }[], format: string): string[] {
  if (merged.apply !== 'transactional') return [];
  const out: string[] = [];
  if (merged.transactionMetadata === false) out.push('apply: transactional needs transactionMetadata (its END events say when a transaction is complete) — fix: remove transactionMetadata: false');
  if (merged.exactlyOnce === false) out.push('apply: transactional needs exactlyOnce (a transaction the producer published twice after a crash would be applied twice, out of order) — fix: remove exactlyOnce: false');
  if (format !== 'json' || tables.some((t) => t.format !== undefined && t.format !== 'json')) out.push('apply: transactional reads JSON topics only for now — fix: format: json, or apply: per-partition');
  if (merged.capture === 'logical' || tables.some((t) => t.capture === 'logical')) out.push('apply: transactional runs with trigger capture only for now — fix: capture: trigger, or apply: per-partition');
  return out;
}
