// A bounded window of the most recent items, bounded both in count and in
// bytes, so a tail that runs for hours keeps its memory flat.

export class Ring<T> {
  private readonly items: (T | undefined)[];
  private readonly sizes: Float64Array;
  private head = 0; // index of the oldest item
  private len = 0;
  private bytesHeld = 0;
  private evictedTotal = 0;

  /**
   * @param capacity most items kept
   * @param maxBytes most bytes kept (as measured by sizeOf); the newest item is always kept
   * @param sizeOf how many bytes an item holds
   */
  constructor(
    readonly capacity: number,
    readonly maxBytes: number,
    private readonly sizeOf: (item: T) => number,
  ) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError(`ring capacity ${capacity} must be a positive integer`);
    if (!(maxBytes > 0)) throw new RangeError(`ring maxBytes ${maxBytes} must be positive`);
    this.items = new Array<T | undefined>(capacity);
    this.sizes = new Float64Array(capacity);
  }

  /** length is how many items the ring holds. */
  get length(): number {
    return this.len;
  }

  /** bytes is how many bytes the held items account for. */
  get bytes(): number {
    return this.bytesHeld;
  }

  /** evicted counts every item dropped since the ring was made (or cleared). */
  get evicted(): number {
    return this.evictedTotal;
  }

  /** push appends an item, dropping the oldest ones to stay within bounds. */
  push(item: T): void {
    const size = this.sizeOf(item);
    if (this.len === this.capacity) this.dropOldest();
    while (this.len > 0 && this.bytesHeld + size > this.maxBytes) this.dropOldest();
    const i = (this.head + this.len) % this.capacity;
    this.items[i] = item;
    this.sizes[i] = size;
    this.len++;
    this.bytesHeld += size;
  }

  /** at returns the i-th held item, 0 being the oldest, or undefined out of range. */
  at(i: number): T | undefined {
    if (i < 0 || i >= this.len || !Number.isInteger(i)) return undefined;
    return this.items[(this.head + i) % this.capacity];
  }

  /** last returns the newest item. */
  last(): T | undefined {
    return this.at(this.len - 1);
  }

  /** clear drops every item and resets the eviction count. */
  clear(): void {
    this.items.fill(undefined);
    this.head = 0;
    this.len = 0;
    this.bytesHeld = 0;
    this.evictedTotal = 0;
  }

  /** toArray copies the held items, oldest first. */
  toArray(): T[] {
    const out: T[] = [];
    for (let i = 0; i < this.len; i++) out.push(this.at(i) as T);
    return out;
  }

  private dropOldest(): void {
    this.bytesHeld -= this.sizes[this.head];
    this.items[this.head] = undefined; // let the GC have it
    this.head = (this.head + 1) % this.capacity;
    this.len--;
    this.evictedTotal++;
  }
}
