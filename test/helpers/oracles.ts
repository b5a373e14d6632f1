// Oracles that share no code with what they judge: Kafka is read by librdkafka (confluent-kafka, Python,
// read_committed), envelopes are read with JSON.parse, counts come from the target's own bookkeeping and
// equality from row text hashed in SQL. None of this imports pgtunnel's transport, envelope or verify code.
import { execFile, execFileSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { query, services, waitFor } from './services.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const home = path.resolve(process.env.PGTUNNEL_HOME ?? path.join(root, '.pgtunnel'));

export interface TopicRecord {
  partition: number;
  offset: number;
  key: string | null;
  /** the envelope as plain JSON; null for a tombstone */
  value: { op: string; before: Record<string, unknown> | null; after: Record<string, unknown> | null; source: { txId?: unknown; lsn?: unknown } } | null;
}

/** Every committed record of a topic, as a third-party read_committed consumer sees it. */
export async function topicRecords(topic: string, timeoutMs = 120_000): Promise<TopicRecord[]> {
  execFileSync('bash', [path.join(root, 'scripts/python.sh')], { stdio: 'inherit', env: { ...process.env, PGTUNNEL_HOME: home }, timeout: 600_000 });
  const python = path.join(home, 'python', 'bin', 'python');
  const args = [path.join(root, 'test/python/dump_topic.py'), '--brokers', services().brokers, '--topic', topic, '--timeout', String(timeoutMs / 1000 - 5)];
  const out = await new Promise<string>((resolve, reject) => {
    execFile(python, args, { timeout: timeoutMs, maxBuffer: 512 << 20 }, (err, stdout, stderr) => (err ? reject(new Error(`the read_committed oracle (dump_topic.py) failed: ${err.message}\n${stderr}`)) : resolve(stdout)));
  });
  return out.split('\n').filter(Boolean).map((line) => {
    const r = JSON.parse(line) as { partition: number; offset: number; key: string | null; value: string | null };
    return { ...r, value: r.value === null ? null : JSON.parse(r.value) };
  });
}

/** A source change's identity: a re-sent duplicate carries the same one. */
const changeId = (r: TopicRecord) => `${r.partition}|${String(r.value!.source.txId)}|${String(r.value!.source.lsn)}|${r.value!.op}|${r.key}`;

/** Stream changes (not snapshot rows, not tombstones) present more than once in the topic. */
export function changesTwice(records: TopicRecord[]): string[] {
  const seen = new Map<string, number>();
  for (const r of records) if (r.value !== null && r.value.op !== 'r') seen.set(changeId(r), (seen.get(changeId(r)) ?? 0) + 1);
  return [...seen].filter(([, n]) => n > 1).map(([id, n]) => `${id} ×${n}`);
}

/** How many snapshot (`op = r`) records each key has in the topic. */
export function snapshotReadsPerKey(records: TopicRecord[]): Map<string, number> {
  const out = new Map<string, number>();
  for (const r of records) if (r.value?.op === 'r') out.set(r.key!, (out.get(r.key!) ?? 0) + 1);
  return out;
}

/**
 * Each Kafka record applied exactly once: the target's per-partition counts (applied + dead-lettered +
 * poison, written in the apply transaction) against the records the topic holds (tombstones are not applied).
 * Returns the partitions that differ; empty when every record took effect once.
 */
export async function appliedCountMismatches(targetUrl: string, topic: string, records: TopicRecord[]): Promise<string[]> {
  const inTopic = new Map<number, number>();
  // a truncate is written to every partition and taken (and counted) once, from partition 0
  for (const r of records) if (r.value !== null && (r.value.op !== 't' || r.partition === 0)) inTopic.set(r.partition, (inTopic.get(r.partition) ?? 0) + 1);
  const rows = await query<{ partition: number; n: number }>(targetUrl,
    'SELECT partition, (applied + dead_lettered + poison)::int AS n FROM pgtunnel.consumer_offsets WHERE topic = $1', [topic]);
  const counted = new Map(rows.map((r) => [r.partition, r.n]));
  const out: string[] = [];
  for (const p of new Set([...inTopic.keys(), ...counted.keys()])) {
    if ((inTopic.get(p) ?? 0) !== (counted.get(p) ?? 0)) out.push(`partition ${p}: ${inTopic.get(p) ?? 0} records in the topic, ${counted.get(p) ?? 0} counted applied by the target`);
  }
  return out;
}

/**
 * The torture table's per-key version sequence (`column`) as the topic holds it (re-sent duplicates dropped: each source
 * change once, first copy): every write moves `version` by 0 (a no-op update) or 1, a delete carries the
 * version it deleted, a re-insert follows it with the next one, a truncate ends every key of its partition.
 * A skipped change shows as a jump of 2 or more, a change out of order as a step back.
 */
export function versionGaps(records: TopicRecord[], column = 'version'): string[] {
  const seen = new Set<string>();
  const state = new Map<string, { version: number; deleted: boolean; offset: number }>();
  const out: string[] = [];
  for (const r of [...records].sort((a, b) => a.partition - b.partition || a.offset - b.offset)) {
    if (r.value === null) continue;
    if (r.value.op !== 'r') {
      if (seen.has(changeId(r))) continue;
      seen.add(changeId(r));
    }
    if (r.value.op === 't') {
      for (const [k, s] of state) if (k.startsWith(`${r.partition}|`)) state.set(k, { ...s, deleted: true, version: Number.NaN });
      continue;
    }
    const key = `${r.partition}|${r.key}`;
    const prev = state.get(key);
    const row = (r.value.op === 'd' ? r.value.before : r.value.after) as Record<string, unknown> | null;
    const version = Number(row?.[column]);
    const at = `key ${r.key} at ${r.partition}/${r.offset} (op ${r.value.op}, v${version})`;
    if (prev !== undefined && !Number.isNaN(prev.version)) {
      const step = version - prev.version;
      if (r.value.op === 'd' && prev.deleted) out.push(`${at}: a delete of a deleted key`);
      else if (r.value.op === 'd' && step !== 0) out.push(`${at}: deletes v${version} but the key was at v${prev.version}`);
      else if (r.value.op !== 'd' && prev.deleted && step !== 1) out.push(`${at}: re-inserted after a delete of v${prev.version}`);
      else if (r.value.op !== 'd' && !prev.deleted && (step < 0 || step > 1 || (r.value.op === 'r' && step !== 0))) out.push(`${at}: follows v${prev.version} at offset ${prev.offset}`);
    }
    state.set(key, { version, deleted: r.value.op === 'd', offset: r.offset });
  }
  return out;
}

/** An append-only log of every write to a target table, kept by an ALWAYS trigger (apply runs as a replica session). */
export async function installWriteLog(targetUrl: string, table: string, key: string, version: string): Promise<void> {
  await query(targetUrl, `
    CREATE TABLE write_log (seq bigserial PRIMARY KEY, xact xid8 NOT NULL DEFAULT pg_current_xact_id(), op text NOT NULL,
                            key text, old_version numeric, new_version numeric);
    CREATE FUNCTION log_write() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF TG_OP = 'TRUNCATE' THEN INSERT INTO write_log (op) VALUES ('T'); RETURN NULL; END IF;
      INSERT INTO write_log (op, key, old_version, new_version) VALUES (TG_OP,
        CASE WHEN TG_OP = 'DELETE' THEN OLD.${key} ELSE NEW.${key} END::text,
        CASE WHEN TG_OP = 'INSERT' THEN NULL ELSE OLD.${version} END,
        CASE WHEN TG_OP = 'DELETE' THEN NULL ELSE NEW.${version} END);
      RETURN NULL;
    END $$;
    CREATE TRIGGER log_write AFTER INSERT OR UPDATE OR DELETE ON ${table} FOR EACH ROW EXECUTE FUNCTION log_write();
    CREATE TRIGGER log_truncate AFTER TRUNCATE ON ${table} FOR EACH STATEMENT EXECUTE FUNCTION log_write();
    ALTER TABLE ${table} ENABLE ALWAYS TRIGGER log_write;
    ALTER TABLE ${table} ENABLE ALWAYS TRIGGER log_truncate`);
}

/**
 * Writes the target saw out of order: a key upserted twice in one apply transaction with no delete between
 * (apply keeps the newest change per key, so a set applied twice shows here; a key written, cleared by a
 * truncate's partition delete and written again in one set is not), or a key's version going back (an older
 * change applied after a newer one: a record applied again). Empty when every write moved forward.
 */
export async function writeLogRegressions(targetUrl: string): Promise<string[]> {
  const rows = await query<{ what: string }>(targetUrl, `
    SELECT format('key %s upserted twice in apply transaction %s (writes %s and %s)', key, xact, previous_seq, seq) AS what
      FROM (SELECT key, xact, seq, op, lag(op) OVER w AS previous_op, lag(seq) OVER w AS previous_seq
              FROM write_log WHERE key IS NOT NULL WINDOW w AS (PARTITION BY xact, key ORDER BY seq)) w
     WHERE op <> 'DELETE' AND previous_op IN ('INSERT', 'UPDATE')
    UNION ALL
    SELECT format('key %s went back from v%s to v%s (write %s)', key, old_version, new_version, seq)
      FROM write_log WHERE new_version < old_version`);
  return rows.map((r) => r.what);
}

/** The table's rows as text, hashed in SQL (one time zone): `n rows, md5 …`. */
export async function tableDigest(url: string, table: string): Promise<string> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query("SET TimeZone TO 'UTC'");
    const { rows } = await client.query<{ h: string; n: number }>(`SELECT md5(string_agg(whole_row_::text, E'\\n' ORDER BY whole_row_::text)) AS h, count(*)::int AS n FROM ${table} whole_row_`);
    return `${rows[0]!.n} rows, md5 ${rows[0]!.h}`;
  } finally {
    await client.end();
  }
}

