/**
 * @module http/auth-middleware
 * Client authentication on /v2/ and /admin/ when `auth` is configured: who is asking
 * (auth/authenticator) and whether the repository rules let them. Repositories are judged by the
 * name clients see through the mirror, registry first (`docker.io/library/alpine`), whatever
 * route (path prefix, `ns`, Host) picked the upstream. A request without credentials where they
 * are needed gets 401 with the Docker token challenge; valid credentials without the right get
 * 403 DENIED, before any handler runs, so nothing changes. With mutual TLS, a request without an
 * Authorization header is made by the account its client certificate names.
 */
import type { IncomingMessage } from 'node:http';
import type { TLSSocket } from 'node:tls';
import { RegistryError } from '../registry/errors.ts';
import { parseV2Path, type V2Endpoint } from '../registry/v2-path.ts';
import type { HostedRoute, Route, Router } from '../proxy/router.ts';
import type { Authenticator, Identity } from '../auth/authenticator.ts';
import type { Action } from '../auth/rules.ts';
import { requestInfo } from './request-info.ts';

export interface ClientAuth {
  authenticator: Authenticator;
  router: Router;
  /** Every registry the mirror serves (upstreams' `registries`): where a name without one may go. */
  registries: readonly string[];
}

const DOCKER_HUB = new Set(['docker.io', 'index.docker.io', 'registry-1.docker.io']);

/**
 * `registry/repo` as clients see it through the mirror, Docker Hub as docker.io: the registry the
 * path names, else containerd's `ns`, else the upstream's first registry; a hosted registry's name.
 */
export function canonicalName(route: Route | HostedRoute, ns?: string | null): string {
  if ('registry' in route) return `${route.registry}/${route.repo}`;
  const registry = (route.prefix ?? (route.via === 'ns' && ns ? ns : undefined) ?? route.upstream.config.registries[0] ?? route.upstream.name).toLowerCase();
  return `${DOCKER_HUB.has(registry) ? 'docker.io' : registry}/${route.repo}`;
}

/** The mirror's own address as this client reached it, for the token realm. */
function origin(req: IncomingMessage): string {
  const tls = (req.socket as TLSSocket).encrypted === true;
  return `${tls ? 'https' : 'http'}://${req.headers.host ?? 'localhost'}`;
}

/** The `WWW-Authenticate` challenge that sends Docker clients to /auth/token. */
export function challenge(req: IncomingMessage, service: string, scope?: string, error?: string): string {
  let value = `Bearer realm="${origin(req)}/auth/token",service="${service}"`;
  if (scope !== undefined) value += `,scope="${scope}"`;
  if (error !== undefined) value += `,error="${error}"`;
  return value;
}

function actionOf(method: string | undefined): Action {
  if (method === 'GET' || method === 'HEAD') return 'pull';
  return method === 'DELETE' ? 'delete' : 'push';
}

/** The address failed attempts count against (server.ts notes it before any handler runs). */
export function clientOf(req: IncomingMessage): string {
  return requestInfo(req).client ?? req.socket.remoteAddress ?? 'unknown';
}

function parse(url: string): { endpoint: V2Endpoint | undefined; ns: string | undefined } {
  const q = url.indexOf('?');
  const ns = q === -1 ? undefined : (new URLSearchParams(url.slice(q + 1)).get('ns') ?? undefined);
  try {
    return { endpoint: parseV2Path(q === -1 ? url : url.slice(0, q)), ns };
  } catch {
    return { endpoint: undefined, ns };
  }
}

/** The verified client certificate's CN (server.ts reads it once per connection when tls.clientCA is set). */
export function certificateOf(req: IncomingMessage): string | undefined {
  return requestInfo(req).clientCN;
}

