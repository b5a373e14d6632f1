/**
 * A fixed-size summary of the keys a spilled transaction wrote (a Bloom filter): "no" is certain, "maybe" is
 * checked against the spilled records in the target. Its size does not grow with the keys, so a transaction of
 * any size costs the applier the same memory; past its capacity more answers are "maybe" (more look-ups in the
 * target), never wrong ones.
 */
export class KeySummary {
  private readonly bits: Uint32Array;
  private readonly mask: number;
  /** Keys added, to tell how full it is (for the log). */
  added = 0;

  /** `bytes`: rounded down to a power of two, at least 64. */
  constructor(bytes: number) {
    let words = 16;
    while (words * 2 * 4 <= bytes) words *= 2;
    this.bits = new Uint32Array(words);
    this.mask = words * 32 - 1;
  }

  add(key: string): void {
    this.added++;
    const [h1, h2] = hashes(key);
    for (let i = 0; i < probes; i++) {
      const bit = (h1 + Math.imul(i, h2)) & this.mask;
      this.bits[bit >>> 5]! |= 1 << (bit & 31);
    }
  }

  mayHave(key: string): boolean {
    const [h1, h2] = hashes(key);
    for (let i = 0; i < probes; i++) {
      const bit = (h1 + Math.imul(i, h2)) & this.mask;
      if ((this.bits[bit >>> 5]! & (1 << (bit & 31))) === 0) return false;
    }
    return true;
  }

  get bytes(): number {
    return this.bits.byteLength;
  }
}

/** Bits set per key: near the best false-positive rate at ~10–16 bits per key, cheap to compute. */
const probes = 7;

/** Two independent 32-bit FNV-1a style hashes of a string (double hashing derives the probes from them). */
function hashes(key: string): [number, number] {
  let a = 0x811c9dc5;
  let b = 0x01000193 ^ key.length;
  for (let i = 0; i < key.length; i++) {
    const c = key.charCodeAt(i);
    a = Math.imul(a ^ c, 0x01000193);
    b = Math.imul(b ^ c, 0x5bd1e995);
    b ^= b >>> 15;
  }
  a ^= a >>> 13;
  a = Math.imul(a, 0x85ebca6b);
  a ^= a >>> 16;
  // an odd step visits every bit of a power-of-two table
  return [a >>> 0, (b | 1) >>> 0];
}
