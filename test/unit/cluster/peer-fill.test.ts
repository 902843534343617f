/**
 * @module test/unit/cluster/peer-fill
 * Where a fill reads a missing blob from: nowhere new when this replica owns it (the caller opens
 * the upstream), the owner's blob endpoint with the cluster secret when another member up owns it,
 * and nowhere new again when the owner refuses, fails or does not answer in time.
 */
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { PeerFill, type PeerFillResult, type PeerGet } from '../../../src/cluster/peer-fill.ts';
import { PeerAuth } from '../../../src/cluster/peer-auth.ts';
import { owner } from '../../../src/cluster/rendezvous.ts';
import { parseDigest, type Digest } from '../../../src/registry/digest.ts';
import type { Route } from '../../../src/proxy/router.ts';
import { silentLogger } from '../../../src/util/logger.ts';

const SELF = 'http://10.0.0.1:5000';
const OTHER = 'http://10.0.0.2:5000';
const UP = [SELF, OTHER];
const SECRET = 'peer-fill-secret-0123456789abcdef-0123';
const route = { upstream: { name: 'hub', config: { timeout: 200 } }, repo: 'library/alpine' } as unknown as Route;

/** A digest whose owner among UP is `who`. */
function digestOwnedBy(who: string): Digest {
  for (let i = 0; i < 1000; i++) {
    const d = `sha256:${createHash('sha256').update(String(i)).digest('hex')}`;
    if (owner(d, UP) === who) return parseDigest(d);
  }
  throw new Error('no digest found');
}

function setup(get: PeerGet, up: string[] = UP) {
  const results: PeerFillResult[] = [];
  const calls: Array<{ url: string; headers: Record<string, string> }> = [];
  const fill = new PeerFill({
    membership: { self: SELF, up: () => up },
    auth: new PeerAuth(SECRET),
    log: silentLogger,
    get: (url, init) => {
      calls.push({ url, headers: init.headers });
      return get(url, init);
    },
    onResult: (r) => results.push(r),
  });
  return { fill, results, calls };
}

const never: PeerGet = () => Promise.reject(new Error('must not be called'));
const answer = (status: number, body = 'bytes'): PeerGet => async () => ({ status, headers: { 'content-length': String(body.length), 'content-type': 'application/octet-stream' }, body: Readable.from([Buffer.from(body)]) });

describe('peer fill: choosing the source of a missing blob', () => {
  it('leaves a blob this replica owns to the upstream, asking no peer', async () => {
    const { fill, calls, results } = setup(never);
    expect(await fill.source(route, digestOwnedBy(SELF), new AbortController().signal)).toBeUndefined();
    expect(calls).toEqual([]);
    expect(results).toEqual([]);
  });

  it('leaves every blob to the upstream when no other member is up', async () => {
    const { fill, calls } = setup(never, [SELF]);
    expect(await fill.source(route, digestOwnedBy(OTHER), new AbortController().signal)).toBeUndefined();
    expect(calls).toEqual([]);
  });

  it('reads a blob another member owns from that member, with the cluster secret, upstream and repo', async () => {
    const { fill, calls, results } = setup(answer(200, 'layer-bytes'));
    const digest = digestOwnedBy(OTHER);
    const source = await fill.source(route, digest, new AbortController().signal);
    expect(source).toMatchObject({ size: 11, mediaType: 'application/octet-stream' });
    const chunks: Buffer[] = [];
    for await (const c of source!.body) chunks.push(c as Buffer);
    expect(Buffer.concat(chunks).toString()).toBe('layer-bytes');
    expect(calls).toEqual([{ url: `${OTHER}/cluster/v1/blobs/${digest.value}?upstream=hub&repo=library%2Falpine`, headers: { authorization: `Bearer ${SECRET}` } }]);
    expect(results).toEqual(['peer']);
  });

  it('falls back to the upstream when the owner cannot be reached', async () => {
    const refused = Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' });
    const { fill, results } = setup(() => Promise.reject(refused));
    expect(await fill.source(route, digestOwnedBy(OTHER), new AbortController().signal)).toBeUndefined();
    expect(results).toEqual(['fallback']);
  });

  it('falls back to the upstream when the owner answers an error', async () => {
    const { fill, results } = setup(answer(503, '{"errors":[]}'));
    expect(await fill.source(route, digestOwnedBy(OTHER), new AbortController().signal)).toBeUndefined();
    expect(results).toEqual(['fallback']);
  });

  it('falls back to the upstream when the owner does not answer within half the upstream timeout', async () => {
    const hanging: PeerGet = (_url, init) => new Promise((_resolve, reject) => init.signal.addEventListener('abort', () => reject(init.signal.reason)));
    const { fill, results } = setup(hanging);
    expect(await fill.source(route, digestOwnedBy(OTHER), new AbortController().signal)).toBeUndefined();
    expect(results).toEqual(['fallback']);
  });

  it('gives up with the fill when the fill itself is aborted, without falling back', async () => {
    const hanging: PeerGet = (_url, init) => new Promise((_resolve, reject) => init.signal.addEventListener('abort', () => reject(init.signal.reason)));
    const { fill, results } = setup(hanging);
    const fillSignal = new AbortController();
    const pending = fill.source(route, digestOwnedBy(OTHER), fillSignal.signal);
    fillSignal.abort(new Error('fill cancelled'));
    await expect(pending).rejects.toThrow('fill cancelled');
    expect(results).toEqual([]);
  });
});
