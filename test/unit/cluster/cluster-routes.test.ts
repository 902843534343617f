/**
 * @module test/unit/cluster/cluster-routes
 * GET /cluster/v1/health as peers see it: the secret opens it, anything else is 401 in the OCI
 * envelope, and a replica that is not ready answers 503 so peers count it out.
 */
import { Hono } from 'hono';
import { describe, expect, it } from 'vitest';
import { createCluster } from '../../../src/cluster/index.ts';
import { parseConfig } from '../../../src/config/load.ts';
import { CLUSTER_PREFIX, createClusterRoutes } from '../../../src/http/cluster-routes.ts';
import { createErrorRenderer } from '../../../src/http/render-error.ts';
import { silentLogger } from '../../../src/util/logger.ts';

const SECRET = 'cluster-secret-0123456789abcdef-0123';
const SELF = 'http://10.0.0.11:5000';
const PEER = 'http://10.0.0.12:5000';

function app(reason: string | undefined = undefined) {
  const config = parseConfig({ cluster: { self: SELF, peers: [SELF, PEER], secret: SECRET } }, { env: {} });
  const cluster = createCluster(config.cluster!, silentLogger);
  const hono = new Hono();
  hono.onError(createErrorRenderer(silentLogger));
  hono.route(CLUSTER_PREFIX, createClusterRoutes(cluster, async () => reason));
  return hono;
}

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
