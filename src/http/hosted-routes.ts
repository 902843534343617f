/**
 * @module http/hosted-routes
 * The /v2/ API of hosted registries (OCI distribution-spec v1.1): push (blob upload sessions,
 * monolithic and chunked, cross-repository mounts, manifests), pull, content discovery (tags
 * list with `n`/`last`, referrers with `artifactType`) and content management (DELETE). Who may
 * do what was decided before (http/auth-middleware); this module speaks HTTP only, the policy is
 * in proxy/hosted. Locations keep the name as the client wrote it (a registry prefix, `?ns=`), so
 * the URLs a client is handed lead back here.
 */
import type { IncomingMessage } from 'node:http';
import { RESPONSE_ALREADY_SENT } from '@hono/node-server/utils/response';
import type { Context } from 'hono';
import type { HttpBindings } from '@hono/node-server';
import { RegistryError } from '../registry/errors.ts';
import type { V2Endpoint } from '../registry/v2-path.ts';
import { parseDigest } from '../registry/digest.ts';
import { parseContentRange, uploadRange } from '../registry/upload-range.ts';
import type { HostedRoute } from '../proxy/router.ts';
import type { HostedBlobs } from '../proxy/hosted/hosted-blobs.ts';
import type { HostedContent } from '../proxy/hosted/hosted-repository.ts';
import { MANIFEST_MAX_BYTES } from '../proxy/hosted/pushed-manifest.ts';
import type { BlobWriter } from './body/blob-writer.ts';
import { API_VERSION_HEADER } from './headers.ts';
import { listResponse, sendBlob, sendManifest } from './registry-responses.ts';

export interface HostedDeps {
  content: HostedContent;
  blobs: HostedBlobs;
  blobWriter: BlobWriter;
}

type Ctx = Context<{ Bindings: HttpBindings }>;
type NamedEndpoint = Exclude<V2Endpoint, { kind: 'base' } | { kind: 'catalog' }>;

export interface HostedRequest {
  route: HostedRoute;
  endpoint: NamedEndpoint;
  query: URLSearchParams;
  /** Whether the caller may pull another repository of this registry (named as the client names it): mounts need it. */
  mayRead: (name: string) => HostedRoute | undefined;
}

const INDEX_TYPE = 'application/vnd.oci.image.index.v1+json';

export async function hostedHandler(c: Ctx, deps: HostedDeps, r: HostedRequest): Promise<Response> {
  const method = c.req.method;
  const { endpoint, route } = r;
  switch (endpoint.kind) {
    case 'manifest':
      if (method === 'GET' || method === 'HEAD') {
        const m = deps.content.getManifest(route.registry, route.repo, endpoint.reference);
        sendManifest(c.env.incoming, c.env.outgoing, { ...m, cache: 'HIT' });
        return RESPONSE_ALREADY_SENT;
      }
      if (method === 'PUT') return putManifest(c, deps, r, endpoint.reference);
      if (method === 'DELETE') {
        deps.content.deleteManifest(route.registry, route.repo, endpoint.reference);
        return empty(c, 202);
      }
      throw notAllowed(method, 'GET, HEAD, PUT, DELETE');
    case 'blob': {
      const digest = parseDigest(endpoint.digest);
      if (method === 'GET' || method === 'HEAD') {
        const result = await deps.blobs.get(route, digest, { method, range: c.req.header('range') });
        sendBlob(c.env.incoming, c.env.outgoing, deps.blobWriter, result);
        return RESPONSE_ALREADY_SENT;
      }
      if (method === 'DELETE') {
        deps.content.deleteBlob(route.registry, route.repo, digest.value);
        return empty(c, 202);
      }
      throw notAllowed(method, 'GET, HEAD, DELETE');
    }
    case 'upload':
      return upload(c, deps, r, endpoint.session);
    case 'tags': {
      if (method !== 'GET' && method !== 'HEAD') throw notAllowed(method, 'GET, HEAD');
      const n = r.query.get('n') ?? undefined;
      const page = deps.content.tags(route.registry, route.repo, { n, last: r.query.get('last') ?? undefined });
      const tags = page.tags;
      const last = tags[tags.length - 1];
      const link = page.more && last !== undefined ? `<${v2Path(endpoint.name, 'tags/list', r.query, { n: n ?? String(tags.length), last })}>; rel="next"` : undefined;
      return listResponse(c, { contentType: 'application/json', link, body: Buffer.from(JSON.stringify({ name: endpoint.name, tags })), cache: 'HIT' });
    }
    case 'referrers': {
      if (method !== 'GET' && method !== 'HEAD') throw notAllowed(method, 'GET, HEAD');
      const answer = deps.content.referrers(route.registry, route.repo, endpoint.digest, r.query.get('artifactType') ?? undefined);
      const headers: Record<string, string> = answer.filtersApplied.length > 0 ? { 'OCI-Filters-Applied': answer.filtersApplied.join(',') } : {};
      return listResponse(c, { contentType: INDEX_TYPE, link: undefined, body: answer.body, cache: 'HIT', headers });
    }
  }
}

async function putManifest(c: Ctx, deps: HostedDeps, r: HostedRequest, reference: string): Promise<Response> {
  const incoming = c.env.incoming;
  const declared = contentLength(incoming);
  // "SHOULD respond to a request to push a manifest over this limit with … 413" (Pushing Manifests).
  if (declared !== undefined && declared > MANIFEST_MAX_BYTES) throw tooLarge(declared);
  const bytes = await readManifest(incoming);
  const pushed = deps.content.putManifest(r.route.registry, r.route.repo, reference, c.req.header('content-type'), bytes);
  const headers: Record<string, string> = { Location: v2Path(r.endpoint.name, `manifests/${pushed.digest}`, r.query), 'Docker-Content-Digest': pushed.digest };
  // "MUST respond with the response header OCI-Subject" when the manifest had a subject (Pushing Manifests with Subject).
  if (pushed.subject !== undefined) headers['OCI-Subject'] = pushed.subject;
  return empty(c, 201, headers);
}