/** Throws unless the request may proceed (401 challenge, 403 DENIED or 429). */
export async function authorizeV2(auth: ClientAuth, req: IncomingMessage): Promise<void> {
  const a = auth.authenticator;
  const { endpoint, ns } = parse(req.url ?? '/v2/');
  const name = endpoint && 'name' in endpoint ? endpoint.name : undefined;
  const action = actionOf(req.method);
  const scope = name === undefined ? undefined : `repository:${name}:${action === 'pull' ? 'pull' : `pull,${action}`}`;
  const identity = await a.authenticate(req.headers.authorization, clientOf(req), challenge(req, a.service, scope), { certificate: certificateOf(req) });
  requestInfo(req).identity = identity;
  let route: Route | HostedRoute | undefined;
  if (name !== undefined) {
    try {
      const located = auth.router.locate(name, { ns, host: req.headers.host });
      // Kept for the handler, which would otherwise route the same name with the same hints again.
      requestInfo(req).located = located;
      route = located.route;
    } catch {
      route = undefined; // the handler reports the name; only who may ask is decided here
    }
  }
  if (!route || name === undefined) {
    // /v2/, _catalog, a malformed or unroutable name: any valid identity (or anonymous pull) may go on.
    if (identity.kind === 'anonymous' && !a.anonymousPull) throw unauthorized(req, a.service, scope);
    if (identity.kind !== 'anonymous' || action === 'pull') return;
    throw unauthorized(req, a.service, scope);
  }
  const canonical = canonicalName(route, ns);
  if (a.may(identity, canonical, name, action)) return;
  // No credentials, or a token without this repository: a fresh token may grant it, so challenge.
  if (identity.kind === 'anonymous' || (identity.kind === 'bearer' && !identity.access.has(name))) throw unauthorized(req, a.service, scope);
  throw new RegistryError('DENIED', { message: `${describe(identity)} may not ${action} ${canonical}` });
}

/** The fast path's check: true only when the credential was verified before and allows pulling. */
export function authorizedFromCache(auth: ClientAuth, req: IncomingMessage, route: Route, name: string, ns: string | null): boolean {
  const identity = auth.authenticator.cached(req.headers.authorization, certificateOf(req));
  return identity !== undefined && auth.authenticator.may(identity, canonicalName(route, ns), name, 'pull');
}

/**
 * Whether the client of `req` may pull `route` (named `name` as it wrote it): the source of a
 * cross-repository mount must be readable ("a repository that the client has read access to").
 * Without client auth everyone may; with it, the identity authorizeV2 settled is asked.
 */
export function mayPullFrom(auth: ClientAuth | undefined, req: IncomingMessage, name: string, route: HostedRoute): boolean {
  if (!auth) return true;
  const identity = requestInfo(req).identity;
  return identity !== undefined && auth.authenticator.may(identity, canonicalName(route), name, 'pull');
}

/** Admin API access for accounts and robot tokens with the admin role (the bootstrap admin.token is checked before). */
export async function authorizeAdmin(auth: ClientAuth, req: IncomingMessage): Promise<void> {
  const a = auth.authenticator;
  const identity = await a.authenticate(req.headers.authorization, clientOf(req), 'Basic realm="ocimirror-admin"', { certificate: certificateOf(req) });
  if (identity.kind === 'anonymous') {
    throw new RegistryError('UNAUTHORIZED', { message: 'admin API: credentials of an admin account or an admin robot token are required', headers: { 'WWW-Authenticate': 'Basic realm="ocimirror-admin"' } });
  }
  if (!a.isAdmin(identity)) throw new RegistryError('DENIED', { message: `admin API: ${describe(identity)} is not an admin` });
}

function unauthorized(req: IncomingMessage, service: string, scope: string | undefined): RegistryError {
  return new RegistryError('UNAUTHORIZED', { headers: { 'WWW-Authenticate': challenge(req, service, scope) } });
}

function describe(identity: Identity): string {
  switch (identity.kind) {
    case 'anonymous':
      return 'an anonymous client';
    case 'account':
      return identity.via === 'certificate' ? `account '${identity.name}' (client certificate)` : `account '${identity.name}'`;
    case 'robot':
      return `robot token ${identity.id}`;
    case 'bearer':
      return identity.subject ? `'${identity.subject}' (bearer token)` : 'an anonymous bearer token';
  }
}
