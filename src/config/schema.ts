import { isIP } from 'node:net';
import { z } from 'zod';
import { regexProblem } from './ruleRegex.js';

const identifier = z.string().regex(/^[A-Za-z_][A-Za-z0-9_$]{0,62}$/, 'must be a plain SQL identifier (letters, digits, _)');

const postgresUrl = z
  .string()
  .regex(/^postgres(ql)?:\/\/[^\s]+$/, 'must be a URL like postgres://user@host:5432/dbname')
  // The path is the database; without one, pg would silently use the user name as the database name.
  .regex(/^[^:]+:\/\/[^\s/]*\/[^\s/?#]+/, 'names no database: write it as postgres://user@host:5432/dbname');

/** A host name (RFC 1123) or an IP address, without port or scheme. */
export const hostName = z
  .string()
  .refine((h) => isIP(h) !== 0 || (h.length <= 253 && /^(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*$/.test(h)), 'must be a host name or an IP address, e.g. 127.0.0.1, ::1 or dashboard.internal');

/** Kafka SASL; env and file are merged key by key, so completeness is checked after merging (kafkaSecurity.ts). */
const kafkaSaslSchema = z
  .object({
    mechanism: z.enum(['PLAIN', 'SCRAM-SHA-256', 'SCRAM-SHA-512']).optional(),
    username: z.string().min(1).optional(),
    password: z.string().min(1).optional(),
    passwordFile: z.string().min(1).optional(),
  })
  .strict();

/** Kafka TLS: PEM file paths; with none of them, TLS against the system's CAs. */
const kafkaTlsSchema = z
  .object({
    ca: z.string().min(1).optional(),
    cert: z.string().min(1).optional(),
    key: z.string().min(1).optional(),
    /** The name the broker's certificate must carry, when not the host of kafkaBrokers. */
    serverName: hostName.optional(),
  })
  .strict();

const broker = z.string().regex(/^[^\s:,]+:\d{1,5}$/, 'must be host:port, e.g. 127.0.0.1:9092');

/** A name, or a glob pattern (`*` any run, `?` one character) matched against the source catalog. */
const namePattern = z.string().regex(/^[A-Za-z_*?][A-Za-z0-9_$*?]{0,62}$/, 'must be a plain SQL identifier, or a pattern of letters, digits, _, * and ?');

export const ruleOperators = ['<', '<=', '>', '>=', '=', '!=', 'in', 'not in', 'is null', 'is not null', 'matches'] as const;

/** A validation rule: the named column must satisfy `op value`, or the change becomes a dead letter. */
export const ruleSchema = z
  .object({
    name: z.string().regex(/^[A-Za-z0-9_.-]+$/, 'may hold letters, digits, ".", "_" and "-"'),
    column: identifier,
    op: z.enum(ruleOperators),
    value: z.union([z.string(), z.number(), z.boolean(), z.array(z.union([z.string(), z.number()]))]).optional(),
  })
  .strict()
  .superRefine((rule, ctx) => {
    const problem = rule.op === 'matches' && typeof rule.value === 'string' ? regexProblem(rule.value) : undefined;
    if (problem) ctx.addIssue({ code: 'custom', path: ['value'], message: `${problem} (RE2 syntax: no backreferences or lookaround)` });
  });

export type RuleSpec = z.infer<typeof ruleSchema>;

/** A row filter's condition, in the rules' terms: rows for which every condition holds are published. */
export const filterConditionSchema = z
  .object({
    column: identifier,
    op: z.enum(['<', '<=', '>', '>=', '=', '!=', 'in', 'not in', 'is null', 'is not null']),
    value: z.union([z.string(), z.number(), z.boolean(), z.array(z.union([z.string(), z.number()]))]).optional(),
  })
  .strict();

export type FilterCondition = z.infer<typeof filterConditionSchema>;

/** A table as written by a user: `employees`, `public.employees`, or an object with options. */
export const tableEntrySchema = z.union([
  z
    .string()
    .regex(/^([A-Za-z_*?][A-Za-z0-9_$*?]*\.)?[A-Za-z_*?][A-Za-z0-9_$*?]*$/, 'must be a table name like employees, public.employees, or a pattern like shop.* or public.order_*')
    .refine((t) => t.split('.').every((part) => part.length <= 63), 'a schema or table name longer than 63 bytes is cut short by PostgreSQL'),
  z
    .object({
      /** a table name, or a pattern with * and ? */
      name: namePattern,
      schema: namePattern.optional(),
      key: z.array(identifier).min(1).optional(),
      changeTable: identifier.optional(),
      rules: z.array(ruleSchema).optional(),
      /** An update of a key the target does not have: insert it (upsert) or make it a dead letter. */
      onMissingKey: z.enum(['upsert', 'dead-letter']).optional(),
      /** After a key's dead letter: park its later changes behind it (park) or apply them (continue). */
      orderPolicy: z.enum(['park', 'continue']).optional(),
      /** This table's encoding, over the top-level format. */
      format: z.enum(['json', 'avro', 'json-schema']).optional(),
      /** Columns never captured: not in the change table, never read, never in Kafka. */
      exclude: z.array(identifier).optional(),
      /** Columns published as a salted hash of their value (maskSalt) instead of the value. */
      mask: z.record(identifier, z.literal('sha256')).optional(),
      /** `full`: updates carry the old row in `before` (as Debezium with REPLICA IDENTITY FULL); default none. */
      before: z.enum(['full', 'none']).optional(),
      /** Rows to publish: every condition must hold (evaluated at capture on the new row); others never reach Kafka. */
      filter: z.array(filterConditionSchema).min(1).optional(),
      /** Create the target table from the source catalog when it is missing, and add new source columns. */
      autoCreate: z.boolean().optional(),
      /** Partitions of this table's topic (default: partitions); change an existing topic's with `pgtunnel topic partitions`. */
      partitions: z.number().int().min(1).max(1000).optional(),
      /** This table's capture, over the top-level capture: one table switches mode while the others stay. */
      capture: z.enum(['trigger', 'logical']).optional(),
    })
    .strict(),
]);

/** The keys of pgtunnel.yaml; PGTUNNEL_* environment variables override the same keys. */
export const fileSchema = z
  .object({
    sourceUrl: postgresUrl.optional(),
    targetUrl: postgresUrl.optional(),
    kafkaBrokers: z.union([broker, z.array(broker).min(1)]).optional(),
    kafkaSasl: kafkaSaslSchema.optional(),
    /** true: TLS with the system's CAs; an object: CA, client certificate and key files. */
    kafkaTls: z.union([z.boolean(), kafkaTlsSchema]).optional(),
    tables: z.array(tableEntrySchema).min(1).optional(),
    topicPrefix: z.string().regex(/^[A-Za-z0-9._-]+$/, 'may hold letters, digits, ".", "_" and "-"').optional(),
    partitions: z.number().int().min(1).max(1000).optional(),
    groupId: z.string().min(1).optional(),
    /** Kafka static membership of this process's consumer; unique per process. Default: a free slot `<groupId>-<n>`. */
    groupInstanceId: z.string().regex(/^\S+$/, 'may not hold spaces').optional(),
    batchSize: z.number().int().min(1).max(100_000).optional(),
    snapshotChunkSize: z.number().int().min(1).max(1_000_000).optional(),
    pollIntervalMs: z.number().int().min(1).max(10_000).optional(),
    /** Debezium's heartbeats: a record on `<prefix>.heartbeat` for each table idle this long; 0 (default) sends none. */
    /** How often a running tunnel reads its tables again (patterns against the catalog); 0: only on SIGHUP. */
    tableCheckIntervalMs: z.union([z.literal(0), z.number().int().min(1000).max(86_400_000)]).optional(),
    heartbeatIntervalMs: z.union([z.literal(0), z.number().int().min(1000).max(3_600_000)]).optional(),
    /** A warning (once per crossing) when a change table holds more unpublished changes than this, or its oldest is older. */
    changeTableWarnRows: z.number().int().min(1).optional(),
    changeTableWarnSeconds: z.number().int().min(1).optional(),
    /** Each batch and its position commit in one Kafka transaction (no envelope published twice). */
    exactlyOnce: z.boolean().optional(),
    /** How the producer compresses its record batches: lz4 (default) or none. */
    kafkaCompression: z.enum(['lz4', 'none']).optional(),
    /** Debezium's transaction metadata: BEGIN/END on `<prefix>.transaction`, a `transaction` block in each envelope. */
    transactionMetadata: z.boolean().optional(),
    /** How the consumer applies: per polled set of partitions (default), or whole source transactions in commit order. */
    apply: z.enum(['per-partition', 'transactional']).optional(),
    /** transactional apply: bytes of incomplete transactions held in memory before they spill to the target. */
    transactionBufferBytes: z.number().int().min(1024).optional(),
    /** How changes leave the source: triggers writing change tables, or logical decoding (pgoutput, needs wal_level=logical). */
    capture: z.enum(['trigger', 'logical']).optional(),
    /** `pgtunnel run`: producer and consumer sides each in a worker thread (true), both on the main thread (false), or by the host's cores (auto, the default). */
    threads: z.union([z.boolean(), z.literal('auto')]).optional(),
    /** Dashboard, /metrics, /health and /ready; 0 picks a free port, "off" serves nothing. */
    httpPort: z.union([z.number().int().min(0).max(65535), z.literal('off')]).optional(),
    httpHost: hostName.optional(),
    /** When set, the dashboard and /api/* answer only with it (Authorization: Bearer, or ?token=). */
    httpToken: z.string().min(16, 'must be at least 16 characters (e.g. openssl rand -hex 16)').optional(),
    /** Host names the dashboard may be reached by, beside localhost, 127.0.0.1, [::1] and httpHost. */
    httpAllowedHosts: z.array(hostName).optional(),
    /** Passwords kept out of the URLs: given directly or as a file holding only the password. */
    sourcePassword: z.string().min(1).optional(),
    sourcePasswordFile: z.string().min(1).optional(),
    targetPassword: z.string().min(1).optional(),
    targetPasswordFile: z.string().min(1).optional(),
    /** Default of every table's autoCreate. */
    autoCreate: z.boolean().optional(),
    /** A Confluent-compatible schema registry (Confluent, Apicurio's /apis/ccompat/v7, Karapace, Redpanda). */
    registryUrl: z.string().url().regex(/^https?:\/\//, 'must be an http(s) URL, e.g. http://127.0.0.1:8081/apis/ccompat/v7').optional(),
    registryUsername: z.string().min(1).optional(),
    registryPassword: z.string().min(1).optional(),
    registryPasswordFile: z.string().min(1).optional(),
    /** `embedded`: run the stack's Apicurio registry (stack up --registry); registryUrl then defaults to it. */
    registry: z.literal('embedded').optional(),
    /** The encoding of the topics: avro and json-schema need a registry. */
    format: z.enum(['json', 'avro', 'json-schema']).optional(),
    /** The salt of masked columns (mask: {col: sha256}); keep it secret, or hashes of guessable values can be reversed. */
    maskSalt: z.string().min(16, 'must be at least 16 characters').optional(),
  })
  .strict();

export type FileConfig = z.infer<typeof fileSchema>;
export type TableEntry = z.infer<typeof tableEntrySchema>;
