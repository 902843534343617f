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

  /**
   * Like {@link do}, but a resolved call stays shared until the work calls `release` (a rejected one
   * is dropped at once): for work whose result lives on after its promise settles, such as a fill
   * that keeps running once the upstream answered. `release` drops only this call's entry, never a
   * newer one started for the same key after an earlier release.
   */
  hold(key: string, work: (release: () => void) => Promise<T>): Promise<T> {
    const existing = this.#running.get(key);
    if (existing) return existing;
    let promise: Promise<T> | undefined;
    let released = false;
    const release = () => {
      released = true;
      if (promise !== undefined && this.#running.get(key) === promise) this.#running.delete(key);
    };
    try {
      promise = work(release);
    } catch (err) {
      promise = Promise.reject(err);
    }
    if (!released) this.#running.set(key, promise);
    // Registered before any caller's handler: a caller retrying after the failure starts afresh.
    promise.catch(release);
    return promise;
  }

  /** The call running (or held) for `key`, if any. */
  get(key: string): Promise<T> | undefined {
    return this.#running.get(key);
  }

  get size(): number {
    return this.#running.size;
  }
}
