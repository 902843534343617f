/**
 * @module test/unit/cluster/cluster-routes
 * GET /cluster/v1/health as peers see it: the secret opens it, anything else is 401 in the OCI
 * envelope, and a replica that is not ready answers 503 so peers count it out. GET
 * /cluster/v1/blobs/<digest> as an owner serves it: routed by upstream name and repository, asked
 * of the blob proxy as a peer's request (so its fill never goes to another peer), errors in the
 * OCI envelope. GET /cluster/v1/manifests/<tag> likewise: asked of the manifest proxy with the
 * full Accept list as a peer's request (so it never goes on to another peer).
 */
import { Hono } from 'hono';
import { describe, expect, it } from 'vitest';
import { createCluster } from '../../../src/cluster/index.ts';
import { parseConfig } from '../../../src/config/load.ts';
import { CLUSTER_PREFIX, createClusterRoutes } from '../../../src/http/cluster-routes.ts';
import { createErrorRenderer } from '../../../src/http/render-error.ts';
import type { BlobWriter } from '../../../src/http/body/blob-writer.ts';
import type { BlobProxy, BlobRequest } from '../../../src/proxy/blob-proxy.ts';
import type { ManifestProxy, ManifestRequest } from '../../../src/proxy/manifest-proxy.ts';
import type { Reference } from '../../../src/registry/reference.ts';
import { ALL_MANIFEST_TYPES } from '../../../src/registry/media-types.ts';
import type { Route, Router } from '../../../src/proxy/router.ts';
import { RegistryError } from '../../../src/registry/errors.ts';
import { silentLogger } from '../../../src/util/logger.ts';

const SECRET = 'cluster-secret-0123456789abcdef-0123';
const SELF = 'http://10.0.0.11:5000';
const PEER = 'http://10.0.0.12:5000';

const DIGEST = `sha256:${'a'.repeat(64)}`;

/** A blob proxy that records what it was asked and answers BLOB_UNKNOWN (no response body to write). */
function blobDeps() {
  const asked: Array<{ upstream: string; repo: string; digest: string; req: BlobRequest }> = [];
  const router = {
    route: (upstream: string, repo: string) => {
      if (upstream !== 'hub') throw new RegistryError('NAME_UNKNOWN', { message: `upstream '${upstream}' is not configured` });
      return { upstream: { name: upstream }, repo, prefix: undefined, via: 'default' } as unknown as Route;
    },
  } as unknown as Router;
  const blobs = {
    get: async (route: Route, digest: { value: string }, req: BlobRequest) => {
      asked.push({ upstream: route.upstream.name, repo: route.repo, digest: digest.value, req });
      throw new RegistryError('BLOB_UNKNOWN', { message: 'blob unknown upstream' });
    },
  } as unknown as BlobProxy;
  const askedManifests: Array<{ upstream: string; repo: string; ref: Reference; accept: readonly string[]; req: ManifestRequest | undefined }> = [];
  const manifests = {
    get: async (route: Route, ref: Reference, accept: readonly string[], req?: ManifestRequest) => {
      askedManifests.push({ upstream: route.upstream.name, repo: route.repo, ref, accept, req });
      throw new RegistryError('MANIFEST_UNKNOWN', { message: 'manifest unknown upstream' });
    },
  } as unknown as ManifestProxy;
  return { asked, askedManifests, deps: { router, blobs, blobWriter: {} as BlobWriter, manifests } };
}

function app(reason: string | undefined = undefined, blobs?: ReturnType<typeof blobDeps>['deps']) {
  const config = parseConfig({ cluster: { self: SELF, peers: [SELF, PEER], secret: SECRET } }, { env: {} });
  const cluster = createCluster(config.cluster!, silentLogger);
  const hono = new Hono();
  hono.onError(createErrorRenderer(silentLogger));
  hono.route(CLUSTER_PREFIX, createClusterRoutes(cluster, async () => reason, blobs));
  return hono;
}

const errorCode = async (res: Response) => ((await res.json()) as { errors: Array<{ code: string }> }).errors[0]?.code;

