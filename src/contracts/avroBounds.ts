import type avro from 'avsc';

/**
 * A bounded walk of Avro binary against its writer's schema, run before avsc decodes it: avsc trusts the
 * item count of an array or map block, so six forged bytes saying 10^8 items run it out of memory and
 * 2^50 never return. Here every count must fit in the bytes left (at the least size of its items), and
 * items that take no bytes at all are capped in number.
 */
export class AvroBoundsError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'AvroBoundsError';
  }
}

/** What the walk reads of avsc's types (their documented properties). */
interface TypeShape {
  typeName: string;
  fields?: { type: TypeShape }[];
  types?: TypeShape[];
  itemsType?: TypeShape;
  valuesType?: TypeShape;
  underlyingType?: TypeShape;
  symbols?: string[];
  size?: number;
}

const maxDepth = 64;
/** Items that take no bytes (null, an empty record) cost no bytes but a step each: at most this many per value. */
const maxFreeItems = 100_000;

const minSizes = new WeakMap<TypeShape, number>();

/** The fewest bytes a value of the type takes (a lower bound for recursive types). */
function minSize(t: TypeShape, visiting = new Set<TypeShape>()): number {
  const known = minSizes.get(t);
  if (known !== undefined) return known;
  if (visiting.has(t)) return 0;
  visiting.add(t);
  let n: number;
  switch (kindOf(t)) {
    case 'null': n = 0; break;
    case 'float': n = 4; break;
    case 'double': n = 8; break;
    case 'fixed': n = t.size ?? 0; break;
    case 'record': n = (t.fields ?? []).reduce((sum, f) => sum + minSize(f.type, visiting), 0); break;
    case 'logical': n = minSize(t.underlyingType!, visiting); break;
    // boolean, int, long, bytes, string, enum, union index, array/map end marker: one byte at least
    default: n = 1;
  }
  visiting.delete(t);
  minSizes.set(t, n);
  return n;
}

function kindOf(t: TypeShape): string {
  if (t.typeName.startsWith('union:')) return 'union';
  if (t.typeName.startsWith('logical:') || t.underlyingType) return 'logical';
  if (t.typeName === 'abstract:long') return 'long';
  if (t.typeName === 'error') return 'record';
  return t.typeName;
}

/** Whether the type holds an array or map anywhere: only those have counts to check. */
export function hasBlocks(type: avro.Type): boolean {
  const walk = (t: TypeShape, seen: Set<TypeShape>): boolean => {
    if (seen.has(t)) return false;
    seen.add(t);
    const k = kindOf(t);
    if (k === 'array' || k === 'map') return true;
    const inner = [...(t.fields ?? []).map((f) => f.type), ...(t.types ?? []), ...(t.underlyingType ? [t.underlyingType] : [])];
    return inner.some((x) => walk(x, seen));
  };
  return walk(type as unknown as TypeShape, new Set());
}

class Walk {
  private pos = 0;
  private freeItems = 0;

  constructor(private readonly buf: Buffer) {}

  private fail(what: string): never {
    throw new AvroBoundsError(`${what} (at byte ${this.pos} of ${this.buf.length})`);
  }

  private left(): number {
    return this.buf.length - this.pos;
  }

  /** A zig-zag varint of at most 10 bytes, as a number (exact to 2^53, enough to compare with lengths). */
  private long(): number {
    let value = 0;
    let scale = 1;
    for (let i = 0; ; i++) {
      if (i === 10) this.fail('a varint longer than 10 bytes');
      if (this.pos >= this.buf.length) this.fail('the bytes end inside a number');
      const b = this.buf[this.pos++]!;
      value += (b & 0x7f) * scale;
      scale *= 128;
      if ((b & 0x80) === 0) break;
    }
    return value % 2 === 0 ? value / 2 : -(value + 1) / 2;
  }

  private skip(n: number, what: string): void {
    if (n < 0 || n > this.left()) this.fail(`${what} of ${n} bytes, with ${this.left()} left`);
    this.pos += n;
  }

  value(t: TypeShape, depth: number): void {
    if (depth > maxDepth) this.fail(`values nested deeper than ${maxDepth}`);
    switch (kindOf(t)) {
      case 'null': return;
      case 'boolean': return this.skip(1, 'a boolean');
      case 'int': case 'long': this.long(); return;
      case 'float': return this.skip(4, 'a float');
      case 'double': return this.skip(8, 'a double');
      case 'bytes': case 'string': return this.skip(this.long(), 'a string or bytes');
      case 'fixed': return this.skip(t.size ?? 0, 'a fixed');
      case 'enum': this.index(t.symbols?.length ?? 0, 'enum symbol'); return;
      case 'union': return this.value(t.types![this.index(t.types!.length, 'union branch')]!, depth + 1);
      case 'logical': return this.value(t.underlyingType!, depth + 1);
      case 'record': for (const f of t.fields ?? []) this.value(f.type, depth + 1); return;
      case 'array': return this.blocks(t.itemsType!, false, depth);
      case 'map': return this.blocks(t.valuesType!, true, depth);
      default: this.fail(`a type the check does not know (${t.typeName})`);
    }
  }

  private index(count: number, what: string): number {
    const i = this.long();
    if (i < 0 || i >= count) this.fail(`${what} ${i} of ${count}`);
    return i;
  }

  private blocks(item: TypeShape, keyed: boolean, depth: number): void {
    const each = minSize(item) + (keyed ? 1 : 0);
    for (;;) {
      let count = this.long();
      if (count === 0) return;
      if (count < 0) {
        count = -count;
        const size = this.long();
        if (size < 0 || size > this.left()) this.fail(`a block of ${size} bytes, with ${this.left()} left`);
      }
      if (each > 0 && count * each > this.left()) this.fail(`a block of ${count} items needs ${count * each} bytes at least, with ${this.left()} left`);
      if (each === 0 && (this.freeItems += count) > maxFreeItems) this.fail(`more than ${maxFreeItems} items that take no bytes`);
      for (let i = 0; i < count; i++) {
        if (keyed) this.skip(this.long(), 'a map key');
        this.value(item, depth + 1);
      }
    }
  }
}

/** Throws an AvroBoundsError naming the first count or length the bytes cannot hold. */
export function checkAvroBounds(type: avro.Type, payload: Buffer): void {
  new Walk(payload).value(type as unknown as TypeShape, 0);
}
