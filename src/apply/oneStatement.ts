import type pg from 'pg';
import type { RawRecord } from '../validate/deadLetters.js';
import { partitionId } from '../names.js';
import { countCopied, smallSetRecords, type CopyPath, type LineGroup, type ScannedSet, type SetChange, type TableLines } from './copyPath.js';
import { SetOutcome } from './setOutcome.js';

/** Sets up to this many records, and this many bytes of row text, may go as one statement. */
export const oneStatementRecords = smallSetRecords;
const oneStatementBytes = 1024 * 1024;

/** One partition's part of the set: where it starts (every record must be fresh) and the offset after it. */
interface PartitionRun {
  topic: string;
  partition: number;
  first: bigint;
  next: bigint;
  applied: number;
}

/** One table's writes after the newest change per key won: the deleted keys, the upserted lines by column group. */
interface TableWrites {
  table: TableLines;
  deletes: string[];
  upserts: Map<LineGroup, Buffer[]>;
}

/**
 * A small scanned set — new rows, updates, deletes, a key more than once — applied as ONE statement, its own
 * transaction: the partitions' offset rows locked, the deletes, the upserts and the offsets' advance
 * together, each gated on one verdict — every offset row exists and is at or below the set's first record,
 * no key of the topics is parked or lettered, and no offset row changed since the statement's snapshot (a
 * writer of the partition that committed while the lock was awaited: its rows are not in that snapshot, so a
 * delete would miss them, where the general path's later statements see them). As the general path
 * (changeWriter.ts): the newest change per key, a delete removes its key, an update upserts the columns its
 * row carries (an omitted TOASTed column keeps its value), deletes before upserts. A false verdict writes
 * nothing and the general path takes the set, as does any error. At 1k/s each target round trip is several ms on a loaded host: this replaces
 * the general path's ten with one.
 */
export class OneStatementPath {
  constructor(private readonly client: pg.Client, private readonly copyPath: CopyPath) {}

  /** The set's outcome when the statement applied it; undefined when it wrote nothing (the general path's turn). */
  async apply(records: RawRecord[], scanned: ScannedSet, beforeWrite: () => void): Promise<SetOutcome | undefined> {
    if (records.length > oneStatementRecords || !scanned.changes || !this.copyPath.stillValid(scanned, records)) return undefined;
    const runs = partitionRuns(records, scanned.keyed);
    if (!runs) return undefined;
    const params: unknown[] = [runs.map((r) => r.topic), runs.map((r) => r.partition), runs.map((r) => r.first.toString()), runs.map((r) => r.next.toString()), runs.map((r) => r.applied)];
    params.push(scanned.newest > 0 ? Date.now() - scanned.newest : null);
    const writes = newestPerKey(scanned.changes);
    const verdict = '(SELECT ok FROM verdict)';
    const deletes: string[] = [];
    for (const w of writes) {
      if (w.deletes.length === 0) continue;
      params.push(`[${w.deletes.join(',')}]`);
      deletes.push(`d${deletes.length} AS (${w.table.statements.gatedDeleteSql(params.length, verdict)} RETURNING 1)`);
    }
    // the upserts wait for every delete (their counts), as the general path's upsert follows its delete: a
    // unique value moved from a deleted row to an upserted one is then free
    const gate = deletes.length === 0 ? verdict : `${verdict} AND ${deletes.map((_, i) => `(SELECT count(*) FROM d${i})`).join(' + ')} >= 0`;
    const upserts: string[] = [];
    let bytes = 0;
    for (const w of writes) {
      for (const [group, lines] of w.upserts) {
        const text = Buffer.concat(lines);
        bytes += text.length;
        params.push(rowsJson(group.columns, text));
        upserts.push(`u${upserts.length} AS (${w.table.statements.gatedUpsertSql(group.columns, params.length, gate)} RETURNING 1)`);
      }
    }
    if (bytes > oneStatementBytes) return undefined;
    beforeWrite();
    const { rows } = await this.client.query<{ ok: boolean }>(
      `WITH p AS (SELECT * FROM unnest($1::text[], $2::int[], $3::bigint[], $4::bigint[], $5::bigint[]) AS p(topic, partition, first_offset, next_offset, applied)),
       held AS MATERIALIZED (SELECT o.topic, o.partition, o.next_offset, o.xmin::text AS version FROM pgtunnel.consumer_offsets o JOIN p USING (topic, partition) FOR UPDATE OF o),
       verdict AS MATERIALIZED (SELECT (SELECT count(*) FROM held JOIN p USING (topic, partition) WHERE held.next_offset <= p.first_offset) = cardinality($1::text[])
           AND (SELECT count(*) FROM held JOIN pgtunnel.consumer_offsets s USING (topic, partition) WHERE s.xmin::text = held.version) = cardinality($1::text[])
           AND NOT EXISTS (SELECT 1 FROM pgtunnel.parked_keys WHERE topic = ANY($1::text[]))
           AND NOT EXISTS (SELECT 1 FROM pgtunnel.lettered_keys WHERE topic = ANY($1::text[])) AS ok),
       ${[...deletes, ...upserts].map((w) => `${w},`).join('\n       ')}
       advanced AS (UPDATE pgtunnel.consumer_offsets o SET next_offset = GREATEST(o.next_offset, p.next_offset), applied_at = now(),
           last_latency_ms = COALESCE($6::float8, o.last_latency_ms), applied = o.applied + p.applied
         FROM p WHERE o.topic = p.topic AND o.partition = p.partition AND (SELECT ok FROM verdict) RETURNING 1)
       SELECT ok FROM verdict`,
      params,
    );
    if (rows[0]?.ok !== true) return undefined;
    const outcome = new SetOutcome();
    outcome.fresh = records.length;
    countCopied(scanned.keyed, scanned.lines, outcome);
    outcome.latencies.push(...scanned.latencies);
    outcome.newestSourceMs = scanned.newest;
    return outcome;
  }
}

