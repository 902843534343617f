/**
 * @module http/app
 * The HTTP surface: /v2/ (registry pull API), /healthz (process alive), /readyz (storage and
 * database usable, 503 while draining so load balancers stop routing before the listener closes;
 * it also tells how the last config reload went),
 * and with client `auth` configured /auth/token and an authorisation check before /v2/ and /admin/;
 * with `cluster` configured, /cluster/v1/ (the internal API replicas call, behind the cluster secret),
 * and the web console under /console/ wherever the admin API takes credentials (console/).
 * This directory and console/ are the only places that import hono.
 */
import { Hono } from 'hono';
import type { HttpBindings } from '@hono/node-server';
import { RegistryError } from '../registry/errors.ts';
import type { Logger } from '../util/logger.ts';
import type { Metrics } from '../metrics/metrics.ts';
import { createAdminRoutes, type AdminService } from './admin-routes.ts';
import { createErrorRenderer } from './render-error.ts';
import { createV2Handler, type V2Deps } from './v2-routes.ts';
import { authorizeAdmin, authorizeV2 } from './auth-middleware.ts';
import { createTokenRoute } from './token-route.ts';
import type { RobotTokens } from '../auth/robot-tokens.ts';
import type { Cluster } from '../cluster/index.ts';
import { CLUSTER_PREFIX, createClusterRoutes } from './cluster-routes.ts';
import type { AccessWalk } from '../cluster/peer-access.ts';
import type { ConsoleApp } from '../console/console-app.tsx';

export interface Readiness {
  /** Undefined when ready, else the reason. */
  check(): Promise<string | undefined>;
  /** What works only in part while ready (e.g. 'disk full'): reported, but the node stays in rotation. */
  degraded?(): string[];
  /** More to say while ready (the last config reload's outcome), merged into the answer. */
  detail?(): Record<string, unknown> | undefined;
}

export interface AppDeps extends V2Deps {
  log: Logger;
  /** Walks this replica's blobs with their last access, for the cluster's bucket eviction (/cluster/v1/access). */
  blobAccess?: AccessWalk | undefined;
  readiness: Readiness;
  admin?: { service: AdminService; token: string | undefined; robots?: RobotTokens | undefined };
  metrics?: Metrics;
  /** With `cluster:` configured: the internal API peers call, behind the cluster secret. */
  cluster?: Cluster | undefined;
  /** The web console (console.enabled); served only where the admin API takes credentials. */
  console?: ConsoleApp | undefined;
}

export function createApp(deps: AppDeps): Hono<{ Bindings: HttpBindings }> {
  const app = new Hono<{ Bindings: HttpBindings }>();
  const renderError = createErrorRenderer(deps.log);
  app.onError(renderError);
  app.notFound((c) => renderError(new RegistryError('NOT_FOUND', { message: 'no such endpoint' }), c));

  // Registered first, so it runs before any route: dispatched on the raw request target, since
  // hono routes on the normalised URL and WHATWG URL parsing resolves `..` and `%2e%2e` — which
  // would turn `/v2/x/../../etc` into `/etc` (or `/v2/../admin/v1/usage` into the admin API)
  // instead of the NAME_INVALID a client deserves.
  const v2 = createV2Handler(deps);
  app.use('*', async (c, next) => {
    try {
      await next();
    } catch (err) {
      // hono hands only Error instances to onError; anything else thrown still gets the envelope.
      throw err instanceof Error ? err : new Error(String(err));
    }
  });
  app.use('*', async (c, next) => {
    const raw = c.env?.incoming?.url ?? new URL(c.req.url).pathname;
    if (raw === '/v2' || raw.startsWith('/v2/') || raw.startsWith('/v2?')) {
      if (deps.auth) await authorizeV2(deps.auth, c.env.incoming);
      return v2(c);
    }
    await next();
  });

  app.get('/healthz', (c) => c.json({ status: 'ok' }));
  if (deps.metrics) {
    const metrics = deps.metrics;
    app.get('/metrics', async (c) => {
      const { contentType, body } = await metrics.render();
      return c.body(body, 200, { 'Content-Type': contentType });
    });
  }
  const auth = deps.auth;
  if (auth) app.route('/auth/token', createTokenRoute(auth));
  if (deps.admin) {
    const authorize = auth ? (c: { env: HttpBindings }) => authorizeAdmin(auth, c.env.incoming) : undefined;
    app.route('/admin/v1', createAdminRoutes(deps.admin.service, { token: deps.admin.token, authorize, robots: deps.admin.robots }));
    // The console signs in with the admin API's credentials: with neither admin.token nor client
    // auth nobody could, so it is not served at all. It routes, renders errors and 404s on its own.
    const consoleApp = deps.console;
    if (consoleApp && (deps.admin.token !== undefined || auth)) app.all('/console/*', (c) => consoleApp.fetch(c.req.raw, c.env));
  }
  // Before client auth by construction: peers authenticate with the cluster secret, not as accounts.
  if (deps.cluster) app.route(CLUSTER_PREFIX, createClusterRoutes(deps.cluster, () => deps.readiness.check(), deps, deps.blobAccess));
  app.get('/readyz', async (c) => {
    const reason = await deps.readiness.check();
    if (reason !== undefined) return c.json({ status: 'not ready', reason }, 503);
    const degraded = deps.readiness.degraded?.() ?? [];
    return c.json({ status: 'ready', ...(degraded.length > 0 ? { degraded } : {}), ...deps.readiness.detail?.() });
  });
  return app;
}
