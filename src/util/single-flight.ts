/**
 * @module util/single-flight
 * Deduplicates concurrent work by key: while a call for `key` is running, later callers get
 * the same promise. The work receives no caller's AbortSignal: one client leaving must not
 * cancel what others (or the cache) still want (distribution uses context.WithoutCancel for this).
 */
export class SingleFlight<T> {
  readonly #running = new Map<string, Promise<T>>();

  /** Runs `work` unless a call for `key` is already running, in which case it joins that one. */
  do(key: string, work: () => Promise<T>): Promise<T> {
    const existing = this.#running.get(key);
    if (existing) return existing;
    let started: Promise<T>;
    try {
      started = work();
    } catch (err) {
      // A synchronous throw is shared like a rejection, and cleaned up the same way.
      started = Promise.reject(err);
    }
    const promise = started.finally(() => this.#running.delete(key));
    this.#running.set(key, promise);
    return promise;
  }

  get size(): number {
    return this.#running.size;
  }
}
