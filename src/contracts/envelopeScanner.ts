import { isUtf8 } from 'node:buffer';
import { ByteCursor, CopyOut, decodeString, Kind, NameTable, refused, type Span } from './byteScan.js';
import { canonicalAt, copyString, integerText, optional, sameValue, stringAt, whole } from './spanValues.js';
import { envelopeLimits } from './envelope.js';
import { RowScan, type ScanTable } from './rowScan.js';

/**
 * The strict decoder's verdict (envelope.ts decodeEnvelope + route.ts decodeRecord) reached over the
 * record's bytes, and the target's COPY text line of the row written straight from them: no Map, no string
 * per value, no JsonNumber. Its guarantees are the decoder's, kept by a property test against it.
 */

export type { ScanTable };

/**
 * `row`: a change (scanner fields set); `truncate`: a valid truncate; `poison`: the decoder refuses it;
 * `fallback`: bytes that are not UTF-8, which the decoder reads through replacement characters: it decides.
 */
export type Verdict = 'row' | 'truncate' | 'poison' | 'fallback';

const maxKeyBytes = 2048;
const integerTypes = /^(smallint|integer|bigint)$/;
const stringTypes = /^(text|character|uuid|date|time|timestamp|interval|name|citext|inet|cidr|macaddr)/;
const enum KeyForm { Any, Integer, Boolean, String }

/** An object's members are scalars or raw text: nothing is read deeper. */
const scalarsOnly = (): undefined => undefined;
/** source.snapshot's values: compared as bytes (no string per record) unless the member has an escape. */
const markerTexts = new Set(['true', 'last', 'false', 'incremental']);
const snapshotMarkers = [...markerTexts].map((m) => Buffer.from(m));

/** Whether string member i is a snapshot marker, as the decoder reads it (escapes resolved). */
function isMarker(b: Buffer, slots: Slots, i: number): boolean {
  if (slots.escaped[i] === 1) return markerTexts.has(decodeString(b, slots.span(i)));
  const start = slots.starts[i]!;
  const length = slots.ends[i]! - start;
  for (const m of snapshotMarkers) {
    if (m.length !== length) continue;
    let k = 0;
    while (k < length && b[start + k] === m[k]) k++;
    if (k === length) return true;
  }
  return false;
}

/** A row object's members by column: kinds and spans, reset per record. */
class Slots {
  readonly kinds: Uint8Array;
  readonly starts: Int32Array;
  readonly ends: Int32Array;
  readonly escaped: Uint8Array;
  unknown: Set<string> | undefined;

  constructor(n: number) {
    this.kinds = new Uint8Array(n);
    this.starts = new Int32Array(n);
    this.ends = new Int32Array(n);
    this.escaped = new Uint8Array(n);
  }

  clear(): void {
    this.kinds.fill(Kind.Absent);
    this.unknown = undefined;
  }

  set(i: number, kind: Kind, c: ByteCursor): void {
    this.kinds[i] = kind;
    const s = kind === Kind.String;
    this.starts[i] = s ? c.str.start : c.valueStart;
    this.ends[i] = s ? c.str.end : c.valueEnd;
    this.escaped[i] = s && c.str.escaped ? 1 : 0;
  }

  span(i: number): Span {
    return { start: this.starts[i]!, end: this.ends[i]!, escaped: this.escaped[i] === 1 };
  }
}

const envelopeNames = new NameTable(['before', 'after', 'source', 'op', 'ts_ms']);
const [before, after, source, opMember, tsMs] = [0, 1, 2, 3, 4];
const sourceNames = new NameTable(['version', 'connector', 'name', 'ts_ms', 'snapshot', 'db', 'schema', 'table', 'txId', 'lsn', 'schema_version']);
const stringMembers = [0, 1, 2, 5, 6, 7];
const [sourceTsMs, snapshot, txId, lsn, schemaVersion] = [3, 4, 8, 9, 10];

/** One scanner per target table; scan() reads a record, its fields stay until the next scan. */
export class EnvelopeScanner extends RowScan {
  private readonly value = new ByteCursor(envelopeLimits.maxDepth);
  private readonly keyCursor = new ByteCursor(envelopeLimits.maxDepth);
  private readonly columns: NameTable;
  private readonly keyNames: NameTable;
  private readonly keyColumn: number[];
  private readonly keyForms: KeyForm[];
  private readonly rows = [new Slots(0), new Slots(0)];
  private readonly envelope = new Slots(5);
  private readonly source = new Slots(11);
  private readonly keySlots: Slots;
  /** Set by find() for a name not in its table. */
  unknown = '';