/** Waits until source and target hold the same row text (tables of the same definition on both sides). */
export async function sameRows(sourceUrl: string, targetUrl: string, table: string, timeoutMs: number): Promise<void> {
  await waitFor(`${table}: the target's rows equal to the source's (row text hashed in SQL)`, async () => {
    const [s, t] = await Promise.all([tableDigest(sourceUrl, table), tableDigest(targetUrl, table)]);
    return s === t;
  }, timeoutMs, 250);
}

/**
 * Source transactions the target applied in more than one target transaction (`apply: transactional` must
 * show each whole): each streamed change is found in the target's write log by key, version and kind, and
 * its source txId's writes must share one target xact. A (key, version) written by two source transactions
 * (a no-op update) or also by a snapshot read is ambiguous and left out; a change superseded inside its
 * apply transaction left no write and counts for nothing.
 */
export async function splitTransactions(targetUrl: string, records: TopicRecord[], keyColumn: string, versionColumn: string): Promise<{ checked: number; split: string[] }> {
  const txIds = new Map<string, Set<string>>();
  const snapshot = new Set<string>();
  for (const r of records) {
    if (r.value === null || r.value.op === 't' || r.key === null) continue;
    const row = (r.value.op === 'd' ? r.value.before : r.value.after) as Record<string, unknown>;
    const id = `${String((JSON.parse(r.key) as Record<string, unknown>)[keyColumn])}|${String(row[versionColumn])}|${r.value.op === 'd'}`;
    if (r.value.op === 'r') snapshot.add(id);
    else txIds.set(id, (txIds.get(id) ?? new Set()).add(String(r.value.source.txId)));
  }
  const writes = await query<{ id: string; xact: string }>(targetUrl,
    "SELECT key || '|' || coalesce(new_version, old_version)::text || '|' || (op = 'DELETE')::text AS id, xact::text FROM write_log WHERE key IS NOT NULL");
  const xacts = new Map<string, Set<string>>();
  for (const w of writes) {
    const tx = txIds.get(w.id);
    if (!tx || tx.size !== 1 || snapshot.has(w.id)) continue;
    const source = [...tx][0]!;
    xacts.set(source, (xacts.get(source) ?? new Set()).add(w.xact));
  }
  return { checked: xacts.size, split: [...xacts].filter(([, x]) => x.size > 1).map(([tx, x]) => `source transaction ${tx} applied in ${x.size} target transactions`) };
}
