/**
 * @module http/cluster-routes
 * The internal API replicas call on each other, under /cluster/v1 (never under /v2/, so no
 * registry path reaches it). It has its own credential, the cluster's shared secret, and ignores
 * client auth: peers are not accounts. GET /health answers who this replica is, its version and
 * the members it sees; 503 while it is not ready (draining, storage unusable), so peers count it
 * out before its listener closes.
 */
import { Hono } from 'hono';
import type { HttpBindings } from '@hono/node-server';
import { RegistryError } from '../registry/errors.ts';
import { HEALTH_PATH, type Cluster, type HealthAnswer } from '../cluster/index.ts';
import { requestInfo } from './request-info.ts';

/** Where {@link createClusterRoutes} is mounted; the health path lies under it. */
export const CLUSTER_PREFIX = '/cluster/v1';

export function createClusterRoutes(cluster: Cluster, ready: () => Promise<string | undefined>): Hono<{ Bindings: HttpBindings }> {
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
  return routes;
}