  constructor(table: ScanTable, private readonly limits = envelopeLimits) {
    super(table);
    this.columns = new NameTable(table.columns);
    this.rows = [new Slots(table.columns.length), new Slots(table.columns.length)];
    this.keyNames = new NameTable(table.key);
    this.keySlots = new Slots(table.key.length);
    this.keyColumn = table.key.map((k) => table.columns.indexOf(k));
    this.keyForms = table.key.map((k) => {
      const type = table.types[k] ?? '';
      return integerTypes.test(type) ? KeyForm.Integer : type === 'boolean' ? KeyForm.Boolean : stringTypes.test(type) ? KeyForm.String : KeyForm.Any;
    });
  }

  private row(): Slots {
    return this.rows[this.op === 'd' ? 0 : 1]!;
  }

  scan(value: Buffer, key: Buffer | undefined): Verdict {
    // a key column the target lacks: the decoder compares it anyway, the general path decides
    if (this.keyColumn.includes(-1)) return 'fallback';
    if (!isUtf8(value) || (key !== undefined && !isUtf8(key))) return 'fallback';
    try {
      if (value.length > this.limits.maxBytes) throw refused;
      this.readEnvelope(value);
      if (!this.checkEnvelope(value)) throw refused;
      if (this.op === 't') return 'truncate';
      if (this.envelope.kinds[this.op === 'd' ? before : after] !== Kind.Object || key === undefined) throw refused;
      if (key.length > this.limits.maxBytes) throw refused;
      this.readKey(key);
      this.checkKey(value, key);
      this.unknownColumns = this.rows[1]!.unknown !== undefined;
      this.lineShape();
      return 'row';
    } catch (err) {
      if (err === refused) return 'poison';
      throw err;
    }
  }

  private readEnvelope(b: Buffer): void {
    const c = this.value;
    c.reset(b);
    this.envelope.clear();
    this.rows[0]!.clear();
    this.rows[1]!.clear();
    this.source.clear();
    c.ws();
    this.object(c, this.envelope, envelopeNames, 1, this.envelopeMember);
    c.ws();
    if (c.pos !== b.length) throw refused;
  }

  /** An envelope member's object read deeper; one function for every record (no closure per record). */
  private readonly envelopeMember = (i: number, depth: number): Kind | undefined => {
    const c = this.value;
    if (c.b[c.pos] !== 0x7b) return undefined;
    if (i === before || i === after) this.object(c, this.rows[i]!, this.columns, depth, scalarsOnly);
    else if (i === source) this.object(c, this.source, sourceNames, depth, scalarsOnly);
    else this.object(c, new Slots(0), sourceNames, depth, scalarsOnly);
    return Kind.Object;
  };

  /**
   * An object at pos (the strict reader's object(depth)): each member into `slots` by name, duplicates
   * refused (unknown names too); `nested` reads a member object deeper, else values are scalars or raw.
   */
  private object(c: ByteCursor, slots: Slots, names: NameTable, depth: number, nested: (i: number, depth: number) => Kind | undefined): void {
    if (depth > c.maxDepth) throw refused;
    c.expect(0x7b);
    c.ws();
    if (c.b[c.pos] === 0x7d) {
      c.pos++;
      return;
    }
    let hint = 0;
    for (;;) {
      c.ws();
      c.string();
      const i = names.find(c.b, c.str, hint, this);
      if (i >= 0) {
        if (slots.kinds.length <= i || slots.kinds[i] !== Kind.Absent) {
          if (slots.kinds.length > i) throw refused;
          // a table of names this object does not keep (an unknown envelope member's object)
          this.unknownName(slots, names.names[i]!);
        }
        hint = i + 1;
      } else this.unknownName(slots, this.unknown);
      c.ws();
      c.expect(0x3a);
      c.ws();
      const kind = nested(i, depth + 1) ?? c.memberValue(depth + 1);
      if (i >= 0 && i < slots.kinds.length) slots.set(i, kind, c);
      c.ws();
      const next = c.b[c.pos++];
      if (next === 0x7d) return;
      if (next !== 0x2c) throw refused;
    }
  }

