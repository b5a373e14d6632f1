import { changeToMessages, type Op, type TableRef } from './envelope.js';

/**
 * Change envelopes as bytes: the object path's own envelope text (`changeToMessages`) cut at markers into
 * constant pieces, between which each change's values go as PostgreSQL sent them. Built once per page and
 * op, so both paths write the same bytes by construction; a change with a transaction block, a truncate or
 * an unknown action is never framed (the object path writes it).
 */
export type Slot = 'row' | 'before' | 'tsMs' | 'txid' | 'lsn' | 'schemaVersion';

export interface ChangeFrame {
  /** pieces[i] precedes slots[i]; the last piece ends the envelope. */
  pieces: Buffer[];
  slots: Slot[];
  /** The pieces' bytes together. */
  fixed: number;
}

/** Markers no envelope field holds: raw NULs for the rows (every text field is JSON-escaped), digit runs for the numbers. */
const markers: Record<Slot, string> = {
  row: '\u0000pgtunnel-row\u0000',
  before: '\u0000pgtunnel-before\u0000',
  tsMs: '4398046511104017',
  txid: '18446744073709551557',
  lsn: '18446744073709551533',
  schemaVersion: '4398046511104071',
};

/** The frame of op `op`'s envelopes published at `nowMs`; undefined when a marker's digits occur in the table's own names. */
export function changeFrame(table: TableRef, op: Extract<Op, 'c' | 'u' | 'd'>, nowMs: number): ChangeFrame | undefined {
  const fake = {
    changeId: markers.lsn, action: '', txid: markers.txid, capturedMs: Number(markers.tsMs), row: markers.row, key: '',
    schemaVersion: Number(markers.schemaVersion), ...(op === 'u' ? { before: markers.before } : {}),
  };
  const text = changeToMessages({ ...table, transactions: false }, fake, op, nowMs)[0]!.value!;
  const found: { at: number; slot: Slot }[] = [];
  for (const slot of Object.keys(markers) as Slot[]) {
    const at = text.indexOf(markers[slot]);
    if (at < 0) continue;
    if (text.indexOf(markers[slot], at + 1) >= 0) return undefined;
    found.push({ at, slot });
  }
  found.sort((a, b) => a.at - b.at);
  const pieces: Buffer[] = [];
  let from = 0;
  for (const { at, slot } of found) {
    pieces.push(Buffer.from(text.slice(from, at)));
    from = at + markers[slot].length;
  }
  pieces.push(Buffer.from(text.slice(from)));
  return { pieces, slots: found.map((f) => f.slot), fixed: pieces.reduce((n, p) => n + p.length, 0) };
}

/** The frames of a page: one per op framed, all at the page's `nowMs`. */
export function changeFrames(table: TableRef, nowMs: number): Record<'c' | 'u' | 'd', ChangeFrame> | undefined {
  const c = changeFrame(table, 'c', nowMs);
  const u = changeFrame(table, 'u', nowMs);
  const d = changeFrame(table, 'd', nowMs);
  return c && u && d ? { c, u, d } : undefined;
}

/**
 * The fields of a change page read as binary COPY (capture/changeReader.ts writes its query in this order):
 * everything text as PostgreSQL wrote it, `capturedMs` a float8 (the same double the object path parses).
 */
export const pageFields = { cur: 0, changeId: 1, action: 2, txid: 3, schemaVersion: 4, capturedMs: 5, row: 6, key: 7, before: 8 } as const;
export const pageFieldCount = 9;

/** A page's fields: field f of row i spans `data[spans[2(i·fields+f)] … spans[2(i·fields+f)+1])`, start < 0 for NULL. */
export interface PageSpans {
  data: Buffer;
  spans: Int32Array;
  fields: number;
  count: number;
}

/** Decimal digits of a non-negative safe integer, written at `at`; returns the bytes written (no string made). */
export function writeDigits(out: Buffer, at: number, n: number): number {
  const digits = digitCount(n);
  for (let i = digits - 1, v = n; i >= 0; i--, v = Math.floor(v / 10)) out[at + i] = 48 + (v % 10);
  return digits;
}

function digitCount(n: number): number {
  let digits = 1;
  for (let v = n; v >= 10; v = Math.floor(v / 10)) digits++;
  return digits;
}

/** The digits of a small non-negative integer field (a schema version), or -1 for NULL. */
export function fieldInt(page: PageSpans, row: number, field: number): number {
  const slot = (row * page.fields + field) * 2;
  const start = page.spans[slot]!;
  if (start < 0) return -1;
  let n = 0;
  for (let at = start; at < page.spans[slot + 1]!; at++) n = n * 10 + page.data[at]! - 48;
  return n;
}

