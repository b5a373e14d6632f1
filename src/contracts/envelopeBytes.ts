import { snapshotRowToMessage, type TableRef } from './envelope.js';

/**
 * Snapshot envelopes as bytes: a constant prefix, the row's row_to_json bytes as PostgreSQL sent them, and
 * a suffix (the `source` block, op, ts_ms). The frame is cut from the object path's own text around a
 * marker no envelope field can hold (a raw NUL: every text field is JSON-escaped), so both paths write
 * the same bytes by construction.
 */
export interface EnvelopeFrame {
  prefix: Buffer;
  suffix: Buffer;
  /** The suffix of the snapshot's final row (`"snapshot":"last"`). */
  lastSuffix: Buffer;
}

const marker = '\u0000pgtunnel-row\u0000';

function cut(text: string): [Buffer, Buffer] {
  const at = text.indexOf(marker);
  if (at < 0 || text.indexOf(marker, at + 1) >= 0) throw new Error('the envelope text must hold the row exactly once');
  return [Buffer.from(text.slice(0, at)), Buffer.from(text.slice(at + marker.length))];
}

/** The frame of a table's snapshot envelopes published at `nowMs` (one per piece, not per row); `incremental`: a signalled snapshot's. */
export function snapshotFrame(table: TableRef, schemaVersion: number, nowMs: number, incremental = false): EnvelopeFrame {
  const row = { row: marker, key: '' };
  const [prefix, suffix] = cut(snapshotRowToMessage(table, row, schemaVersion, nowMs, false, incremental).value!);
  const [, lastSuffix] = cut(snapshotRowToMessage(table, row, schemaVersion, nowMs, true, incremental).value!);
  return { prefix, suffix, lastSuffix };
}

/** Rows' bytes placed in one buffer: row i's bytes are `data[spans[2i] … spans[2i+1])`. */
export interface RowSpans {
  data: Buffer;
  /** Start and end of each row (a stride of `stride` ints per row, the row's pair at `offset`). */
  spans: Int32Array;
  stride: number;
  offset: number;
  count: number;
}

/**
 * Every row framed into one buffer of envelopes: envelope i is `values[ends[i-1] … ends[i])`. The last row
 * takes the final suffix when `final`. One allocation and one copy per row; nothing is parsed.
 */
export function frameRows(rows: RowSpans, frame: EnvelopeFrame, final: boolean): { values: Buffer; ends: Int32Array } {
  const { data, spans, stride, offset, count } = rows;
  const fixed = frame.prefix.length + frame.suffix.length;
  let size = final && count > 0 ? frame.lastSuffix.length - frame.suffix.length : 0;
  for (let i = 0; i < count; i++) size += fixed + spans[i * stride + offset + 1]! - spans[i * stride + offset]!;
  const values = Buffer.allocUnsafe(size);
  const ends = new Int32Array(count);
  let at = 0;
  for (let i = 0; i < count; i++) {
    at += frame.prefix.copy(values, at);
    at += data.copy(values, at, spans[i * stride + offset]!, spans[i * stride + offset + 1]!);
    at += (final && i === count - 1 ? frame.lastSuffix : frame.suffix).copy(values, at);
    ends[i] = at;
  }
  return { values, ends };
}
