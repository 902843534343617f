/**
 * @module test/unit/proxy/list-proxy
 * Listings on a real Metadata with a clock the test moves, against an in-memory upstream. Tag
 * lists are asked upstream every time it answers, and come from the cache (STALE) only when it
 * does not; referrers lists are fresh for the upstream's tagTTL (OCI distribution-spec "Listing
 * Referrers"); `n`/`last` are applied when the upstream ignores them ("Listing Tags").
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ListProxy } from '../../../src/proxy/list-proxy.ts';
import { RegistryError } from '../../../src/registry/errors.ts';
import { openCacheFixture, type CacheFixture } from '../cache/cache-fixture.ts';
import { FakeUpstream, sha256 } from './fake-upstream.ts';
import { setUpstreamTimeout, stallBodies } from './stalling-upstream.ts';

const TTL = 60_000;
const SUBJECT = sha256('subject');

let fx: CacheFixture;
let upstream: FakeUpstream;
let lists: ListProxy;

/** The upstream lists `tags` for every tags/list (ignoring n/last, as distribution 2.8 does) and one referrer. */
function serveLists(tags: string[]) {
  upstream.fault((req) => {
    if (req.path.endsWith('/tags/list')) return { status: 200, headers: { 'content-type': 'application/json' }, body: Buffer.from(JSON.stringify({ name: 'app', tags })) };
    if (req.path.includes('/referrers/')) return { status: 200, headers: { 'content-type': 'application/vnd.oci.image.index.v1+json' }, body: Buffer.from(JSON.stringify({ schemaVersion: 2, manifests: [] })) };
    return undefined;
  });
}

beforeEach(async () => {
  fx = await openCacheFixture();
  upstream = new FakeUpstream('up', { tagTTL: `${TTL}ms` });
  lists = new ListProxy({ metadata: fx.metadata, now: fx.now });
});
afterEach(async () => {
  await fx.close();
});

describe('ListProxy.tags', () => {
  it('asks the upstream every time it answers, and serves the last list STALE while it is down', async () => {
    serveLists(['a', 'b']);
    expect((await lists.tags(upstream.route('app'), {})).cache).toBe('MISS');
    expect((await lists.tags(upstream.route('app'), {})).cache).toBe('MISS');
    expect(upstream.requests).toHaveLength(2);
    upstream.fault(() => 'down');
    const stale = await lists.tags(upstream.route('app'), {});
    expect(stale.cache).toBe('STALE');
    expect(JSON.parse(stale.body.toString())).toEqual({ name: 'app', tags: ['a', 'b'] });
  });

  it('applies n and last itself when the upstream ignores them, with a Link to the next page', async () => {
    serveLists(['d', 'a', 'c', 'b']);
    const page = await lists.tags(upstream.route('app'), { n: '2', last: 'a' });
    expect(JSON.parse(page.body.toString()).tags).toEqual(['b', 'c']);
    expect(page.link).toBe('</v2/app/tags/list?last=c&n=2>; rel="next"');
  });

  it('refuses a bad n or last before asking the upstream', async () => {
    const codes = [];
    for (const query of [{ n: '-1' }, { n: 'x' }, { last: '-bad' }]) {
      const err = await lists.tags(upstream.route('app'), query).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(RegistryError);
      codes.push((err as RegistryError).code);
    }
    expect(codes).toEqual(['PAGINATION_NUMBER_INVALID', 'PAGINATION_NUMBER_INVALID', 'TAG_INVALID']);
    expect(upstream.requests).toEqual([]);
  });
});

describe('ListProxy.referrers', () => {
  it('serves a referrers list from the cache within tagTTL and asks again once it has passed', async () => {
    serveLists([]);
    expect((await lists.referrers(upstream.route('app'), SUBJECT, undefined)).cache).toBe('MISS');
    fx.advance(TTL - 1);
    expect((await lists.referrers(upstream.route('app'), SUBJECT, undefined)).cache).toBe('HIT');
    expect(upstream.requests).toHaveLength(1);
    fx.advance(1);
    expect((await lists.referrers(upstream.route('app'), SUBJECT, undefined)).cache).toBe('MISS');
    expect(upstream.requests).toHaveLength(2);
  });

  it('serves an expired referrers list STALE while the upstream is down', async () => {
    serveLists([]);
    await lists.referrers(upstream.route('app'), SUBJECT, undefined);
    fx.advance(TTL);
    upstream.fault(() => 'down');
    expect((await lists.referrers(upstream.route('app'), SUBJECT, undefined)).cache).toBe('STALE');
  });
});

// Each of these would wait forever without the upstream's timeout as a bound; 5 s ends them instead.
describe('ListProxy when the upstream stalls', { timeout: 5_000 }, () => {
  beforeEach(() => setUpstreamTimeout(upstream, 100));

  it('answers UNAVAILABLE within the timeout when a tag list body stalls and nothing is cached', async () => {
    serveLists(['a']);
    stallBodies(upstream, () => true);
    const err = (await lists.tags(upstream.route('app'), {}).catch((e: unknown) => e)) as RegistryError;
    expect(err).toBeInstanceOf(RegistryError);
    expect(err.code).toBe('UNAVAILABLE');
    expect(err.message).toContain('timed out');
  });

  it('serves the last tag list STALE when the next one stalls', async () => {
    serveLists(['a', 'b']);
    await lists.tags(upstream.route('app'), {});
    stallBodies(upstream, () => true);
    const stale = await lists.tags(upstream.route('app'), {});
    expect(stale.cache).toBe('STALE');
    expect(JSON.parse(stale.body.toString())).toEqual({ name: 'app', tags: ['a', 'b'] });
  });

  it('serves an expired referrers list STALE when the upstream does not answer within the timeout', async () => {
    serveLists([]);
    await lists.referrers(upstream.route('app'), SUBJECT, undefined);
    fx.advance(TTL);
    const open = upstream.hold();
    try {
      expect((await lists.referrers(upstream.route('app'), SUBJECT, undefined)).cache).toBe('STALE');
    } finally {
      open();
    }
  });
});
