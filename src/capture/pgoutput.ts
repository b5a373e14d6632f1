/**
 * Pure decoding of pgoutput (protocol version 1) and of the replication protocol's frames around it.
 * Values stay the exact text PostgreSQL's output functions wrote: nothing is parsed into JS numbers.
 */

export interface RelationColumn {
  name: string;
  typeOid: number;
  typeMod: number;
  isKey: boolean;
}

export interface Relation {
  oid: number;
  schema: string;
  name: string;
  /** d(efault), n(othing), f(ull), i(ndex) */
  replicaIdentity: string;
  columns: RelationColumn[];
}

/** One column of a tuple: its text, SQL NULL, or a TOASTed value the change left as it was. */
export type TupleValue = string | null | { unchanged: true };

export type PgOutputMessage =
  | { tag: 'begin'; finalLsn: bigint; commitTimeMs: number; xid: number }
  | { tag: 'commit'; commitLsn: bigint; endLsn: bigint; commitTimeMs: number }
  | { tag: 'relation'; relation: Relation }
  | { tag: 'insert'; relationOid: number; after: TupleValue[] }
  | { tag: 'update'; relationOid: number; before: TupleValue[] | null; beforeIsKey: boolean; after: TupleValue[] }
  | { tag: 'delete'; relationOid: number; before: TupleValue[]; beforeIsKey: boolean }
  | { tag: 'truncate'; relationOids: number[]; cascade: boolean; restartIdentity: boolean }
  | { tag: 'message'; transactional: boolean; prefix: string; content: Buffer }
  | { tag: 'other'; kind: string };

/** Microseconds between the Unix epoch and PostgreSQL's (2000-01-01). */
const pgEpochMicros = 946_684_800_000_000n;

class Reader {
  offset = 0;
  constructor(private readonly buf: Buffer) {}
  u8(): number {
    return this.buf.readUInt8(this.offset++);
  }
  i16(): number {
    const v = this.buf.readInt16BE(this.offset);
    this.offset += 2;
    return v;
  }
  i32(): number {
    const v = this.buf.readInt32BE(this.offset);
    this.offset += 4;
    return v;
  }
  u32(): number {
    const v = this.buf.readUInt32BE(this.offset);
    this.offset += 4;
    return v;
  }
  u64(): bigint {
    const v = this.buf.readBigUInt64BE(this.offset);
    this.offset += 8;
    return v;
  }
  /** A timestamp in µs since 2000-01-01, as Unix milliseconds (with the fraction). */
  time(): number {
    return Number(this.buf.readBigInt64BE((this.offset += 8) - 8) + pgEpochMicros) / 1000;
  }
  cstring(): string {
    const end = this.buf.indexOf(0, this.offset);
    if (end < 0) throw new Error('pgoutput: unterminated string');
    const s = this.buf.toString('utf8', this.offset, end);
    this.offset = end + 1;
    return s;
  }
  bytes(n: number): Buffer {
    const b = this.buf.subarray(this.offset, this.offset + n);
    if (b.length !== n) throw new Error('pgoutput: message shorter than its lengths say');
    this.offset += n;
    return b;
  }
  rest(): Buffer {
    return this.buf.subarray(this.offset);
  }
}

function tuple(r: Reader): TupleValue[] {
  const n = r.i16();
  const out: TupleValue[] = [];
  for (let i = 0; i < n; i++) {
    const kind = String.fromCharCode(r.u8());
    if (kind === 'n') out.push(null);
    else if (kind === 'u') out.push({ unchanged: true });
    else if (kind === 't') out.push(r.bytes(r.i32()).toString('utf8'));
    else throw new Error(`pgoutput: column kind ${JSON.stringify(kind)} (binary mode is never asked for)`);
  }
  return out;
}

