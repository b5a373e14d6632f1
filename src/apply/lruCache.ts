/**
 * A map that keeps at most `capacity` entries, dropping the least recently used: caches keyed by what
 * records carry (a column subset, say) stay bounded whatever a topic's writer sends.
 */
export class LruCache<K, V> {
  private readonly entries = new Map<K, V>();

  constructor(readonly capacity: number) {}

  get size(): number {
    return this.entries.size;
  }

  /** The cached value, or `make()`'s, cached; either becomes the most recently used. */
  getOrMake(key: K, make: () => V): V {
    let value = this.entries.get(key);
    if (value !== undefined || this.entries.has(key)) {
      this.entries.delete(key); // re-inserted below: a Map iterates in insertion order, oldest first
    } else {
      value = make();
      if (this.entries.size >= this.capacity) this.entries.delete(this.entries.keys().next().value as K);
    }
    this.entries.set(key, value as V);
    return value as V;
  }
}
