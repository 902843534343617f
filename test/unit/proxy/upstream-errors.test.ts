/**
 * Upstream answers → client errors, and which failures count as an outage (serve stale) rather
 * than an answer or a configuration problem the operator must see.
 */
import { describe, expect, it } from 'vitest';
import { RegistryError } from '../../../src/registry/errors.ts';
import { isUpstreamOutage, upstreamError } from '../../../src/proxy/upstream-errors.ts';

const what = { upstream: 'hub', repo: 'library/alpine', notFound: 'MANIFEST_UNKNOWN' as const, subject: 'latest' };

describe('upstreamError', () => {
  it('maps 404 to the endpoint code, 429 to TOOMANYREQUESTS with Retry-After, 401/403 to DENIED and 5xx to a 502', () => {
    expect(upstreamError({ status: 404, headers: {} }, what)).toMatchObject({ code: 'MANIFEST_UNKNOWN', status: 404 });
    expect(upstreamError({ status: 429, headers: { 'retry-after': '30' } }, what)).toMatchObject({ code: 'TOOMANYREQUESTS', status: 429, headers: { 'Retry-After': '30' } });
    expect(upstreamError({ status: 401, headers: {} }, what)).toMatchObject({ code: 'DENIED', status: 403 });
    expect(upstreamError({ status: 503, headers: {} }, what)).toMatchObject({ code: 'BAD_GATEWAY', status: 502, upstreamStatus: 503 });
  });
});

describe('isUpstreamOutage', () => {
  it('counts an unreachable upstream, its 5xx answers and rate limiting as an outage', () => {
    expect(isUpstreamOutage(new RegistryError('UNAVAILABLE', { message: 'unreachable' }))).toBe(true);
    expect(isUpstreamOutage(upstreamError({ status: 500, headers: {} }, what))).toBe(true);
    expect(isUpstreamOutage(upstreamError({ status: 429, headers: {} }, what))).toBe(true);
  });

  it('does not count answers or the mirror refusing a token realm as an outage', () => {
    expect(isUpstreamOutage(upstreamError({ status: 404, headers: {} }, what))).toBe(false);
    expect(isUpstreamOutage(upstreamError({ status: 403, headers: {} }, what))).toBe(false);
    expect(isUpstreamOutage(new RegistryError('BAD_GATEWAY', { message: 'realm not in realmHosts' }))).toBe(false);
    expect(isUpstreamOutage(new Error('boom'))).toBe(false);
  });
});
