/**
 * @module http/v2-routes
 * The /v2/ API: parses the raw request target (not the normalised URL, so `..` and encoded
 * characters reach the grammar check instead of being silently rewritten), routes to an
 * upstream or a hosted registry, and turns proxy results into responses. Upstream repositories
 * are pull-only: push and delete there answer UNSUPPORTED (405), as distribution does for a
 * read-only proxy; hosted repositories take the whole push API (http/hosted-routes).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { RESPONSE_ALREADY_SENT } from '@hono/node-server/utils/response';
import type { Context } from 'hono';
import type { HttpBindings } from '@hono/node-server';
import { RegistryError } from '../registry/errors.ts';
import { parseV2Path, type V2Endpoint } from '../registry/v2-path.ts';
import { parseDigest } from '../registry/digest.ts';
import { parseReference } from '../registry/reference.ts';
import { parseAccept } from '../registry/media-types.ts';
import type { Router, Route, Located } from '../proxy/router.ts';
import type { ManifestProxy, ManifestResult } from '../proxy/manifest-proxy.ts';
import type { BlobProxy } from '../proxy/blob-proxy.ts';
import type { ListProxy } from '../proxy/list-proxy.ts';
import type { BlobWriter } from './body/blob-writer.ts';
import { API_VERSION_HEADER } from './headers.ts';
import { requestInfo } from './request-info.ts';
import { authorizedFromCache, mayPullFrom, type ClientAuth } from './auth-middleware.ts';
import { hostedHandler, type HostedDeps } from './hosted-routes.ts';
import type { HostedContent } from '../proxy/hosted/hosted-repository.ts';
import { listResponse, sendBlob, sendManifest } from './registry-responses.ts';

export interface V2Deps {
  router: Router;
  manifests: ManifestProxy;
  blobs: BlobProxy;
  lists: ListProxy;
  /** Writes blob bodies onto clients' sockets (sendfile or reused buffers). */
  blobWriter: BlobWriter;
  /** A manifest the cache did not have was pulled (prefetch its content for the next node). */
  onManifestMiss?: (route: Route, digest: string) => void;
  /** Client authentication (auth configured); app.ts checks it before the handler, the fast path itself. */
  auth?: ClientAuth | undefined;
  /** Hosted registries' content and uploads (`hosted` configured). */
  hosted?: Omit<HostedDeps, 'blobWriter'> | undefined;
  /** The hosted registries' names, for `_catalog`. */
  hostedRegistries?: readonly string[] | undefined;
}

type Ctx = Context<{ Bindings: HttpBindings }>;

export function createV2Handler(deps: V2Deps) {
  return async (c: Ctx): Promise<Response> => {
    // Manifests and blobs are written straight to the node:http response (startServer serves
    // this app); there is no fetch-style fallback to keep in step with it.
    const incoming = c.env?.incoming;
    if (!incoming?.url || !c.env.outgoing) throw new Error('the /v2 API needs the node:http request and response (serve the app with startServer)');
    const { endpoint, query } = parseTarget(incoming.url);
    const method = c.req.method;
    const readOnly = method === 'GET' || method === 'HEAD';

    if (endpoint.kind === 'base') {
      if (!readOnly) throw unsupported(method);
      return c.body('{}', 200, { ...API_VERSION_HEADER, 'Content-Type': 'application/json' });
    }
    if (endpoint.kind === 'catalog') {
      if (!readOnly) throw unsupported(method);
      if (!deps.hosted || deps.hostedRegistries === undefined || deps.hostedRegistries.length === 0) {
        throw new RegistryError('UNSUPPORTED', { message: 'this mirror lists only hosted repositories (_catalog), and has no hosted registry' });
      }
      return catalog(c, deps, deps.hosted.content, deps.hostedRegistries, query);
    }
    const hints = { ns: query.get('ns') ?? undefined, host: incoming.headers.host };
    const located = locate(deps, incoming, endpoint, hints);
    if (located.kind === 'hosted') {
      if (!deps.hosted) throw new Error('a hosted route without hosted content');
      // A mount's `from`, routed as the client named it: a repository it may pull, or none (upload instead).
      const mayRead = (name: string) => {
        let from: Located;
        try {
          from = deps.router.locate(name, hints);
        } catch {
          return undefined;
        }
        return from.kind === 'hosted' && mayPullFrom(deps.auth, incoming, name, from.route) ? from.route : undefined;
      };
      return hostedHandler(c, { ...deps.hosted, blobWriter: deps.blobWriter }, { route: located.route, endpoint, query, mayRead });
    }
    if (endpoint.kind === 'upload' || !readOnly) throw unsupported(method);
    const route = located.route;
    switch (endpoint.kind) {
      case 'manifest':
        return manifest(c, deps, route, endpoint.reference);
      case 'blob':
        return blob(c, deps, route, endpoint.digest);
      case 'tags': {
        const list = await deps.lists.tags(route, { n: query.get('n') ?? undefined, last: query.get('last') ?? undefined });
        return listResponse(c, list);
      }
      case 'referrers': {
        const digest = parseDigest(endpoint.digest);
        const list = await deps.lists.referrers(route, digest.value, query.get('artifactType') ?? undefined);
        return listResponse(c, list);
      }
    }
  };
}

/**
 * The raw request target (not the normalised URL, so `..` and encoded characters reach the
 * grammar check instead of being silently rewritten) as an endpoint and its query.
 */
