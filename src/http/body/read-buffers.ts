/**
 * @module http/body/read-buffers
 * Read buffers kept for the next blob response that copies a file through buffers (http/
 * blob-writer): each response reads into two buffers and reuses them as the socket takes each
 * one, then hands them back here, so a herd of clients allocates nothing per chunk and leaves no
 * garbage for the collector to find late (which is what made a herd's RSS grow).
 */

/** Buffers kept per size; beyond that a returned buffer is left to the collector. */
const BUFFERS_KEPT = 16;

export class ReadBuffers {
  readonly #free = new Map<number, Buffer[]>();

  /** A buffer of `size` bytes, reused when one is free. */
  take(size: number): Buffer {
    return this.#free.get(size)?.pop() ?? Buffer.allocUnsafeSlow(size);
  }

  /** Gives `buffer` back for reuse; only a buffer no socket still references. */
  give(buffer: Buffer): void {
    let free = this.#free.get(buffer.length);
    if (free === undefined) {
      free = [];
      this.#free.set(buffer.length, free);
    }
    if (free.length < BUFFERS_KEPT) free.push(buffer);
  }

  /** Drops every kept buffer (the idle collector, util/idle-collector, then frees them). */
  trim(): void {
    this.#free.clear();
  }

  /** Buffers kept now (for tests). */
  get kept(): number {
    let n = 0;
    for (const free of this.#free.values()) n += free.length;
    return n;
  }
}
