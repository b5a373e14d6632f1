import type { Command } from 'commander';
import { resolveTable, type TunnelConfig } from '../config/load.js';
import { SchemaRegistry, type RegisteredSchema } from '../contracts/registry.js';
import { exitCodes, TunnelError } from '../errors.js';
import { keySubject, tableId, valueSubject } from '../names.js';
import { config, failure, log, type GlobalOptions } from './context.js';

interface SubjectReport {
  subject: string;
  compatibility: string;
  versions: number[];
  latest: RegisteredSchema;
}

export interface SchemaReport {
  table: string;
  topic: string;
  registry: string;
  /** null when the subject is not registered. */
  key: SubjectReport | null;
  value: SubjectReport | null;
}

export function registerSchema(program: Command): void {
  const schema = program.command('schema').description("the schemas of a table's topic in the schema registry");
  schema
    .command('show')
    .description('the <topic>-key and <topic>-value subjects of a table: versions, the latest schema, its id and the compatibility level')
    .argument('<table>', 'a table, as in tables: employees or public.orders')
    .option('--json', 'print the report as JSON (the schemas as parsed objects)')
    .addHelpText('after', '\nExamples:\n  pgtunnel schema show employees\n  PGTUNNEL_REGISTRY_URL=http://127.0.0.1:8081/apis/ccompat/v7 pgtunnel schema show public.orders --json')
    .action(async (table: string, options: { json?: boolean }, command: Command) => {
      try {
        const report = await schemaReport(config(command.optsWithGlobals<GlobalOptions>()), table);
        process.stdout.write(options.json ? `${JSON.stringify(jsonReport(report), null, 2)}\n` : formatReport(report));
        process.exitCode = exitCodes.ok;
      } catch (err) {
        process.exitCode = failure(err);
      }
    });
}

export async function schemaReport(cfg: TunnelConfig, table: string): Promise<SchemaReport> {
  if (!cfg.registry) {
    throw new TunnelError('PGT_CONFIG', 'no schema registry is configured', {
      errorClass: 'config',
      hint: 'set registryUrl (PGTUNNEL_REGISTRY_URL) to the registry the tunnel registers its schemas in, or registry: embedded',
    });
  }
  const name = table.includes('.') ? table : `public.${table}`;
  const t = cfg.tables.find((c) => tableId(c) === name) ?? resolveTable(name, cfg.topicPrefix, true);
  const registry = new SchemaRegistry(cfg.registry, log);
  const subject = async (s: string): Promise<SubjectReport | null> => {
    const latest = await registry.latest(s);
    if (!latest) return null;
    const [versions, compatibility] = await Promise.all([registry.versions(s), registry.compatibility(s)]);
    return { subject: s, compatibility, versions, latest };
  };
  const [key, value] = await Promise.all([subject(keySubject(t.topic)), subject(valueSubject(t.topic))]);
  if (!key && !value) {
    throw new TunnelError('PGT_SCHEMA_NOT_REGISTERED', `the registry at ${registry.url} has no subject ${t.topic}-key or ${t.topic}-value`, {
      errorClass: 'fatal',
      hint: `run the tunnel for ${name} with format: avro or json-schema (PGTUNNEL_FORMAT) and this registryUrl: it registers both subjects at start; check topicPrefix (now ${cfg.topicPrefix})`,
    });
  }
  return { table: name, topic: t.topic, registry: registry.url, key, value };
}

function pretty(schema: string): string {
  try {
    return JSON.stringify(JSON.parse(schema), null, 2);
  } catch {
    return schema;
  }
}

function formatReport(r: SchemaReport): string {
  const lines = [`${r.table}  topic ${r.topic}  registry ${r.registry}`];
  for (const [part, s] of [['key', r.key], ['value', r.value]] as const) {
    lines.push('');
    if (!s) {
      lines.push(`${r.topic}-${part}: not registered`);
      continue;
    }
    lines.push(`${s.subject}  compatibility ${s.compatibility}  versions ${s.versions.join(', ')}`);
    lines.push(`latest: version ${s.latest.version}, id ${s.latest.id}, ${s.latest.schemaType}`);
    lines.push(pretty(s.latest.schema));
  }
  return `${lines.join('\n')}\n`;
}

/** The --json shape: schemas as objects, so `jq` reaches into them. */
function jsonReport(r: SchemaReport): unknown {
  const subject = (s: SubjectReport | null) => {
    if (!s) return null;
    let schema: unknown = s.latest.schema;
    try {
      schema = JSON.parse(s.latest.schema);
    } catch {
      // not JSON text (Protobuf): kept as the registry's text
    }
    return { subject: s.subject, compatibility: s.compatibility, versions: s.versions, latest: { ...s.latest, schema } };
  };
  return { table: r.table, topic: r.topic, registry: r.registry, key: subject(r.key), value: subject(r.value) };
}