  private unknownName(slots: Slots, name: string): void {
    slots.unknown ??= new Set();
    if (slots.unknown.has(name)) throw refused;
    slots.unknown.add(name);
  }

  private checkEnvelope(b: Buffer): boolean {
    const e = this.envelope;
    const s = this.source;
    if (e.kinds[opMember] !== Kind.String) return false;
    const op = stringAt(b, e.span(opMember));
    if (op !== 'c' && op !== 'u' && op !== 'd' && op !== 'r' && op !== 't') return false;
    this.op = op;
    if (e.kinds[source] !== Kind.Object) return false;
    if (s.kinds[snapshot] !== Kind.String) return false;
    if (!isMarker(b, s, snapshot)) return false;
    for (const i of stringMembers) if (s.kinds[i] !== Kind.String) return false;
    if (!optional(b, s, txId, 20, false) || !optional(b, s, lsn, 20, false)) return false;
    if (s.kinds[sourceTsMs] !== Kind.Number || !whole(b, s.starts[sourceTsMs]!, s.ends[sourceTsMs]!, 16, true)) return false;
    if (!optional(b, s, schemaVersion, 16, true)) return false;
    if (e.kinds[tsMs] !== Kind.Number || !whole(b, e.starts[tsMs]!, e.ends[tsMs]!, 16, true)) return false;
    for (const i of [before, after]) if (e.kinds[i] !== Kind.Absent && e.kinds[i] !== Kind.Null && e.kinds[i] !== Kind.Object) return false;
    this.tsMs = Number(b.toString('latin1', s.starts[sourceTsMs], s.ends[sourceTsMs]));
    return true;
  }

  private readKey(k: Buffer): void {
    const c = this.keyCursor;
    c.reset(k);
    this.keySlots.clear();
    c.ws();
    this.object(c, this.keySlots, this.keyNames, 1, scalarsOnly);
    c.ws();
    if (c.pos !== k.length) throw refused;
  }

  /** The key names exactly the key columns, each equal to the row's value in canonical form, in the type's form. */
  private checkKey(b: Buffer, k: Buffer): void {
    const key = this.keySlots;
    if (key.unknown !== undefined) throw refused;
    const row = this.row();
    let text = '{';
    for (let j = 0; j < this.keyColumn.length; j++) {
      const kind = key.kinds[j]!;
      const col = this.keyColumn[j]!;
      if (kind === Kind.Absent || kind === Kind.Null) throw refused;
      if (row.kinds[col] !== kind || !sameValue(k, key.span(j), b, row.span(col), kind)) throw refused;
      const form = this.keyForms[j]!;
      const ok = form === KeyForm.Integer ? kind === Kind.Number && integerText(b, row.starts[col]!, row.ends[col]!)
        : form === KeyForm.Boolean ? kind === Kind.True || kind === Kind.False
        : form === KeyForm.String ? kind === Kind.String
        : true;
      if (!ok) throw refused;
      text += `${j === 0 ? '' : ','}${this.keyJson[j]}:${canonicalAt(b, row.span(col), kind)}`;
    }
    this.keyText = `${text}}`;
    // a UTF-16 unit is at most 3 UTF-8 bytes: most keys need no count
    if (this.keyText.length * 3 > maxKeyBytes && Buffer.byteLength(this.keyText) > maxKeyBytes) throw refused;
  }

  protected carries(i: number): boolean {
    return this.rows[1]!.kinds[i] !== Kind.Absent;
  }

  protected plain(i: number): boolean {
    return this.rows[1]!.kinds[i] !== Kind.Raw;
  }

  /** Writes the last row's COPY line (only when `copyable`): tab-separated, \N for NULL, COPY escaping. */
  writeLine(out: CopyOut): void {
    const b = this.value.b;
    const row = this.rows[1]!;
    let first = true;
    for (let i = 0; i < row.kinds.length; i++) {
      const kind = row.kinds[i]!;
      if (!this.table.writable[i] || kind === Kind.Absent) continue;
      if (!first) out.byte(0x09);
      first = false;
      if (kind === Kind.Null) out.text('\\N');
      else if (kind === Kind.String && row.escaped[i] === 1) out.text(copyString(decodeString(b, row.span(i))));
      else out.bytes(b, row.starts[i]!, row.ends[i]!);
    }
    out.byte(0x0a);
  }
}