/** Pure: each table's deletes and upserts from the newest change of each key (reduce.ts's rule over scanned changes). */
export function newestPerKey(changes: SetChange[]): TableWrites[] {
  const latest = new Map<TableLines, Map<string, SetChange>>();
  for (const c of changes) {
    let byKey = latest.get(c.table);
    if (!byKey) latest.set(c.table, (byKey = new Map()));
    byKey.set(c.keyText, c);
  }
  return [...latest].map(([table, byKey]) => {
    const w: TableWrites = { table, deletes: [], upserts: new Map() };
    for (const c of byKey.values()) {
      if (!c.group) w.deletes.push(c.keyText);
      else {
        const lines = w.upserts.get(c.group) ?? [];
        lines.push(c.group.out.buf.subarray(c.start, c.end));
        w.upserts.set(c.group, lines);
      }
    }
    return w;
  });
}

/**
 * Each partition's first and next offset and how many of its records take effect (`applied`, the set's
 * records without its tombstones); undefined when a partition's offsets do not rise (a redelivered run).
 */
export function partitionRuns(records: { topic: string; partition: number; offset: bigint }[], applied: { topic: string; partition: number }[] = records): PartitionRun[] | undefined {
  const runs = new Map<string, PartitionRun>();
  for (const r of records) {
    const id = partitionId(r.topic, r.partition);
    const run = runs.get(id);
    if (!run) runs.set(id, { topic: r.topic, partition: r.partition, first: r.offset, next: r.offset + 1n, applied: 0 });
    else if (r.offset < run.next) return undefined;
    else run.next = r.offset + 1n;
  }
  for (const r of applied) runs.get(partitionId(r.topic, r.partition))!.applied++;
  return [...runs.values()];
}

/**
 * The COPY text lines as a JSON array of objects whose values are the columns' texts (JSON strings, or null
 * for `\N`): json_to_recordset hands each text to its column type's input, as COPY would — no rounding.
 */
export function rowsJson(columns: string[], text: Buffer): string {
  const rows: string[] = [];
  let start = 0;
  while (start < text.length) {
    let end = text.indexOf(0x0a, start);
    if (end < 0) end = text.length;
    const fields = copyFields(text.subarray(start, end));
    rows.push(`{${columns.map((c, i) => `${JSON.stringify(c)}:${JSON.stringify(fields[i] ?? null)}`).join(',')}}`);
    start = end + 1;
  }
  return `[${rows.join(',')}]`;
}

const simple: Record<number, number> = { 0x62: 0x08, 0x66: 0x0c, 0x6e: 0x0a, 0x72: 0x0d, 0x74: 0x09, 0x76: 0x0b };

/** One COPY text line's fields with COPY's escapes resolved (PostgreSQL's text format), `\N` as null. */
export function copyFields(line: Buffer): (string | null)[] {
  const out: (string | null)[] = [];
  let field = Buffer.allocUnsafe(line.length);
  let n = 0;
  let onlyNull = false;
  const end = () => {
    out.push(onlyNull && n === 0 ? null : field.toString('utf8', 0, n));
    field = Buffer.allocUnsafe(line.length);
    n = 0;
    onlyNull = false;
  };
  for (let i = 0; i < line.length; i++) {
    const c = line[i]!;
    if (c === 0x09) end();
    else if (c !== 0x5c || i + 1 >= line.length) field[n++] = c;
    else {
      const e = line[++i]!;
      if (e === 0x4e && n === 0 && (i + 1 === line.length || line[i + 1] === 0x09)) onlyNull = true;
      else if (simple[e] !== undefined) field[n++] = simple[e]!;
      else if (e >= 0x30 && e <= 0x37) {
        let v = e - 0x30;
        for (let k = 0; k < 2 && i + 1 < line.length && line[i + 1]! >= 0x30 && line[i + 1]! <= 0x37; k++) v = v * 8 + (line[++i]! - 0x30);
        field[n++] = v & 0xff;
      } else if (e === 0x78 && i + 1 < line.length && isHex(line[i + 1]!)) {
        let v = parseInt(String.fromCharCode(line[++i]!), 16);
        if (i + 1 < line.length && isHex(line[i + 1]!)) v = v * 16 + parseInt(String.fromCharCode(line[++i]!), 16);
        field[n++] = v;
      } else field[n++] = e;
    }
  }
  end();
  return out;
}

function isHex(c: number): boolean {
  return (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66);
}
