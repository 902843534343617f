/**
 * @module console/page-context
 * The contract between the console's shell (app, auth, layout, jobs, access) and its browse
 * pages: who is asking, what a page handler may read, and the hono env that carries both.
 */
import type { Context } from 'hono';
import type { Storage } from '../cache/storage.ts';
import type { Router } from '../proxy/router.ts';
import type { UpstreamPool } from '../upstream/index.ts';
import type { Background } from '../jobs/background.ts';
import type { Config } from '../config/schema.ts';
import type { Metrics } from '../metrics/metrics.ts';
import type { TimeSeries } from '../metrics/time-series.ts';
import type { AdminService } from '../http/admin-routes.ts';

/** Who is signed in; `name` is 'admin-token' for the bootstrap admin.token. */
export interface ConsoleIdentity {
  name: string;
  /** May act (prefetch, pin, delete, gc, tokens); viewers only read. */
  admin: boolean;
}

/** What every page renders with; `canAct` is `identity.admin`. */
export interface PageContext {
  identity: ConsoleIdentity;
  /** The session's CSRF token, carried by every form as the hidden field `csrf`. */
  csrf: string;
  /** The request path, for the navigation's current page. */
  path: string;
  /** The outcome of the action that redirected here (shown once, by the layout). */
  flash?: string | undefined;
  /**
   * Whether this identity may pull `repo` of the registry clients call `registry` (a name of an
   * upstream's `registries`, or a hosted registry's name), as /v2/ would decide it: browse pages
   * show only such repositories. Always true for admins.
   */
  canPull: (registry: string, repo: string) => boolean;
}

/**
 * The console's hono env: the auth middleware sets `ctx` before any page handler runs. The console
 * app is mounted at /console, so its routes are registered relative to it (`app.get('/images', …)`
 * answers /console/images), while links in pages use full paths (`href="/console/images"`).
 */
export interface ConsoleEnv {
  Variables: { ctx: PageContext };
}

/** What console pages read; functions where a config reload replaces the value. */
export interface ConsoleDeps {
  storage: Storage;
  router: () => Router;
  upstreams: () => UpstreamPool;
  background: Background;
  config: () => Config;
  metrics: Metrics | undefined;
  /** The recorded history for charts; undefined where the mirror keeps none. */
  series: TimeSeries | undefined;
  admin: AdminService;
  /** The host:port clients use to pull through this mirror, from the request's Host header. */
  publicHost: (c: Context) => string;
}
