/**
 * @module http/v2-routes
 * The /v2/ API: parses the raw request target (not the normalised URL, so `..` and encoded
 * characters reach the grammar check instead of being silently rewritten), routes to an
 * upstream, and turns proxy results into responses. Pull endpoints only; push and delete
 * answer UNSUPPORTED (405), as distribution does for a read-only proxy.
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
import { contentRange } from '../registry/range.ts';
import type { Router, Route } from '../proxy/router.ts';
import type { ManifestProxy, ManifestResult } from '../proxy/manifest-proxy.ts';
import type { BlobProxy } from '../proxy/blob-proxy.ts';
import type { ListProxy } from '../proxy/list-proxy.ts';
import type { BlobWriter } from './body/blob-writer.ts';
import { API_VERSION_HEADER, contentHeaders } from './headers.ts';
import { requestInfo } from './request-info.ts';
import { authorizedFromCache, type ClientAuth } from './auth-middleware.ts';

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
      throw new RegistryError('UNSUPPORTED', { message: 'this mirror does not list repositories (_catalog)' });
    }
    if (endpoint.kind === 'upload' || !readOnly) throw unsupported(method);

    const route = routeOf(deps, incoming, endpoint, query);
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

/** The upstream and repository that serve a request (noted for the access log and metrics). */
function routeOf(deps: V2Deps, req: IncomingMessage, endpoint: V2Endpoint & { name: string }, query: URLSearchParams): Route {
  const route = deps.router.resolve(endpoint.name, { ns: query.get('ns') ?? undefined, host: req.headers.host });
  const info = requestInfo(req);
  info.upstream = route.upstream.name;
  info.repo = route.repo;
  info.route = endpoint.kind;
  return route;
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
 * Writes a manifest straight to the socket, skipping the Response/Headers objects a fetch-style
 * return would build and then copy out again. Stored bytes go out untouched: re-serialising
 * would change the digest.
 */
function sendManifest(incoming: IncomingMessage, outgoing: ServerResponse, result: ManifestResult): void {
  const headers = contentHeaders({ digest: result.digest, contentType: result.mediaType, length: result.bytes.length, cache: result.cache });
  requestInfo(incoming).cache = result.cache;
  outgoing.writeHead(200, headers);
  outgoing.end(incoming.method === 'HEAD' ? undefined : result.bytes);
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
  const method = c.req.method === 'HEAD' ? 'HEAD' : 'GET';
  const result = await deps.blobs.get(route, digest, { method, range: c.req.header('range') });
  const base = contentHeaders({ digest: result.digest, contentType: 'application/octet-stream', length: result.size, cache: result.cache });
  base['Accept-Ranges'] = 'bytes';
  if (result.range === 'unsatisfiable') {
    throw new RegistryError('RANGE_INVALID', {
      detail: { size: result.size },
      headers: { 'Content-Range': `bytes */${result.size}`, 'X-Cache': result.cache },
    });
  }
  let status: 200 | 206 = 200;
  if (result.range && result.size !== undefined) {
    status = 206;
    base['Content-Range'] = contentRange(result.range.start, result.range.end, result.size);
    base['Content-Length'] = String(result.range.end - result.range.start + 1);
  }
  const outgoing = c.env.outgoing;
  const info = requestInfo(c.env.incoming);
  info.cache = result.cache;
  outgoing.writeHead(status, base);
  if (!result.body) {
    outgoing.end(); // HEAD
    return RESPONSE_ALREADY_SENT;
  }
  // Straight onto the socket (sendfile where it can): no stream hop on the hottest path, and a
  // failed fill destroys the connection (the client sees an abort, never a clean end to a wrong body).
  deps.blobWriter.write(result.body, outgoing).then(
    (written) => {
      info.sendfileBytes = written.sendfile;
      outgoing.end();
    },
    () => outgoing.destroy(),
  );
  return RESPONSE_ALREADY_SENT;
}

function listResponse(c: Ctx, list: { status: number; contentType: string; link: string | undefined; body: Buffer; cache: string }): Response {
  const headers: Record<string, string> = { ...API_VERSION_HEADER, 'Content-Type': list.contentType, 'X-Cache': list.cache };
  if (list.link) headers.Link = list.link;
  return c.body(asBody(list.body), 200, headers);
}

/** A Buffer is the Uint8Array hono sends as is; only its ArrayBuffer typing differs. */
function asBody(buf: Buffer): Uint8Array<ArrayBuffer> {
  return buf as Uint8Array<ArrayBuffer>;
}
