import type pg from 'pg';
import type { TableConfig, TunnelConfig } from '../config/load.js';
import { describeTable, type TableShape } from '../capture/catalog.js';
import { installCapture, installTarget, pendingCapture } from '../capture/install.js';
import { chooseCapture, dropSlotAndPublication, installLogical, requireReplication, type CaptureChoice } from '../capture/logicalInstall.js';
import { installShared, leaveShared } from '../capture/sharedSlot.js';
import { markSwitchToTrigger, pinSwitchToLogical, setTriggerBoundary } from '../capture/captureSwitch.js';
import { switchToTriggerState } from '../capture/stateStore.js';
import { migrationsReadable, pendingMigrations, readMigrations } from '../capture/migrations.js';
import { capturedColumns } from '../capture/changeReader.js';
import { addTargetColumns, createTargetTable } from '../apply/targetSchema.js';
import type { PreparedTable } from '../apply/tableApply.js';
import { compileRules } from '../validate/rules.js';
import { ensureTopics } from '../transport/kafka.js';
import { checkPartitions } from '../transport/topicPartitions.js';
import type { Logger } from '../instruments/log.js';
import { heartbeatTopic, tableId, transactionTopic } from '../names.js';
import { setTransactionCounting } from '../capture/transactions.js';
import { setBeforeImages } from '../capture/beforeImages.js';
import { qualified, withClient } from '../pg.js';
import { applyNeeds, installerNeeds, producerNeeds, requirePrivileges, requireWritable } from './privileges.js';
import { defaultTableGrants } from './defaultPrivileges.js';

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
export async function prepare(config: TunnelConfig, logger: Logger, options: { installOnly?: boolean } = {}): Promise<(PreparedTable & { capture: CaptureChoice })[]> {
  const installAlternative = 'run `pgtunnel install` as the installer role, or ';
  // both sides first: a read-only target found after the source's install would leave capture without a tunnel
  await withClient(config.targetUrl, 'target', (target) => requireWritable(target, 'target'));
  const tables = await withClient(config.sourceUrl, 'source', async (source) => {
    await requireWritable(source, 'source');
    // a role that cannot even read what is installed gets the whole list of what it lacks at once
    if (!(await migrationsReadable(source))) {
      if (options.installOnly) await requirePrivileges(source, 'source', 'installing capture', installerNeeds(config.tables, true), installAlternative);
      await requirePrivileges(source, 'source', 'the producer', producerNeeds(config.tables, new Set(), config.transactionMetadata));
    }
    const out: { config: TableConfig; source: TableShape; capture: CaptureChoice }[] = [];
    const logical = new Set<string>();
    for (const table of config.tables) {
      const shape = await describeTable(source, table, 'source');
      const id = tableId(table);
      const capture = await chooseCapture(source, table, table.capture ?? config.capture, config.topicPrefix);
      logger.info({ table: id, capture: capture.mode, reason: capture.reason }, `capture of ${id}: ${capture.mode} — ${capture.reason}`);
      const installTriggers = async () => {
        const pending = await pendingCapture(source, table);
        if (pending > 0) await requirePrivileges(source, 'source', `installing capture of ${id} (${pending} migrations)`, installerNeeds([table], await hasPgtunnelSchema(source)), installAlternative);
        const { applied, stale } = await installCapture(source, table, shape, options.installOnly);
        await setTransactionCounting(source, qualified(table.schema, table.changeTable), config.transactionMetadata);
        await setBeforeImages(source, table);
        if (applied > 0) logger.info({ table: id, changeTable: table.changeTable, migrations: applied }, 'capture installed');
        if (applied > 0) for (const warning of await defaultTableGrants(source, ['pgtunnel', table.schema])) logger.warn({ table: id }, warning);
        if (stale.length > 0) logger.warn({ table: id, columns: stale }, `capture of ${id} does not follow the source's columns ${stale.join(', ')} yet and this role may not update it: run \`pgtunnel install\` as the installer role`);
      };
      if (capture.mode === 'logical') {
        const created = capture.shared ? (await requireReplication(source), await installShared(source, table, config.topicPrefix)) : await installLogical(source, table);
        if (created > 0) logger.info({ table: id, created }, 'logical capture installed: publication and slot');
        if (capture.switchTo === 'trigger') {
          // decided first, so a crash before the boundary resumes the switch instead of abandoning it
          await markSwitchToTrigger(source, table);
          await installTriggers();
          if ((await switchToTriggerState(source, id)) === 'to trigger') await setTriggerBoundary(source, table);
          logger.info({ table: id, slot: capture.slot }, 'switch to capture: trigger under way: the stream hands over at the boundary transaction');
        }
        logical.add(id);
        out.push({ config: table, source: shape, capture });
        continue;
      }
      await installTriggers();
      if (capture.switchTo === 'logical' && capture.shared) {
        // in the publication before the boundary's mark is written, so every later commit is decoded with the table in it
        await requireReplication(source);
        await installShared(source, table, config.topicPrefix);
        logger.info({ table: id, slot: capture.slot }, 'switch to capture: logical on the source slot: the producer sets the boundary once it leads the slot');
      } else if (capture.switchTo === 'logical') {
        const how = await pinSwitchToLogical(source, config.sourceUrl, table);
        logger.info({ table: id, slot: capture.slot, switch: how }, how === 'pinned' ? 'switch to capture: logical: slot created, the last trigger batch ends at its snapshot' : 'switch to capture: logical under way');
      }
      if (capture.abandonSwitch && (await dropSlotAndPublication(source, table))) logger.info({ table: id }, 'the slot and publication of the abandoned switch to logical capture are dropped');
      if (capture.abandonShared) {
        await source.query("UPDATE pgtunnel.state SET shared_switch = NULL WHERE table_id = $1", [id]);
        await leaveShared(source, table, config.topicPrefix);
        logger.info({ table: id }, 'the table left the source\'s shared publication: trigger capture has its changes');
      }
      out.push({ config: table, source: shape, capture });
    }
    if (!options.installOnly) await requirePrivileges(source, 'source', 'the producer', producerNeeds(config.tables, logical, config.transactionMetadata));
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
    const out: (PreparedTable & { capture: CaptureChoice })[] = [];
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
  // one partition, as Debezium's: a consumer reads every transaction's BEGIN and END in order
  if (config.transactionMetadata) await ensureTopics(config, [transactionTopic(config.topicPrefix)], 1);
  if (config.heartbeatIntervalMs > 0) await ensureTopics(config, [heartbeatTopic(config.topicPrefix)], 1);
  await checkPartitions(config, config.tables);
  return prepared;
}