describe('GET /cluster/v1/health', () => {
  it('answers who this replica is, its version and the members it sees, to a peer with the secret', async () => {
    const res = await app().request('/cluster/v1/health', { headers: { authorization: `Bearer ${SECRET}` } });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ self: SELF, version: expect.stringMatching(/^\d+\.\d+\.\d+/), members: [{ url: SELF, state: 'up' }] });
  });

  it('answers 401 UNAUTHORIZED without the secret or with another one', async () => {
    for (const headers of [{} as Record<string, string>, { authorization: 'Bearer not-the-cluster-secret-0123456789' }, { authorization: `Basic ${SECRET}` }]) {
      const res = await app().request('/cluster/v1/health', { headers });
      expect(res.status).toBe(401);
      expect(res.headers.get('www-authenticate')).toBe('Bearer realm="ocimirror-cluster"');
      const body = (await res.json()) as { errors: Array<{ code: string; message: string }> };
      expect(body.errors[0]?.code).toBe('UNAUTHORIZED');
      expect(JSON.stringify(body)).not.toContain(SECRET);
    }
  });

  it('answers 503 while the replica is not ready', async () => {
    const res = await app('draining').request('/cluster/v1/health', { headers: { authorization: `Bearer ${SECRET}` } });
    expect(res.status).toBe(503);
    expect(((await res.json()) as { errors: Array<{ message: string }> }).errors[0]?.message).toContain('draining');
  });
});

describe('GET /cluster/v1/blobs/<digest>', () => {
  const auth = { authorization: `Bearer ${SECRET}` };

  it('asks the blob proxy for the blob on the named upstream and repository, as a peer request', async () => {
    const { asked, deps } = blobDeps();
    const res = await app(undefined, deps).request(`/cluster/v1/blobs/${DIGEST}?upstream=hub&repo=library%2Falpine`, { headers: auth });
    expect(res.status).toBe(404);
    expect(await errorCode(res)).toBe('BLOB_UNKNOWN');
    expect(asked).toEqual([{ upstream: 'hub', repo: 'library/alpine', digest: DIGEST, req: { method: 'GET', range: undefined, fromPeer: true } }]);
  });

  it('answers an unknown upstream or a missing parameter in the OCI envelope, asking nothing', async () => {
    const { asked, deps } = blobDeps();
    for (const query of ['upstream=elsewhere&repo=x', 'repo=x', 'upstream=hub']) {
      const res = await app(undefined, deps).request(`/cluster/v1/blobs/${DIGEST}?${query}`, { headers: auth });
      expect(res.status).toBe(404);
      expect(await errorCode(res)).toBe('NAME_UNKNOWN');
    }
    const bad = await app(undefined, deps).request('/cluster/v1/blobs/sha256:nothex?upstream=hub&repo=x', { headers: auth });
    expect(await errorCode(bad)).toBe('DIGEST_INVALID');
    expect(asked).toEqual([]);
  });

  it('answers 401 without the cluster secret, asking nothing', async () => {
    const { asked, deps } = blobDeps();
    const res = await app(undefined, deps).request(`/cluster/v1/blobs/${DIGEST}?upstream=hub&repo=x`);
    expect(res.status).toBe(401);
    expect(asked).toEqual([]);
  });
});

describe('GET /cluster/v1/manifests/<tag>', () => {
  const auth = { authorization: `Bearer ${SECRET}` };

  it('asks the manifest proxy for the tag on the named upstream and repository, with every type accepted, as a peer request', async () => {
    const { askedManifests, deps } = blobDeps();
    const res = await app(undefined, deps).request('/cluster/v1/manifests/3.19?upstream=hub&repo=library%2Falpine', { headers: auth });
    expect(res.status).toBe(404);
    expect(await errorCode(res)).toBe('MANIFEST_UNKNOWN');
    expect(askedManifests).toEqual([{ upstream: 'hub', repo: 'library/alpine', ref: { kind: 'tag', tag: '3.19' }, accept: ALL_MANIFEST_TYPES, req: { fromPeer: true } }]);
  });

  it('answers an unknown upstream, a missing parameter or no secret without asking the manifest proxy', async () => {
    const { askedManifests, deps } = blobDeps();
    for (const query of ['upstream=elsewhere&repo=x', 'repo=x', 'upstream=hub']) {
      const res = await app(undefined, deps).request(`/cluster/v1/manifests/latest?${query}`, { headers: auth });
      expect(await errorCode(res)).toBe('NAME_UNKNOWN');
    }
    expect((await app(undefined, deps).request('/cluster/v1/manifests/latest?upstream=hub&repo=x')).status).toBe(401);
    expect(askedManifests).toEqual([]);
  });
});