/** Decodes one pgoutput message (the payload of an XLogData frame). */
export function decodePgOutput(buf: Buffer): PgOutputMessage {
  const r = new Reader(buf);
  const kind = String.fromCharCode(r.u8());
  switch (kind) {
    case 'B':
      return { tag: 'begin', finalLsn: r.u64(), commitTimeMs: r.time(), xid: r.u32() };
    case 'C': {
      r.u8(); // flags: unused
      return { tag: 'commit', commitLsn: r.u64(), endLsn: r.u64(), commitTimeMs: r.time() };
    }
    case 'R': {
      const oid = r.u32();
      const schema = r.cstring();
      const name = r.cstring();
      const replicaIdentity = String.fromCharCode(r.u8());
      const count = r.i16();
      const columns: RelationColumn[] = [];
      for (let i = 0; i < count; i++) {
        const flags = r.u8();
        columns.push({ name: r.cstring(), typeOid: r.u32(), typeMod: r.i32(), isKey: (flags & 1) === 1 });
      }
      return { tag: 'relation', relation: { oid, schema, name, replicaIdentity, columns } };
    }
    case 'I': {
      const relationOid = r.u32();
      r.u8(); // 'N'
      return { tag: 'insert', relationOid, after: tuple(r) };
    }
    case 'U': {
      const relationOid = r.u32();
      let sub = String.fromCharCode(r.u8());
      let before: TupleValue[] | null = null;
      const beforeIsKey = sub === 'K';
      if (sub === 'K' || sub === 'O') {
        before = tuple(r);
        sub = String.fromCharCode(r.u8());
      }
      return { tag: 'update', relationOid, before, beforeIsKey, after: tuple(r) };
    }
    case 'D': {
      const relationOid = r.u32();
      const sub = String.fromCharCode(r.u8());
      return { tag: 'delete', relationOid, beforeIsKey: sub === 'K', before: tuple(r) };
    }
    case 'T': {
      const count = r.i32();
      const options = r.u8();
      const relationOids: number[] = [];
      for (let i = 0; i < count; i++) relationOids.push(r.u32());
      return { tag: 'truncate', relationOids, cascade: (options & 1) === 1, restartIdentity: (options & 2) === 2 };
    }
    case 'M': {
      // pg_logical_emit_message (the `messages` option; no xid: in-progress transactions are not streamed)
      const transactional = (r.u8() & 1) === 1;
      r.u64(); // the message's LSN
      const prefix = r.cstring();
      const size = r.i32();
      return { tag: 'message', transactional, prefix, content: r.rest().subarray(0, size) };
    }
    default:
      // Origin, Type: nothing capture needs
      return { tag: 'other', kind };
  }
}

/** A frame of the replication stream (CopyData payloads the server sends). */
export type ReplicationFrame =
  | { tag: 'xlog'; start: bigint; end: bigint; data: Buffer }
  | { tag: 'keepalive'; end: bigint; replyNow: boolean };

export function decodeFrame(buf: Buffer): ReplicationFrame {
  const r = new Reader(buf);
  const kind = String.fromCharCode(r.u8());
  if (kind === 'w') {
    const start = r.u64();
    const end = r.u64();
    r.u64(); // server clock
    return { tag: 'xlog', start, end, data: r.rest() };
  }
  if (kind === 'k') {
    const end = r.u64();
    r.u64();
    return { tag: 'keepalive', end, replyNow: r.u8() === 1 };
  }
  throw new Error(`replication stream: unknown frame ${JSON.stringify(kind)}`);
}

/** The standby status update: written, flushed and applied all at `lsn` (what Kafka acknowledged). */
export function standbyStatus(lsn: bigint, nowMs: number): Buffer {
  const b = Buffer.alloc(34);
  b.write('r', 0);
  b.writeBigUInt64BE(lsn, 1);
  b.writeBigUInt64BE(lsn, 9);
  b.writeBigUInt64BE(lsn, 17);
  b.writeBigInt64BE(BigInt(Math.round(nowMs * 1000)) - pgEpochMicros, 25);
  b.writeUInt8(0, 33);
  return b;
}

/** `16/B374D848` ↔ 64-bit integer. */
export function parseLsn(text: string): bigint {
  const m = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/.exec(text);
  if (!m) throw new Error(`not an LSN: ${JSON.stringify(text)}`);
  return (BigInt(`0x${m[1]}`) << 32n) | BigInt(`0x${m[2]}`);
}

export function formatLsn(lsn: bigint): string {
  return `${(lsn >> 32n).toString(16).toUpperCase()}/${(lsn & 0xffffffffn).toString(16).toUpperCase()}`;
}
