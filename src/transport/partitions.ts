import { murmur2 } from '@platformatic/kafka';

/**
 * The partition of a key, as Kafka's Java producer computes it (murmur2, sign bit masked), so keys land
 * where other Kafka tools expect them, and so the consumer can tell which target rows a partition owns.
 */
export function partitionOf(key: string, partitions: number): number {
  return (murmur2(Buffer.from(key, 'utf8')) & 0x7fffffff) % partitions;
}
