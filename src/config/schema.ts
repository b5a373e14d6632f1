import { z } from 'zod';

const identifier = z.string().regex(/^[A-Za-z_][A-Za-z0-9_$]{0,62}$/, 'must be a plain SQL identifier (letters, digits, _)');

const postgresUrl = z
  .string()
  .regex(/^postgres(ql)?:\/\/[^\s]+$/, 'must be a URL like postgres://user@host:5432/dbname');

const broker = z.string().regex(/^[^\s:,]+:\d{1,5}$/, 'must be host:port, e.g. 127.0.0.1:9092');

/** A table as written by a user: `employees`, `public.employees`, or an object with options. */
export const tableEntrySchema = z.union([
  z.string().regex(/^([A-Za-z_][A-Za-z0-9_$]*\.)?[A-Za-z_][A-Za-z0-9_$]*$/, 'must be a table name like employees or public.employees'),
  z
    .object({
      name: identifier,
      schema: identifier.optional(),
      key: z.array(identifier).min(1).optional(),
      changeTable: identifier.optional(),
    })
    .strict(),
]);

/** The keys of pgtunnel.yaml; PGTUNNEL_* environment variables override the same keys. */
export const fileSchema = z
  .object({
    sourceUrl: postgresUrl.optional(),
    targetUrl: postgresUrl.optional(),
    kafkaBrokers: z.union([broker, z.array(broker).min(1)]).optional(),
    tables: z.array(tableEntrySchema).min(1).optional(),
    topicPrefix: z.string().regex(/^[A-Za-z0-9._-]+$/, 'may hold letters, digits, ".", "_" and "-"').optional(),
    partitions: z.number().int().min(1).max(1000).optional(),
    groupId: z.string().min(1).optional(),
    batchSize: z.number().int().min(1).max(100_000).optional(),
    snapshotChunkSize: z.number().int().min(1).max(1_000_000).optional(),
    pollIntervalMs: z.number().int().min(1).max(10_000).optional(),
  })
  .strict();

export type FileConfig = z.infer<typeof fileSchema>;
export type TableEntry = z.infer<typeof tableEntrySchema>;
