/**
 * @module test/unit/cluster/peer-access
 * Blob access times across the cluster: GET /cluster/v1/access answers this replica's
 * `blobs.last_access` for every blob (pending hits included) behind the cluster secret, and
 * gatherAccess merges every other member's answer with the local view, keeping the latest time per
 * digest, skipping (not failing on) a member that refuses, cannot be reached or answers nonsense.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { Hono } from 'hono';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Metadata } from '../../../src/cache/metadata/metadata.ts';
import { createCluster } from '../../../src/cluster/index.ts';
import { accessBody, gatherAccess, PEER_ACCESS_PATH, type AccessWalk } from '../../../src/cluster/peer-access.ts';
import { PeerRequest, type PeerGet } from '../../../src/cluster/peer-request.ts';
import { parseConfig } from '../../../src/config/load.ts';
import { CLUSTER_PREFIX, createClusterRoutes } from '../../../src/http/cluster-routes.ts';
import { createErrorRenderer } from '../../../src/http/render-error.ts';
import { silentLogger, type Logger } from '../../../src/util/logger.ts';

const SECRET = 'cluster-secret-0123456789abcdef-0123';
const SELF = 'http://10.0.0.11:5000';
const PEER_B = 'http://10.0.0.12:5000';
const PEER_C = 'http://10.0.0.13:5000';
const PEER_D = 'http://10.0.0.14:5000';
const T0 = 1_700_000_000_000;
const digest = (c: string) => `sha256:${c.repeat(64)}`;

describe('GET /cluster/v1/access', () => {
  let dir: string;
  let now = T0;
  let metadata: Metadata;

  beforeEach(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'ocimirror-access-'));
    now = T0;
    metadata = new Metadata(path.join(dir, 'metadata.db'), { flushIntervalMs: 3_600_000, now: () => now });
  });
  afterEach(async () => {
    metadata.close();
    await rm(dir, { recursive: true, force: true });
  });

  function app() {
    const config = parseConfig({ cluster: { self: SELF, peers: [SELF, PEER_B], secret: SECRET } }, { env: {} });
    const hono = new Hono();
    hono.onError(createErrorRenderer(silentLogger));
    hono.route(CLUSTER_PREFIX, createClusterRoutes(createCluster(config.cluster!, silentLogger), async () => undefined, undefined, (fn) => metadata.eachBlobLastAccess(fn)));
    return hono;
  }

  it('answers the last access of every blob, hits not yet flushed included, to a peer with the secret', async () => {
    metadata.putBlob({ digest: digest('a'), size: 10, mediaType: null });
    now += 1000;
    metadata.putBlob({ digest: digest('b'), size: 20, mediaType: null });
    now += 5000;
    metadata.recordBlobHit(digest('a'));
    const res = await app().request(PEER_ACCESS_PATH, { headers: { authorization: `Bearer ${SECRET}` } });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^application\/json/);
    const body = (await res.json()) as { blobs: Array<[string, number]> };
    expect(new Map(body.blobs)).toEqual(new Map([[digest('a'), T0 + 6000], [digest('b'), T0 + 1000]]));
  });

  it('answers an empty list for an empty cache', async () => {
    const res = await app().request(PEER_ACCESS_PATH, { headers: { authorization: `Bearer ${SECRET}` } });
    expect(await res.json()).toEqual({ blobs: [] });
  });

  it('answers 401 without the secret', async () => {
    const res = await app().request(PEER_ACCESS_PATH);
    expect(res.status).toBe(401);
  });
});

/** A walk over a fixed table, as Metadata.eachBlobLastAccess gives one. */
const walkOf =
  (rows: Record<string, number>): AccessWalk =>
  (fn) => {
    for (const [d, at] of Object.entries(rows)) fn(d, at);
  };

function recordingLog() {
  const warnings: Array<{ member?: string; err?: string }> = [];
  const log = { ...silentLogger, warn: (obj: object) => warnings.push(obj as { member?: string }), debug: () => {}, child: () => log } as unknown as Logger;
  return { log, warnings };
}

