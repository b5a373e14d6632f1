/** Scratch space for a key's UTF-8 bytes: partitioning allocates nothing per message (keys are short). */
let scratch = Buffer.allocUnsafe(4096);

/** Kafka's murmur2 (org.apache.kafka.common.utils.Utils.murmur2) in 32-bit integer arithmetic. */
export function murmur2(data: Uint8Array, length = data.length): number {
  const m = 0x5bd1e995;
  let h = (0x9747b28c ^ length) | 0;
  const whole = length & ~3;
  for (let i = 0; i < whole; i += 4) {
    let k = data[i]! | (data[i + 1]! << 8) | (data[i + 2]! << 16) | (data[i + 3]! << 24);
    k = Math.imul(k, m);
    k ^= k >>> 24;
    k = Math.imul(k, m);
    h = Math.imul(h, m) ^ k;
  }
  switch (length & 3) {
    case 3: h ^= data[whole + 2]! << 16; // falls through
    case 2: h ^= data[whole + 1]! << 8; // falls through
    case 1:
      h ^= data[whole]!;
      h = Math.imul(h, m);
  }
  h ^= h >>> 13;
  h = Math.imul(h, m);
  h ^= h >>> 15;
  return h | 0;
}

/**
 * The partition of a key, as Kafka's Java producer computes it (murmur2, sign bit masked), so keys land
 * where other Kafka tools expect them, and so the consumer can tell which target rows a partition owns.
 */
export function partitionOf(key: string | Uint8Array, partitions: number): number {
  if (typeof key !== 'string') return (murmur2(key) & 0x7fffffff) % partitions;
  if (key.length * 3 > scratch.length) scratch = Buffer.allocUnsafe(key.length * 3);
  return (murmur2(scratch, scratch.write(key, 'utf8')) & 0x7fffffff) % partitions;
}