const actions: [Buffer, 'c' | 'u' | 'd'][] = [[Buffer.from('INSERT'), 'c'], [Buffer.from('UPDATE'), 'u'], [Buffer.from('DELETE'), 'd']];
const nullBytes = Buffer.from('null');
const slotField: Record<Exclude<Slot, 'tsMs'>, number> = { row: pageFields.row, before: pageFields.before, txid: pageFields.txid, lsn: pageFields.changeId, schemaVersion: pageFields.schemaVersion };

/** The op a row's action bytes name when its envelope can be framed; undefined for a truncate or an unknown action. */
function opAt(page: PageSpans, slot: number): 'c' | 'u' | 'd' | undefined {
  const start = page.spans[slot]!;
  if (start < 0 || page.spans[slot + 1]! - start !== 6) return undefined;
  for (const [bytes, op] of actions) {
    let same = true;
    for (let k = 0; k < 6 && same; k++) same = page.data[start + k] === bytes[k];
    if (same) return op;
  }
  return undefined;
}

/** Copies `src[start, end)` to `out` at `at`; short runs in a loop (a native copy costs more than it moves). */
function put(out: Buffer, at: number, src: Buffer, start: number, end: number): number {
  if (end - start > 48) return src.copy(out, at, start, end);
  for (let i = start; i < end; i++) out[at++] = src[i]!;
  return end - start;
}

/** The envelopes' ts_ms as the object path rounds the float8 it parsed; -1 when not a plain epoch millisecond count. */
function tsMsAt(page: PageSpans, slot: number): number {
  const start = page.spans[slot]!;
  if (start < 0 || page.spans[slot + 1]! - start !== 8) return -1;
  const ms = Math.round(page.data.readDoubleBE(start));
  return Number.isSafeInteger(ms) && ms >= 0 ? ms : -1;
}

/**
 * Every change of a page framed into one buffer: envelope i is `values[starts[i] … ends[i])`, with `ops[i]`
 * its op. A row with `ends[i] = -1` was not framed (a truncate, an unknown action, a NULL where a value
 * belongs, or an envelope over `limit` bytes): the caller writes it by the object path, in its place.
 */
export function frameChanges(page: PageSpans, frames: Record<'c' | 'u' | 'd', ChangeFrame>, defaultSchemaVersion: number, limit: number): { values: Buffer; starts: Int32Array; ends: Int32Array; ops: ('c' | 'u' | 'd' | undefined)[] } {
  const { data, spans, fields, count } = page;
  const ops: ('c' | 'u' | 'd' | undefined)[] = new Array(count);
  const sizes = new Int32Array(count);
  const tsMs = new Float64Array(count);
  let total = 0;
  for (let i = 0; i < count; i++) {
    const base = i * fields * 2;
    const op = opAt(page, base + pageFields.action * 2);
    const ts = tsMsAt(page, base + pageFields.capturedMs * 2);
    const frame = op && frames[op];
    if (!frame || ts < 0 || spans[base + pageFields.row * 2]! < 0 || spans[base + pageFields.key * 2]! < 0) continue;
    let size = frame.fixed;
    for (const slot of frame.slots) {
      if (slot === 'tsMs') size += digitCount(ts);
      else {
        const pair = base + slotField[slot] * 2;
        size += spans[pair]! >= 0 ? spans[pair + 1]! - spans[pair]! : slot === 'schemaVersion' ? digitCount(defaultSchemaVersion) : nullBytes.length;
      }
    }
    if (size > limit) continue;
    ops[i] = op;
    sizes[i] = size;
    tsMs[i] = ts;
    total += size;
  }
  const values = Buffer.allocUnsafe(total);
  const starts = new Int32Array(count);
  const ends = new Int32Array(count).fill(-1);
  let at = 0;
  for (let i = 0; i < count; i++) {
    const op = ops[i];
    if (!op) continue;
    const frame = frames[op];
    const base = i * fields * 2;
    starts[i] = at;
    for (let s = 0; s < frame.slots.length; s++) {
      const piece = frame.pieces[s]!;
      at += put(values, at, piece, 0, piece.length);
      const slot = frame.slots[s]!;
      if (slot === 'tsMs') {
        at += writeDigits(values, at, tsMs[i]!);
        continue;
      }
      const pair = base + slotField[slot] * 2;
      if (spans[pair]! >= 0) at += put(values, at, data, spans[pair]!, spans[pair + 1]!);
      else at += slot === 'schemaVersion' ? writeDigits(values, at, defaultSchemaVersion) : put(values, at, nullBytes, 0, 4);
    }
    const last = frame.pieces[frame.slots.length]!;
    at += put(values, at, last, 0, last.length);
    ends[i] = at;
  }
  return { values, starts, ends, ops };
}