async function upload(c: Ctx, deps: HostedDeps, r: HostedRequest, session: string | undefined): Promise<Response> {
  const method = c.req.method;
  const incoming = c.env.incoming;
  const { route, endpoint, query } = r;
  if (session === undefined) {
    if (method !== 'POST') throw notAllowed(method, 'POST');
    const mount = query.get('mount');
    const from = query.get('from');
    if (mount !== null) {
      const digest = parseDigest(mount).value;
      const source = from === null ? undefined : r.mayRead(from);
      // A mount that cannot be made falls back to an upload session (202), as the spec asks.
      if (source && source.registry === route.registry && deps.blobs.mount(route, digest, source.repo, () => true)) return created(c, endpoint.name, query, digest);
    }
    const digest = query.get('digest');
    if (digest !== null && mount === null) {
      const done = await deps.blobs.monolithic(route, digest, incoming, bodyInfo(c, incoming, false));
      return created(c, endpoint.name, query, done.digest);
    }
    const started = await deps.blobs.start(route);
    return uploadStatus(c, 202, endpoint.name, query, started.id, started.size);
  }
  switch (method) {
    case 'GET':
    case 'HEAD': {
      const s = deps.blobs.status(route, session);
      return uploadStatus(c, 204, endpoint.name, query, s.id, s.size);
    }
    case 'PATCH': {
      const size = await deps.blobs.append(route, session, incoming, bodyInfo(c, incoming, true));
      return uploadStatus(c, 202, endpoint.name, query, session, size);
    }
    case 'PUT': {
      const digest = query.get('digest');
      if (digest === null) throw new RegistryError('DIGEST_INVALID', { message: 'closing an upload needs ?digest=<digest> of the whole blob' });
      const info = bodyInfo(c, incoming, true);
      const hasBody = (info.contentLength ?? 0) > 0 || (info.contentLength === undefined && incoming.headers['transfer-encoding'] !== undefined);
      const done = await deps.blobs.finish(route, session, digest, hasBody ? incoming : undefined, info);
      return created(c, endpoint.name, query, done.digest);
    }
    case 'DELETE':
      await deps.blobs.cancel(route, session);
      return empty(c, 204);
    default:
      throw notAllowed(method, 'GET, HEAD, PATCH, PUT, DELETE');
  }
}

/**
 * The manifest body, at most MANIFEST_MAX_BYTES. The request is not destroyed past the limit
 * (that would cut the socket before the 413 goes out); node:http drains what is left.
 */
async function readManifest(incoming: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of incoming.iterator({ destroyOnReturn: false }) as AsyncIterable<Buffer>) {
    total += chunk.length;
    if (total > MANIFEST_MAX_BYTES) throw tooLarge(undefined);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks, total);
}

function bodyInfo(c: Ctx, incoming: IncomingMessage, ranged: boolean) {
  const header = ranged ? c.req.header('content-range') : undefined;
  return { range: header === undefined ? undefined : parseContentRange(header), contentLength: contentLength(incoming) };
}

function contentLength(incoming: IncomingMessage): number | undefined {
  const header = incoming.headers['content-length'];
  if (header === undefined) return undefined;
  const n = Number(header);
  if (!/^\d{1,16}$/.test(header) || !Number.isSafeInteger(n)) throw new RegistryError('SIZE_INVALID', { message: 'invalid Content-Length', detail: { contentLength: header.slice(0, 40) } });
  return n;
}

function created(c: Ctx, name: string, query: URLSearchParams, digest: string): Response {
  return empty(c, 201, { Location: v2Path(name, `blobs/${digest}`, query), 'Docker-Content-Digest': digest });
}

/** 202/204 of an upload session: where to send the next chunk and what arrived so far (`Range: 0-<end>`). */
function uploadStatus(c: Ctx, status: 202 | 204, name: string, query: URLSearchParams, id: string, size: number): Response {
  return empty(c, status, {
    Location: v2Path(name, `blobs/uploads/${id}`, query),
    Range: uploadRange(size),
    'Blob-Upload-Session-ID': id,
    'Docker-Upload-UUID': id,
  });
}

/** A /v2/ path under the client's own name, keeping `ns` (containerd) and adding `extra` parameters. */
function v2Path(name: string, rest: string, query: URLSearchParams, extra: Record<string, string> = {}): string {
  const params = new URLSearchParams();
  const ns = query.get('ns');
  if (ns !== null) params.set('ns', ns);
  for (const [k, v] of Object.entries(extra)) params.set(k, v);
  const q = params.toString();
  return `/v2/${name}/${rest}${q ? `?${q}` : ''}`;
}

function empty(c: Ctx, status: 201 | 202 | 204, headers: Record<string, string> = {}): Response {
  return c.body(null, status, { ...API_VERSION_HEADER, ...(status === 204 ? {} : { 'Content-Length': '0' }), ...headers });
}

function notAllowed(method: string, allow: string): RegistryError {
  return new RegistryError('UNSUPPORTED', { message: `${method} is not supported on this endpoint`, headers: { Allow: allow } });
}

function tooLarge(size: number | undefined): RegistryError {
  return new RegistryError('MANIFEST_TOO_LARGE', {
    message: `manifests are limited to ${MANIFEST_MAX_BYTES} bytes`,
    detail: { limit: MANIFEST_MAX_BYTES, ...(size === undefined ? {} : { size }) },
  });
}
