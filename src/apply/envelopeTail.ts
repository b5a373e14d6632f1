/** What the end of an envelope's text says: its op, and with transaction metadata its transaction and place. */
export interface EnvelopeTail {
  op: string;
  txId?: string;
  totalOrder?: number;
  /** `source.ts_ms`: the source commit time (track_commit_timestamp on), which orders transactions that share no row. */
  sourceMs?: number;
}

// The envelope's last fields as pgtunnel writes them; a quote inside a value is escaped, so only the
// envelope's own structure can match at the very end of the text.
const tailPattern = /"op":"([cudrt])","ts_ms":-?\d+(?:,"transaction":\{"id":"(\d+)","total_order":(\d+),"data_collection_order":\d+\})?\}$/;

/** Pure: the op and transaction of an envelope's JSON text; undefined for what pgtunnel did not write. */
export function envelopeTail(value: string | undefined): EnvelopeTail | undefined {
  if (value === undefined) return undefined;
  const m = tailPattern.exec(value.length > 400 ? value.slice(-400) : value);
  if (!m) return undefined;
  const tail: EnvelopeTail = m[2] === undefined ? { op: m[1]! } : { op: m[1]!, txId: m[2], totalOrder: Number(m[3]) };
  // the last `source` block is the envelope's own: row images come before it
  const at = value.lastIndexOf(',"source":{"version":');
  const ms = at < 0 ? null : sourcePattern.exec(value.slice(at, at + 400));
  if (ms) tail.sourceMs = Number(ms[1]);
  return tail;
}

const sourcePattern = /^,"source":\{"version":"[^"]*","connector":"pgtunnel","name":"(?:[^"\\]|\\.)*","ts_ms":(-?\d+),/;
