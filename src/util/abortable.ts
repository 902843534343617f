/**
 * @module util/abortable
 * Waiting on a shared promise without tying it to one caller: the caller's signal ends only its
 * own wait, the promise (a single-flight token fetch, a socket flush) goes on for the others.
 */

/**
 * `promise`, unless `signal` aborts first; then rejects with `reason()` (the signal's own reason
 * by default). Listeners are removed either way.
 */
export function abortable<T>(promise: Promise<T>, signal: AbortSignal | undefined, reason: () => unknown = () => signal?.reason): Promise<T> {
  if (signal === undefined) return promise;
  if (signal.aborted) return Promise.reject(reason());
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(reason());
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (err: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(err);
      },
    );
  });
}
