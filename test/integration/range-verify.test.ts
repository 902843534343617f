/**
 * Range requests on a blob whose fill is under way, against the real upstream through the fault
 * proxy. A range answer may start before the blob is verified, but its last byte waits for the
 * verification: when the upstream's bytes turn out wrong, every client of the fill (the whole blob,
 * and ranges at its start, middle and end) ends in an aborted connection, never a clean 200 or 206;
 * when they are right, each range carries exactly its bytes.
 */
import http from 'node:http';
import { readdir } from 'node:fs/promises';
import { expect, it } from 'vitest';
import { describeWithTools } from '../helpers/tools.ts';
import { useMirrorSuite } from '../helpers/mirror-suite.ts';
import { get, sha256 } from '../helpers/pull.ts';
import { waitFor } from '../helpers/wait.ts';

/** How one response ended: 'clean' when the body ended as announced, 'aborted' when the connection broke first. */
interface Outcome {
  status: number;
  end: 'clean' | 'aborted';
  body: Buffer;
}

/** A GET over node:http that resolves however the response ends, so an abort is an outcome, not a throw. */
function fetchOutcome(url: string, headers: Record<string, string> = {}): { headers: Promise<number>; done: Promise<Outcome> } {
  let onHeaders: (status: number) => void = () => {};
  const gotHeaders = new Promise<number>((resolve) => (onHeaders = resolve));
  const done = new Promise<Outcome>((resolve) => {
    const chunks: Buffer[] = [];
    let status = 0;
    let settled = false;
    const settle = (end: Outcome['end']) => {
      if (settled) return;
      settled = true;
      onHeaders(status);
      resolve({ status, end, body: Buffer.concat(chunks) });
    };
    const req = http.get(url, { headers, agent: false }, (res) => {
      status = res.statusCode ?? 0;
      onHeaders(status);
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => settle(res.complete ? 'clean' : 'aborted'));
      res.on('aborted', () => settle('aborted'));
      res.on('error', () => settle('aborted'));
      res.on('close', () => settle(res.complete ? 'clean' : 'aborted'));
    });
    req.on('error', () => settle('aborted'));
  });
  return { headers: gotHeaders, done };
}

describeWithTools(['docker-registry'], 'Range requests on a fill under way', () => {
  const suite = useMirrorSuite();

  /** The whole blob, and ranges at its start, middle and end, as Range header values. */
  function rangesOf(size: number): string[] {
    const mid = Math.floor(size / 2);
    return ['bytes=0-4095', `bytes=${mid}-${mid + 65_535}`, `bytes=${size - 4096}-${size - 1}`, 'bytes=-100'];
  }

  /** A full GET starts the fill; once its headers are in, ranges join the fill in progress. */
  async function clientsOnOneFill(url: string, size: number) {
    const full = fetchOutcome(url);
    expect(await full.headers).toBe(200);
    const ranges = rangesOf(size).map((range) => ({ range, ...fetchOutcome(url, { range }) }));
    return { full: await full.done, ranges: await Promise.all(ranges.map(async (r) => ({ range: r.range, ...(await r.done) }))) };
  }

  it('aborts every client of a fill whose bytes do not match the digest, ranges included, and caches nothing', async () => {
    const blob = suite.upstream.fixtures.image('large').manifest.layers[0]!;
    // ~0.5 s for the 8 MiB layer: every range below is answerable long before the fill can be verified.
    suite.upstream.proxy.corrupt({ pathIncludes: blob.digest }, { bytesPerSecond: 16 << 20 });
    const { full, ranges } = await clientsOnOneFill(`${suite.m.url}/v2/large/blobs/${blob.digest}`, blob.size);

    expect(full.end).toBe('aborted');
    for (const r of ranges) {
      // A range may get its headers (206) and most of its bytes, but never a clean end.
      expect(`${r.range}: ${r.end}`).toBe(`${r.range}: aborted`);
      if (r.status !== 0) expect([206, 502, 503], r.range).toContain(r.status);
    }
    expect(suite.upstream.proxy.count({ method: 'GET', pathIncludes: blob.digest })).toBe(1);
    await waitFor('the fill to end', () => suite.m.mirror.storage.blobs.activeFills === 0, 10_000, 10);
    expect(suite.m.mirror.storage.metadata.getBlob(blob.digest)).toBeUndefined();
    await waitFor('temp files to be removed', async () => (await readdir(suite.m.mirror.storage.paths.tmp)).length === 0, 10_000, 10);
  });

  it('gives every range exactly its bytes from a fill whose bytes are right', async () => {
    const blob = suite.upstream.fixtures.image('large').manifest.layers[0]!;
    const whole = (await get(`${suite.upstream.registry.url}/v2/large/blobs/${blob.digest}`)).body;
    expect(sha256(whole)).toBe(blob.digest);
    suite.upstream.proxy.throttle(16 << 20, { pathIncludes: blob.digest });
    const { full, ranges } = await clientsOnOneFill(`${suite.m.url}/v2/large/blobs/${blob.digest}`, blob.size);

    expect(full.end).toBe('clean');
    expect(sha256(full.body)).toBe(blob.digest);
    for (const r of ranges) {
      const [, first, last] = /^bytes=(\d*)-(\d*)$/.exec(r.range)!;
      const start = first === '' ? blob.size - Number(last) : Number(first);
      const end = first === '' ? blob.size - 1 : Number(last);
      expect([r.range, r.status, r.end]).toEqual([r.range, 206, 'clean']);
      expect(r.body.equals(whole.subarray(start, end + 1)), r.range).toBe(true);
    }
    expect(suite.upstream.proxy.count({ method: 'GET', pathIncludes: blob.digest })).toBe(1);
    await waitFor('the blob to be committed', () => suite.m.mirror.storage.metadata.getBlob(blob.digest));
  });
});
