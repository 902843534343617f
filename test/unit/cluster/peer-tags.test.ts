/**
 * @module test/unit/cluster/peer-tags
 * How a replica asks a tag's owner: the owner is the rendezvous winner for
 * `<upstream>/<repo>:<tag>` among the members up; the request carries the cluster secret, the
 * upstream and the repository; the answer counts only when it is a 200 whose bytes hash to the
 * sha256 digest announced, or a 404; anything else, or no answer within half the upstream's
 * timeout, is a fallback to the upstream.
 */
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { PeerTags, tagKey } from '../../../src/cluster/peer-tags.ts';
import { PeerRequest, type PeerGet, type PeerResult } from '../../../src/cluster/peer-request.ts';
import { PeerAuth } from '../../../src/cluster/peer-auth.ts';
import { owner } from '../../../src/cluster/rendezvous.ts';
import type { Route } from '../../../src/proxy/router.ts';
import { silentLogger } from '../../../src/util/logger.ts';

const SELF = 'http://10.0.0.1:5000';
const OTHER = 'http://10.0.0.2:5000';
const UP = [SELF, OTHER];
const SECRET = 'peer-tags-secret-0123456789abcdef-0123';
const route = { upstream: { name: 'hub', config: { timeout: 200 } }, repo: 'library/alpine' } as unknown as Route;
const BYTES = Buffer.from('{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}');
const DIGEST = `sha256:${createHash('sha256').update(BYTES).digest('hex')}`;

function tagOwnedBy(who: string): string {
  for (let i = 0; i < 1000; i++) if (owner(tagKey('hub', 'library/alpine', `t${i}`), UP) === who) return `t${i}`;
  throw new Error('no tag found');
}

function setup(get: PeerGet, up: string[] = UP) {
  const results: PeerResult[] = [];
  const calls: Array<{ url: string; headers: Record<string, string> }> = [];
  const requests = new PeerRequest({
    membership: { self: SELF, up: () => up },
    auth: new PeerAuth(SECRET),
    get: (url, init) => {
      calls.push({ url, headers: init.headers });
      return get(url, init);
    },
  });
  const tags = new PeerTags({ membership: { self: SELF, up: () => up }, auth: new PeerAuth(SECRET), requests, log: silentLogger, onResult: (r) => results.push(r) });
  return { tags, results, calls };
}

const never: PeerGet = () => Promise.reject(new Error('must not be called'));
const answer = (status: number, headers: Record<string, string>, body = BYTES): PeerGet => async () => ({ status, headers, body: Readable.from([body]) });
const good = { 'docker-content-digest': DIGEST, 'content-type': 'application/vnd.oci.image.index.v1+json' };

describe('peer tags: asking a tag of its owner', () => {
  it('keys a tag by upstream, repository and tag', () => {
    expect(tagKey('hub', 'library/alpine', '3.19')).toBe('hub/library/alpine:3.19');
  });

  it('asks nobody for a tag this replica owns, or when no other member is up', async () => {
    expect(await setup(never).tags.resolve(route, tagOwnedBy(SELF))).toBeUndefined();
    const alone = setup(never, [SELF]);
    expect(await alone.tags.resolve(route, tagOwnedBy(OTHER))).toBeUndefined();
    expect(alone.calls).toEqual([]);
  });

  it("asks the owner's manifest endpoint with the cluster secret, upstream and repo, and returns the verified manifest", async () => {
    const { tags, calls, results } = setup(answer(200, good));
    const t = tagOwnedBy(OTHER);
    const got = await tags.resolve(route, t);
    expect(got).toEqual({ digest: DIGEST, mediaType: 'application/vnd.oci.image.index.v1+json', bytes: BYTES });
    expect(calls).toEqual([{ url: `${OTHER}/cluster/v1/manifests/${t}?upstream=hub&repo=library%2Falpine`, headers: { authorization: `Bearer ${SECRET}` } }]);
    expect(results).toEqual(['peer']);
  });

  it("relays the owner's 404 as an unknown tag", async () => {
    const { tags, results } = setup(answer(404, {}, Buffer.from('{"errors":[]}')));
    expect(await tags.resolve(route, tagOwnedBy(OTHER))).toBe('unknown');
    expect(results).toEqual(['peer']);
  });

  it.each([
    ['bytes whose sha256 differs from the digest announced', answer(200, { ...good, 'docker-content-digest': `sha256:${'0'.repeat(64)}` })],
    ['no digest', answer(200, { 'content-type': good['content-type'] })],
    ['an error status', answer(502, {})],
  ] as Array<[string, PeerGet]>)('falls back when the owner sends %s', async (_what, get) => {
    const { tags, results } = setup(get);
    expect(await tags.resolve(route, tagOwnedBy(OTHER))).toBeUndefined();
    expect(results).toEqual(['fallback']);
  });

  it('falls back when the owner does not answer within half the upstream timeout', async () => {
    const hanging: PeerGet = (_url, init) => new Promise((_resolve, reject) => init.signal.addEventListener('abort', () => reject(init.signal.reason)));
    const { tags, results } = setup(hanging);
    expect(await tags.resolve(route, tagOwnedBy(OTHER))).toBeUndefined();
    expect(results).toEqual(['fallback']);
  });

  it('falls back when the body stalls past the deadline after the headers', async () => {
    const stalled: PeerGet = async (_url, init) => {
      const body = new Readable({ read() {} });
      body.push(BYTES.subarray(0, 10));
      init.signal.addEventListener('abort', () => body.destroy(init.signal.reason as Error));
      return { status: 200, headers: good, body };
    };
    const { tags, results } = setup(stalled);
    expect(await tags.resolve(route, tagOwnedBy(OTHER))).toBeUndefined();
    expect(results).toEqual(['fallback']);
  });
});
