/**
 * @module http/cluster-routes
 * The internal API replicas call on each other, under /cluster/v1 (never under /v2/, so no
 * registry path reaches it). It has its own credential, the cluster's shared secret, and ignores
 * client auth: peers are not accounts. GET /health answers who this replica is, its version and
 * the members it sees; 503 while it is not ready (draining, storage unusable), so peers count it
 * out before its listener closes. GET /blobs/<digest>?upstream=&repo= serves a blob this replica
 * owns to a peer as a client GET would (cache, or its own single fill from the upstream, never
 * from another peer). GET /manifests/<tag-or-digest>?upstream=&repo= answers as a client GET with
 * the full Accept list would, from the cache within the TTL or resolved upstream by this replica
 * itself, never through another peer. GET /access answers when this replica last read each of its
 * blobs, `{ "blobs": [[digest, lastAccessMs], ...] }`, for eviction from the shared bucket.
 */
import { Hono } from 'hono';
import type { HttpBindings } from '@hono/node-server';
import { RegistryError } from '../registry/errors.ts';
import { HEALTH_PATH, type Cluster, type HealthAnswer } from '../cluster/index.ts';
import { RESPONSE_ALREADY_SENT } from '@hono/node-server/utils/response';
import { parseDigest } from '../registry/digest.ts';
import { PEER_BLOBS_PATH } from '../cluster/peer-fill.ts';
import { PEER_MANIFESTS_PATH } from '../cluster/peer-tags.ts';
import { PEER_ACCESS_PATH, accessBody, type AccessWalk } from '../cluster/peer-access.ts';
import { ALL_MANIFEST_TYPES } from '../registry/media-types.ts';
import { parseReference } from '../registry/reference.ts';
import type { BlobProxy } from '../proxy/blob-proxy.ts';
import type { ManifestProxy } from '../proxy/manifest-proxy.ts';
import type { Router } from '../proxy/router.ts';
import type { BlobWriter } from './body/blob-writer.ts';
import { sendBlob, sendManifest } from './registry-responses.ts';
import { requestInfo } from './request-info.ts';

/** What the blob endpoint serves with: the same parts as a client's blob GET. */
export interface ClusterBlobDeps {
  router: Router;
  blobs: BlobProxy;
  blobWriter: BlobWriter;
  /** Serves the manifest endpoint; without it only blobs are served to peers. */
  manifests?: ManifestProxy;
}

/** Where {@link createClusterRoutes} is mounted; the health path lies under it. */
export const CLUSTER_PREFIX = '/cluster/v1';

/**
 * `access`: walks this replica's blobs with their last access (Metadata.eachBlobLastAccess); the
 * access endpoint exists only with it.
 */
export function createClusterRoutes(
  cluster: Cluster,
  ready: () => Promise<string | undefined>,
  blobDeps?: ClusterBlobDeps,
  access?: AccessWalk,
): Hono<{ Bindings: HttpBindings }> {
  const routes = new Hono<{ Bindings: HttpBindings }>();
  routes.use('*', async (c, next) => {
    if (c.env?.incoming) requestInfo(c.env.incoming).route = 'cluster';
    if (!cluster.auth.verify(c.req.header('authorization'))) {
      throw new RegistryError('UNAUTHORIZED', {
        message: 'cluster API: the cluster secret is required',
        headers: { 'WWW-Authenticate': 'Bearer realm="ocimirror-cluster"' },
      });
    }
    await next();
  });
  routes.get(HEALTH_PATH.slice(CLUSTER_PREFIX.length), async (c) => {
    const reason = await ready();
    if (reason !== undefined) throw new RegistryError('UNAVAILABLE', { message: `this replica is not ready: ${reason}` });
    const { membership, version } = cluster;
    const answer: HealthAnswer = { self: membership.self, version, members: membership.members().map((m) => ({ url: m.url, state: m.state })) };
    return c.json(answer);
  });
  if (access) {
    routes.get(PEER_ACCESS_PATH.slice(CLUSTER_PREFIX.length), (c) => c.body(accessBody(access), 200, { 'Content-Type': 'application/json' }));
  }
  if (blobDeps) {
    routes.get(`${PEER_BLOBS_PATH.slice(CLUSTER_PREFIX.length)}/:digest`, async (c) => {
      const upstream = c.req.query('upstream');
      const repo = c.req.query('repo');
      if (!upstream || !repo) throw new RegistryError('NAME_UNKNOWN', { message: 'cluster blob: the upstream and repo parameters are required' });
      const route = blobDeps.router.route(upstream, repo);
      const digest = parseDigest(c.req.param('digest'));
      const result = await blobDeps.blobs.get(route, digest, { method: 'GET', range: undefined, fromPeer: true });
      sendBlob(c.env.incoming, c.env.outgoing, blobDeps.blobWriter, result);
      return RESPONSE_ALREADY_SENT;
    });
    const manifests = blobDeps.manifests;
    if (manifests) {
      routes.get(`${PEER_MANIFESTS_PATH.slice(CLUSTER_PREFIX.length)}/:reference`, async (c) => {
        const upstream = c.req.query('upstream');
        const repo = c.req.query('repo');
        if (!upstream || !repo) throw new RegistryError('NAME_UNKNOWN', { message: 'cluster manifest: the upstream and repo parameters are required' });
        const route = blobDeps.router.route(upstream, repo);
        const result = await manifests.get(route, parseReference(c.req.param('reference')), ALL_MANIFEST_TYPES, { fromPeer: true });
        sendManifest(c.env.incoming, c.env.outgoing, result);
        return RESPONSE_ALREADY_SENT;
      });
    }
  }
  return routes;
}
