// pgoutput v1 messages written byte by byte as PostgreSQL's protocol documentation lays them out.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { decodeFrame, decodePgOutput, formatLsn, parseLsn, standbyStatus } from '../../src/capture/pgoutput.js';

const u8 = (n: number) => Buffer.from([n]);
const i16 = (n: number) => { const b = Buffer.alloc(2); b.writeInt16BE(n); return b; };
const i32 = (n: number) => { const b = Buffer.alloc(4); b.writeInt32BE(n); return b; };
const u64 = (n: bigint) => { const b = Buffer.alloc(8); b.writeBigUInt64BE(n); return b; };
const str = (s: string) => Buffer.concat([Buffer.from(s), u8(0)]);
const ch = (c: string) => Buffer.from(c);
const text = (s: string) => Buffer.concat([ch('t'), i32(Buffer.byteLength(s)), Buffer.from(s)]);
/** 2026-01-01T00:00:00.123456Z in µs since 2000-01-01 */
const pgTime = (Date.UTC(2026, 0, 1) - Date.UTC(2000, 0, 1)) * 1000 + 123_456;

test('begin and commit: LSNs exact as 64-bit, commit time in Unix ms with the µs fraction, xid unsigned', () => {
  const begin = decodePgOutput(Buffer.concat([ch('B'), u64(0x1_0000_0001n), u64(BigInt(pgTime)), Buffer.from([0xff, 0xff, 0xff, 0xfe])]));
  assert.deepEqual(begin, { tag: 'begin', finalLsn: 0x1_0000_0001n, commitTimeMs: Date.UTC(2026, 0, 1) + 123.456, xid: 4294967294 });
  const commit = decodePgOutput(Buffer.concat([ch('C'), u8(0), u64(10n), u64(20n), u64(BigInt(pgTime))]));
  assert.deepEqual(commit, { tag: 'commit', commitLsn: 10n, endLsn: 20n, commitTimeMs: Date.UTC(2026, 0, 1) + 123.456 });
});

test('relation, then insert / update with the old key / delete / truncate: values stay text, NULL and unchanged TOAST told apart', () => {
  const relation = decodePgOutput(Buffer.concat([ch('R'), i32(16384), str('public'), str('emp'), ch('d'), i16(3),
    u8(1), str('id'), i32(20), i32(-1), u8(0), str('salary'), i32(1700), i32(655366), u8(0), str('doc'), i32(25), i32(-1)]));
  assert.deepEqual(relation, { tag: 'relation', relation: { oid: 16384, schema: 'public', name: 'emp', replicaIdentity: 'd', columns: [
    { name: 'id', typeOid: 20, typeMod: -1, isKey: true },
    { name: 'salary', typeOid: 1700, typeMod: 655366, isKey: false },
    { name: 'doc', typeOid: 25, typeMod: -1, isKey: false },
  ] } });
  const insert = decodePgOutput(Buffer.concat([ch('I'), i32(16384), ch('N'), i16(3), text('9223372036854775807'), text('0.10'), ch('n')]));
  assert.deepEqual(insert, { tag: 'insert', relationOid: 16384, after: ['9223372036854775807', '0.10', null] });
  const update = decodePgOutput(Buffer.concat([ch('U'), i32(16384), ch('K'), i16(3), text('1'), ch('n'), ch('n'), ch('N'), i16(3), text('2'), text('1e-7'), ch('u')]));
  assert.deepEqual(update, { tag: 'update', relationOid: 16384, before: ['1', null, null], beforeIsKey: true, after: ['2', '1e-7', { unchanged: true }] });
  const plain = decodePgOutput(Buffer.concat([ch('U'), i32(16384), ch('N'), i16(1), text('é😀')]));
  assert.deepEqual(plain, { tag: 'update', relationOid: 16384, before: null, beforeIsKey: false, after: ['é😀'] });
  const del = decodePgOutput(Buffer.concat([ch('D'), i32(16384), ch('O'), i16(1), text('3')]));
  assert.deepEqual(del, { tag: 'delete', relationOid: 16384, before: ['3'], beforeIsKey: false });
  const truncate = decodePgOutput(Buffer.concat([ch('T'), i32(2), u8(3), i32(16384), i32(16390)]));
  assert.deepEqual(truncate, { tag: 'truncate', relationOids: [16384, 16390], cascade: true, restartIdentity: true });
  assert.deepEqual(decodePgOutput(Buffer.concat([ch('Y'), i32(1), str('s'), str('t')])), { tag: 'other', kind: 'Y' });
});

test('a logical message (pg_logical_emit_message): transactional flag, prefix and exactly its content bytes', () => {
  const message = decodePgOutput(Buffer.concat([ch('M'), u8(1), u64(42n), str('pgtunnel.capture-switch'), i32(13), Buffer.from('public.ordersXX')]));
  assert.equal(message.tag, 'message');
  assert.deepEqual(message.tag === 'message' && [message.transactional, message.prefix, message.content.toString()], [true, 'pgtunnel.capture-switch', 'public.orders']);
  const plain = decodePgOutput(Buffer.concat([ch('M'), u8(0), u64(42n), str('p'), i32(0)]));
  assert.deepEqual(plain.tag === 'message' && [plain.transactional, plain.content.length], [false, 0]);
});

test('a tuple shorter than its lengths or a binary column is refused, never read past', () => {
  assert.throws(() => decodePgOutput(Buffer.concat([ch('I'), i32(1), ch('N'), i16(1), ch('t'), i32(10), Buffer.from('abc')])), /shorter than its lengths/);
  assert.throws(() => decodePgOutput(Buffer.concat([ch('I'), i32(1), ch('N'), i16(1), ch('b'), i32(1), u8(1)])), /binary mode/);
});

test('frames: XLogData carries its start LSN and payload, a keepalive its end and whether a reply is due', () => {
  const x = decodeFrame(Buffer.concat([ch('w'), u64(100n), u64(200n), u64(0n), ch('B')]));
  assert.equal(x.tag, 'xlog');
  assert.deepEqual(x.tag === 'xlog' && [x.start, x.end, x.data.toString()], [100n, 200n, 'B']);
  assert.deepEqual(decodeFrame(Buffer.concat([ch('k'), u64(300n), u64(0n), u8(1)])), { tag: 'keepalive', end: 300n, replyNow: true });
  assert.throws(() => decodeFrame(ch('z')), /unknown frame/);
});

test('standby status: written = flushed = applied = the acknowledged LSN, clock in µs since 2000', () => {
  const b = standbyStatus(0x16_B374D848n, Date.UTC(2000, 0, 1) + 1.5);
  assert.equal(b.length, 34);
  assert.equal(b.toString('latin1', 0, 1), 'r');
  for (const at of [1, 9, 17]) assert.equal(b.readBigUInt64BE(at), 0x16_B374D848n);
  assert.equal(b.readBigInt64BE(25), 1500n);
  assert.equal(b.readUInt8(33), 0);
  assert.equal(formatLsn(parseLsn('16/B374D848')), '16/B374D848');
  assert.equal(parseLsn('0/0'), 0n);
  assert.throws(() => parseLsn('16-B374D848'), /not an LSN/);
});