describe('gatherAccess', () => {
  it('keeps the latest access per digest over this replica and every member that answers, and skips the others', async () => {
    const asked: Array<{ url: string; authorization: string | undefined }> = [];
    const answers: Record<string, () => { status: number; body: string }> = {
      [PEER_B]: () => ({ status: 200, body: accessBody(walkOf({ [digest('a')]: T0 + 50, [digest('c')]: T0 + 7 })) }),
      [PEER_C]: () => ({ status: 401, body: '{"errors":[]}' }),
      [PEER_D]: () => ({ status: 200, body: '{"blobs":[["' + digest('b') + '", 99999999999999], ["bad"], 42, [1, 2]' }), // cut short: not JSON
    };
    const get: PeerGet = async (url, init) => {
      asked.push({ url, authorization: init.headers.authorization });
      const member = url.slice(0, -PEER_ACCESS_PATH.length);
      const answer = answers[member];
      if (!answer) throw Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' });
      const { status, body } = answer();
      return { status, headers: {}, body: Readable.from([Buffer.from(body)]) };
    };
    const up = [SELF, PEER_B, PEER_C, PEER_D, 'http://10.0.0.15:5000'].sort();
    const membership = { self: SELF, up: () => up };
    const requests = new PeerRequest({ membership, auth: { headers: () => ({ authorization: `Bearer ${SECRET}` }) }, get });
    const { log, warnings } = recordingLog();
    const merged = await gatherAccess({ membership, requests, local: walkOf({ [digest('a')]: T0 + 10, [digest('b')]: T0 + 20 }), log });
    expect(merged).toEqual(new Map([[digest('a'), T0 + 50], [digest('b'), T0 + 20], [digest('c'), T0 + 7]]));
    expect(asked.map((a) => a.url).sort()).toEqual([PEER_B, PEER_C, PEER_D, 'http://10.0.0.15:5000'].map((m) => `${m}${PEER_ACCESS_PATH}`));
    expect(asked.every((a) => a.authorization === `Bearer ${SECRET}`)).toBe(true);
    expect(warnings.map((w) => w.member).sort()).toEqual([PEER_C, PEER_D, 'http://10.0.0.15:5000']);
  });

  it('drops entries of the wrong shape from an answer and keeps the rest', async () => {
    const body = JSON.stringify({ blobs: [[digest('a'), T0 + 5], ['x'], 42, [digest('b'), 'late'], [digest('c'), null], [digest('d'), T0 + 9]] });
    const get: PeerGet = async () => ({ status: 200, headers: {}, body: Readable.from([Buffer.from(body)]) });
    const membership = { self: SELF, up: () => [SELF, PEER_B] };
    const requests = new PeerRequest({ membership, auth: { headers: () => ({}) }, get });
    const merged = await gatherAccess({ membership, requests, local: walkOf({}), log: silentLogger });
    expect(merged).toEqual(new Map([[digest('a'), T0 + 5], [digest('d'), T0 + 9]]));
  });

  it('skips an answer larger than the limit', async () => {
    const get: PeerGet = async () => ({ status: 200, headers: {}, body: Readable.from([Buffer.from(accessBody(walkOf({ [digest('a')]: T0 })))]) });
    const membership = { self: SELF, up: () => [SELF, PEER_B] };
    const requests = new PeerRequest({ membership, auth: { headers: () => ({}) }, get });
    const { log, warnings } = recordingLog();
    const merged = await gatherAccess({ membership, requests, local: walkOf({ [digest('b')]: T0 }), log, maxBytes: 20 });
    expect(merged).toEqual(new Map([[digest('b'), T0]]));
    expect(warnings).toHaveLength(1);
  });

  it('asks nobody when this replica is alone', async () => {
    const get: PeerGet = async () => {
      throw new Error('no peer should be asked');
    };
    const membership = { self: SELF, up: () => [SELF] };
    const requests = new PeerRequest({ membership, auth: { headers: () => ({}) }, get });
    expect(await gatherAccess({ membership, requests, local: walkOf({ [digest('a')]: T0 }), log: silentLogger })).toEqual(new Map([[digest('a'), T0]]));
  });
});
