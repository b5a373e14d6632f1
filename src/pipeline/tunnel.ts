import type { TableConfig, TunnelConfig } from '../config/load.js';
import { describeTable, type TableShape } from '../capture/catalog.js';
import { installCapture, installTarget, pendingCapture } from '../capture/install.js';
import { tableId } from '../names.js';
import { migrationsReadable, pendingMigrations, readMigrations } from '../capture/migrations.js';
import { applyNeeds, installerNeeds, producerNeeds, requirePrivileges } from './privileges.js';
import { TableStatements } from '../apply/statements.js';
import type { TableApply } from '../apply/targetWriter.js';
import { compileRules, type CompiledRule } from '../validate/rules.js';
import { qualified, withClient } from '../pg.js';
import { addTargetColumns, createTargetTable, followSourceTypes } from '../apply/targetSchema.js';
import { capturedColumns } from '../capture/changeReader.js';
import type pg from 'pg';
import { EnvelopeProducer, ensureTopics } from '../transport/kafka.js';
import { checkPartitions } from '../transport/topicPartitions.js';
import type { Logger } from '../observe/log.js';
import { Health } from '../observe/health.js';
import { ObserveServer } from '../observe/server.js';
import type { Phase } from '../capture/stateStore.js';
import { ApplyConsumer } from './applyConsumer.js';
import { CaptureProducer } from './captureProducer.js';
import { SchemaRegistry } from '../contracts/registry.js';
import { sleep } from './retry.js';

const shutdownGraceMs = 3500;

export interface PreparedTable {
  config: TableConfig;
  source: TableShape;
  target: TableShape;
  /** The table's rules, compiled against the target's column types when the tunnel is prepared. */
  rules: CompiledRule[];
}

export function tableApply(t: PreparedTable, config?: TunnelConfig, log?: Logger): TableApply {
  return {
    table: tableId(t.config),
    statements: new TableStatements(t.target),
    evolve: config && t.config.autoCreate ? (target: pg.Client, columns: string[]) => evolveTarget(config, t, target, columns, log) : undefined,
    truncateRecorded: config ? genuineTruncates(config, t) : undefined,
    followTypes: config && t.config.autoCreate ? (target: pg.Client) => followTypes(config, t, target, log) : undefined,
    rules: t.rules,
    onMissingKey: t.config.onMissingKey,
    orderPolicy: t.config.orderPolicy,
    format: t.config.format ?? config?.format,
  };
}

/** A source column the target lacks is added to it (autoCreate), in the apply transaction of `target`. */
async function evolveTarget(config: TunnelConfig, t: PreparedTable, target: pg.Client, columns: string[], log?: Logger): Promise<TableShape> {
  const added = await withClient(config.sourceUrl, 'source', (source) => addTargetColumns(source, target, t.config.schema, t.config.name, columns.filter((c) => !t.config.exclude.includes(c))));
  if (added.length > 0) log?.info({ table: tableId(t.config), columns: added }, 'source columns added to the target table');
  return describeTable(target, { ...t.config, key: t.source.key }, 'target');
}

/**
 * A truncate envelope is genuine when the source's capture of the table recorded its change id. It comes
 * once per partition, so a genuine one is remembered.
 */
function genuineTruncates(config: TunnelConfig, t: PreparedTable): (txid: string | null, changeId: string | null) => Promise<boolean> {
  const genuine = new Set<string>();
  return async (txid, changeId) => {
    if (txid === null || changeId === null || !/^\d{1,19}$/.test(changeId) || !/^\d{1,20}$/.test(txid)) return false;
    const id = `${txid}/${changeId}`;
    if (genuine.has(id)) return true;
    const ok = await withClient(config.sourceUrl, 'source', async (source) => {
      const { rows } = await source.query<{ ok: boolean }>(
        'SELECT EXISTS (SELECT 1 FROM pgtunnel.truncates WHERE table_id = $1 AND change_id = $2 AND txid = $3::xid8) AS ok',
        [tableId(t.config), changeId, txid],
      );
      return rows[0]?.ok === true;
    });
    if (ok && genuine.size < 1000) genuine.add(id);
    return ok;
  };
}

