/**
 * @module proxy/upstream-deadline
 * The upstream's `timeout` as a bound on what a client waits for: a whole small exchange (a
 * manifest or a listing, head and body), and a client's wait for work it shares with others
 * (a single flight, a blob fill's answer), which goes on for them when one client gives up.
 * Both fail with UNAVAILABLE (503), which clients retry and the proxy treats as an outage
 * (serve stale).
 */
import { RegistryError } from '../registry/errors.ts';
import { abortable } from '../util/abortable.ts';
import type { Upstream } from './upstream.ts';

/** UNAVAILABLE naming the upstream and its timeout; `what` says what did not arrive in time. */
function upstreamTimedOut(upstream: Pick<Upstream, 'name' | 'config'>, what: string): RegistryError {
  return new RegistryError('UNAVAILABLE', {
    message: `upstream ${upstream.name} timed out: ${what} not within ${upstream.config.timeout} ms`,
    detail: { upstream: upstream.name, timeoutMs: upstream.config.timeout },
  });
}

/**
 * Runs `work` with a signal that aborts after the upstream's `timeout`, so a request whose body
 * stalls after its head is given up as a whole. Whatever the work throws once that happened (the
 * aborted request's own error, or one it turned into a BAD_GATEWAY), the timeout is what failed.
 */
export async function withinTimeout<T>(upstream: Pick<Upstream, 'name' | 'config'>, what: string, work: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(upstreamTimedOut(upstream, what)), upstream.config.timeout);
  try {
    return await work(controller.signal);
  } catch (err) {
    if (controller.signal.aborted) throw controller.signal.reason;
    throw err;
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Waits for shared work at most the upstream's `timeout`, then rejects with UNAVAILABLE; the work
 * itself is not cancelled (others may be waiting for it, and its result may still be cached).
 */
export function waitAtMost<T>(upstream: Pick<Upstream, 'name' | 'config'>, what: string, shared: Promise<T>): Promise<T> {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(upstreamTimedOut(upstream, what)), upstream.config.timeout);
  // abortable subscribes to `shared`: its rejection after a give-up is handled, not an unhandled one.
  return abortable(shared, controller.signal).finally(() => clearTimeout(timer));
}
