import type pg from 'pg';
import copyStreams from 'pg-copy-streams';
import { TunnelError } from '../errors.js';

/**
 * Rows as PostgreSQL's binary COPY sent them: one buffer, and where each field's bytes start and end.
 * Fields are never decoded into strings: text and json travel in binary COPY as their UTF-8 bytes, with
 * a length in front, so nothing is escaped (text COPY would double every JSON backslash).
 */
export interface CopyRows {
  data: Buffer;
  /** Per row, per field: start and end offsets in `data` (a NULL field has start = end = -1). */
  spans: Int32Array;
  fields: number;
  count: number;
}

const signature = Buffer.from('PGCOPY\n\xff\r\n\0', 'latin1');

/** PostgreSQL sent what binary COPY never is: a bug on one side, never retried or bisected. */
const malformed = (what: string) =>
  new TunnelError('PGT_COPY_FORMAT', `binary COPY data from the source: ${what}`, { errorClass: 'fatal', unexpected: true, hint: 'report it with the source server\'s version; snapshot reading stops rather than publish a row read wrong' });

/** Pure: the rows of a binary COPY stream with `fields` fields per row. */
export function parseCopyRows(data: Buffer, fields: number): CopyRows {
  if (data.length < 19 || !data.subarray(0, 11).equals(signature)) throw malformed('no PGCOPY signature');
  let at = 19 + data.readInt32BE(15);
  let spans = new Int32Array(fields * 2 * 1024);
  let count = 0;
  for (;;) {
    if (at + 2 > data.length) throw malformed('ends inside a row (no trailer)');
    const n = data.readInt16BE(at);
    at += 2;
    if (n === -1) break;
    if (n !== fields) throw malformed(`a row of ${n} fields, ${fields} expected`);
    if ((count + 1) * fields * 2 > spans.length) {
      const grown = new Int32Array(spans.length * 2);
      grown.set(spans);
      spans = grown;
    }
    for (let f = 0; f < fields; f++) {
      if (at + 4 > data.length) throw malformed('ends inside a field length');
      const length = data.readInt32BE(at);
      at += 4;
      const slot = (count * fields + f) * 2;
      if (length < 0) {
        spans[slot] = spans[slot + 1] = -1;
        continue;
      }
      if (at + length > data.length) throw malformed('ends inside a field');
      spans[slot] = at;
      spans[slot + 1] = at + length;
      at += length;
    }
    count++;
  }
  return { data, spans, fields, count };
}

/** A field's bytes as text (for the rare row that leaves the byte path, and the last key). */
export function fieldText(rows: CopyRows, row: number, field: number): string | null {
  const slot = (row * rows.fields + field) * 2;
  const start = rows.spans[slot]!;
  return start < 0 ? null : rows.data.toString('utf8', start, rows.spans[slot + 1]);
}

/** Runs `COPY (query) TO STDOUT (FORMAT binary)` on the caller's connection (and transaction). */
export async function readCopyRows(client: pg.Client, query: string, fields: number): Promise<CopyRows> {
  const stream = client.query(copyStreams.to(`COPY (${query}) TO STDOUT (FORMAT binary)`));
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return parseCopyRows(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks), fields);
}