/** Target column types follow type changes on the source (autoCreate); undefined when none differs. */
async function followTypes(config: TunnelConfig, t: PreparedTable, target: pg.Client, log?: Logger): Promise<TableShape | undefined> {
  const changed = await withClient(config.sourceUrl, 'source', (source) => followSourceTypes(source, target, t.config.schema, t.config.name));
  if (changed.length === 0) return undefined;
  log?.info({ table: tableId(t.config), columns: changed }, 'target column types changed to follow the source');
  return describeTable(target, { ...t.config, key: t.source.key }, 'target');
}

/**
 * A missing target table is created from the source catalog (autoCreate), and captured source columns the
 * target lacks are added to it, before the snapshot; otherwise the target is left exactly as it is.
 */
async function prepareTarget(source: pg.Client, target: pg.Client, t: { config: TableConfig; source: TableShape }, log: Logger): Promise<void> {
  if (!t.config.autoCreate) return;
  const { rows } = await target.query<{ present: boolean }>('SELECT to_regclass($1) IS NOT NULL AS present', [qualified(t.config.schema, t.config.name)]);
  if (!rows[0]?.present) {
    await createTargetTable(source, target, t.config.schema, t.config.name, t.source.key, t.config.exclude);
    log.info({ table: tableId(t.config) }, 'target table created from the source catalog');
    return;
  }
  const shape = await describeTable(target, { ...t.config, key: t.source.key }, 'target');
  const captured = await capturedColumns(source, t.config, t.source.key);
  const missing = captured.columns.filter((c) => !shape.columns.includes(c));
  if (missing.length > 0) {
    await addTargetColumns(source, target, t.config.schema, t.config.name, missing);
    log.info({ table: tableId(t.config), columns: missing }, 'source columns added to the target table');
  }
}

async function hasPgtunnelSchema(client: pg.Client): Promise<boolean> {
  const { rows } = await client.query<{ ok: boolean }>("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'pgtunnel') AS ok");
  return rows[0]!.ok;
}

/**
 * Checks both databases and the broker, installs what is missing, and checks the connected roles hold what
 * the running tunnel needs (`installOnly`: the installer role need not be the runtime role).
 */
export async function prepare(config: TunnelConfig, logger: Logger, options: { installOnly?: boolean } = {}): Promise<PreparedTable[]> {
  const installAlternative = 'run `pgtunnel install` as the installer role, or ';
  const tables = await withClient(config.sourceUrl, 'source', async (source) => {
    // a role that cannot even read what is installed gets the whole list of what it lacks at once
    if (!(await migrationsReadable(source))) {
      if (options.installOnly) await requirePrivileges(source, 'source', 'installing capture', installerNeeds(config.tables, true), installAlternative);
      await requirePrivileges(source, 'source', 'the producer', producerNeeds(config.tables));
    }
    const out: { config: TableConfig; source: TableShape }[] = [];
    for (const table of config.tables) {
      const shape = await describeTable(source, table, 'source');
      const id = tableId(table);
      const pending = await pendingCapture(source, table);
      if (pending > 0) await requirePrivileges(source, 'source', `installing capture of ${id} (${pending} migrations)`, installerNeeds([table], await hasPgtunnelSchema(source)), installAlternative);
      const { applied, stale } = await installCapture(source, table, shape, options.installOnly);
      if (applied > 0) logger.info({ table: id, changeTable: table.changeTable, migrations: applied }, 'capture installed');
      if (stale.length > 0) logger.warn({ table: id, columns: stale }, `capture of ${id} does not follow the source's columns ${stale.join(', ')} yet and this role may not update it: run \`pgtunnel install\` as the installer role`);
      out.push({ config: table, source: shape });
    }
    if (!options.installOnly) await requirePrivileges(source, 'source', 'the producer', producerNeeds(config.tables));
    return out;
  });
  const prepared = await withClient(config.targetUrl, 'target', async (target) => {
    if (!(await migrationsReadable(target))) {
      if (options.installOnly) await requirePrivileges(target, 'target', "installing pgtunnel's target tables", installerNeeds([], true), installAlternative);
      await requirePrivileges(target, 'target', 'the consumer', applyNeeds(config.tables));
    }
    if ((await pendingMigrations(target, 'target', readMigrations('target'))).length > 0) {
      await requirePrivileges(target, 'target', "installing pgtunnel's target tables", installerNeeds([], await hasPgtunnelSchema(target)), installAlternative);
    }
    await installTarget(target);
    await withClient(config.sourceUrl, 'source', async (source) => {
      for (const t of tables) await prepareTarget(source, target, t, logger);
    });
    if (!options.installOnly) await requirePrivileges(target, 'target', 'the consumer', applyNeeds(config.tables));
    const out: PreparedTable[] = [];
    for (const t of tables) {
      // The target is written by the source's key, so the source's key (or the configured one) rules.
      const shape = await describeTable(target, { ...t.config, key: t.source.key }, 'target');
      // Rules are type-checked against the target's columns now: a bad rule stops the start, not a change.
      const rules = compileRules(t.config.rules, shape.types, tableId(t.config));
      out.push({ ...t, target: shape, rules });
    }
    return out;
  });
  for (const count of new Set(config.tables.map((t) => t.partitions))) {
    await ensureTopics(config, config.tables.filter((t) => t.partitions === count).flatMap((t) => [t.topic, t.dlqTopic]), count);
  }
  await checkPartitions(config, config.tables);
  return prepared;
}

