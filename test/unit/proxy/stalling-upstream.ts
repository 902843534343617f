/**
 * @module test/unit/proxy/stalling-upstream
 * Stalls for the in-memory upstream (fake-upstream.ts): answers whose head arrives and whose body
 * then goes silent until the request's signal aborts it, as a real upstream client's body does,
 * and a short upstream `timeout` so the proxy's bounds are reached quickly.
 */
import { PassThrough } from 'node:stream';
import type { UpstreamConfig } from '../../../src/config/schema.ts';
import type { UpstreamRequest } from '../../../src/proxy/upstream.ts';
import type { FakeUpstream } from './fake-upstream.ts';

/** Sets the upstream's `timeout` (ms): what the proxy lets a client wait for it. */
export function setUpstreamTimeout(upstream: FakeUpstream, ms: number): void {
  // The parsed config is frozen: the fake gets a copy with the new timeout.
  (upstream as { config: UpstreamConfig }).config = { ...upstream.config, timeout: ms };
}

/**
 * GET answers matching `match` keep their status and headers, send one byte of body, then nothing
 * until the request's signal aborts (the body then fails with its reason).
 */
export function stallBodies(upstream: FakeUpstream, match: (req: UpstreamRequest) => boolean): void {
  const request = upstream.request.bind(upstream);
  upstream.request = async (req) => {
    const res = await request(req);
    if (req.method !== 'GET' || !match(req)) return res;
    res.body.destroy();
    const body = new PassThrough();
    body.write('{');
    const signal = req.signal;
    if (signal?.aborted) body.destroy(signal.reason as Error);
    else signal?.addEventListener('abort', () => body.destroy(signal.reason as Error), { once: true });
    return { ...res, body };
  };
}