function parseTarget(url: string): { endpoint: V2Endpoint; query: URLSearchParams } {
  const q = url.indexOf('?');
  return { endpoint: parseV2Path(q === -1 ? url : url.slice(0, q)), query: new URLSearchParams(q === -1 ? '' : url.slice(q + 1)) };
}

/** The upstream or hosted registry and the repository that serve a request (noted for the access log and metrics). */
function locate(deps: V2Deps, req: IncomingMessage, endpoint: V2Endpoint & { name: string }, hints: { ns: string | undefined; host: string | undefined }): Located {
  const info = requestInfo(req);
  const located = info.located ?? deps.router.locate(endpoint.name, hints);
  info.upstream = located.kind === 'upstream' ? located.route.upstream.name : located.route.registry;
  info.repo = located.route.repo;
  info.route = endpoint.kind;
  return located;
}

/** The fast path's route: an upstream's only (hosted content takes the normal way). */
function routeOf(deps: V2Deps, req: IncomingMessage, endpoint: V2Endpoint & { name: string }, query: URLSearchParams): Route | undefined {
  const located = locate(deps, req, endpoint, { ns: query.get('ns') ?? undefined, host: req.headers.host });
  return located.kind === 'upstream' ? located.route : undefined;
}

function unsupported(method: string): RegistryError {
  return new RegistryError('UNSUPPORTED', {
    message: `${method} is not supported: ocimirror is a read-only pull-through mirror`,
    headers: { Allow: 'GET, HEAD' },
  });
}

async function manifest(c: Ctx, deps: V2Deps, route: Route, reference: string): Promise<Response> {
  const ref = parseReference(reference);
  const result = await deps.manifests.get(route, ref, parseAccept(c.req.header('accept')));
  if (result.cache === 'MISS') deps.onManifestMiss?.(route, result.digest);
  sendManifest(c.env.incoming, c.env.outgoing, result);
  return RESPONSE_ALREADY_SENT;
}

/**
 * The request a mirror answers most — a manifest the cache holds fresh — answered before it
 * reaches hono, whose request, context and middleware chain were a large share of a hit's cost.
 * Returns false for anything else (a miss, an expired tag, a malformed name: any error), which
 * then takes the normal way, so every error still has its one renderer. With client auth on, it
 * answers only credentials already verified (the authenticator's cache): anything else takes the
 * normal way, where it is verified or refused.
 */
export function createManifestFastPath(deps: V2Deps): (req: IncomingMessage, res: ServerResponse) => boolean {
  return (req, res) => {
    const url = req.url;
    if ((req.method !== 'GET' && req.method !== 'HEAD') || url === undefined || !url.startsWith('/v2/')) return false;
    let result: ManifestResult | undefined;
    try {
      const { endpoint, query } = parseTarget(url);
      if (endpoint.kind !== 'manifest') return false;
      const route = routeOf(deps, req, endpoint, query);
      if (!route) return false;
      if (deps.auth && !authorizedFromCache(deps.auth, req, route, endpoint.name, query.get('ns'))) return false;
      result = deps.manifests.hit(route, parseReference(endpoint.reference), parseAccept(req.headers.accept));
    } catch {
      return false;
    }
    if (!result) return false;
    sendManifest(req, res, result);
    return true;
  };
}

async function blob(c: Ctx, deps: V2Deps, route: Route, digestText: string): Promise<Response> {
  const digest = parseDigest(digestText);
  const result = await deps.blobs.get(route, digest, { method: c.req.method === 'HEAD' ? 'HEAD' : 'GET', range: c.req.header('range') });
  sendBlob(c.env.incoming, c.env.outgoing, deps.blobWriter, result);
  return RESPONSE_ALREADY_SENT;
}

/**
 * `_catalog` (distribution-spec v1.1 "Listing Repositories", optional): the hosted repositories,
 * named as clients pull them (`registry.internal/team/app`), the ones the caller may pull, in order,
 * with `n`/`last` and a `Link` to the next page. Upstream repositories are not listed: the mirror
 * does not know what an upstream holds.
 */
function catalog(c: Ctx, deps: V2Deps, content: HostedContent, registries: readonly string[], query: URLSearchParams): Response {
  const n = query.get('n');
  const last = query.get('last');
  if (n !== null && !/^\d{1,9}$/.test(n)) throw new RegistryError('PAGINATION_NUMBER_INVALID', { message: 'n must be a non-negative integer' });
  const incoming = c.env.incoming;
  let names = registries.flatMap((registry) => content.repositories(registry).map((repo) => ({ registry, repo, name: `${registry}/${repo}` })));
  if (deps.auth) names = names.filter((r) => mayPullFrom(deps.auth, incoming, r.name, { registry: r.registry, repo: r.repo, prefix: r.registry, via: 'prefix' }));
  let page = names.map((r) => r.name).sort();
  if (last !== null) page = page.filter((name) => name > last);
  let link: string | undefined;
  if (n !== null && page.length > Number(n)) {
    page = page.slice(0, Number(n));
    link = `</v2/_catalog?${new URLSearchParams({ n, last: page[page.length - 1] ?? '' })}>; rel="next"`;
  }
  return listResponse(c, { contentType: 'application/json', link, body: Buffer.from(JSON.stringify({ repositories: page })), cache: 'HIT' });
}