/** The running tunnel: one capture producer per table and one apply consumer, until the signal aborts. */
export class Tunnel {
  private readonly phases = new Map<string, Phase>();

  constructor(
    private readonly config: TunnelConfig,
    private readonly tables: PreparedTable[],
    private readonly log: Logger,
    private readonly onPhase: (phase: Phase) => void = () => {},
  ) {}

  /** `streaming` once every table finished its snapshot. */
  get phase(): Phase {
    return [...this.phases.values()].every((p) => p === 'streaming') && this.phases.size === this.tables.length ? 'streaming' : 'snapshot';
  }

  async run(signal: AbortSignal, parts: { produce?: boolean; apply?: boolean } = {}): Promise<void> {
    const inner = new AbortController();
    const stop = () => inner.abort();
    signal.addEventListener('abort', stop, { once: true });
    const producer = new EnvelopeProducer(this.config, 'pgtunnel-producer');
    const role = parts.produce === false ? 'consumer' : parts.apply === false ? 'producer' : 'all';
    const health = new Health(this.config.home, role);
    const observe = new ObserveServer(this.config, health, this.log);
    if (this.config.httpPort !== 'off') await observe.start(this.config.httpHost, this.config.httpPort);
    const tasks: Promise<void>[] = [];
    const registry = this.config.registry ? new SchemaRegistry(this.config.registry, this.log) : undefined;
    if (parts.produce !== false) {
      for (const t of this.tables) {
        const id = tableId(t.config);
        const capture = new CaptureProducer(this.config, t.config, t.source, producer, this.log, health, (phase) => {
          const before = this.phase;
          this.phases.set(id, phase);
          if (this.phase !== before || this.phases.size === this.tables.length) this.onPhase(this.phase);
        }, registry);
        tasks.push(capture.run(inner.signal));
      }
    }
    if (parts.apply !== false) {
      const tables = new Map(this.tables.map((t) => [t.config.topic, tableApply(t, this.config, this.log)]));
      tasks.push(new ApplyConsumer(this.config, tables, producer, this.log, health, undefined, registry).run(inner.signal));
    }
    try {
      // A fatal error in one part stops the others: the tunnel never half-runs.
      await Promise.all(tasks.map((task) => task.catch((err) => { inner.abort(); throw err; })));
    } finally {
      signal.removeEventListener('abort', stop);
      inner.abort();
      // Work in flight finishes or is abandoned: everything resumes from the checkpoints, so a hung
      // broker call must not keep a stopping tunnel alive past its deadline.
      const settled = await Promise.race([Promise.allSettled(tasks).then(() => true), sleep(shutdownGraceMs).then(() => false)]);
      if (!settled) this.log.warn({ graceMs: shutdownGraceMs }, 'in-flight work abandoned at shutdown; it resumes from the checkpoint');
      await Promise.race([producer.close(), sleep(500)]);
      await observe.stop();
      health.close();
    }
  }
}
