/**
 * @module proxy/list-proxy
 * Listings passed through from the upstream and cached like a tag: `tags/list` (OCI
 * distribution-spec "Listing Tags", with `n`/`last` pagination) and `referrers/<digest>`
 * ("Listing Referrers", so cosign/notation signatures keep working through the mirror).
 * Tag lists are always asked upstream while it answers (they change whenever someone pushes)
 * and come from the cache only when it does not; referrers lists are fresh for tagTTL. When the
 * upstream cannot answer a referrers request (down, offline, or without the referrers API) the
 * cache answers from the manifests it holds for that repository whose `subject` is the digest
 * (synced or imported signatures and SBOMs); with none, the upstream's 404 stands, so clients
 * still fall back to the referrers tag schema.
 * The upstream exchange, body included, and each client's wait for a shared one are bounded by
 * the upstream's `timeout`; past it the client gets the stored list, if any, or 503.
 */
import { RegistryError, type ErrorCode } from '../registry/errors.ts';
import type { Metadata } from '../cache/metadata/metadata.ts';
import { isValidTag } from '../registry/reference.ts';
import { SingleFlight } from '../util/single-flight.ts';
import { BodyTooLargeError, discard, readBody } from '../util/read-body.ts';
import type { CacheStatus } from './manifest-proxy.ts';
import type { Route } from './router.ts';
import { isUpstreamOutage, upstreamError } from './upstream-errors.ts';
import { referrerDescriptor, referrersIndex, type ReferrerDescriptor } from '../registry/referrers-index.ts';
import { MEDIA_TYPES } from '../registry/media-types.ts';
import { waitAtMost, withinTimeout } from './upstream-deadline.ts';

export interface ListResult {
  readonly status: number;
  readonly contentType: string;
  /** RFC 8288 Link for the next page, rewritten for the path the client used. */
  readonly link: string | undefined;
  readonly body: Buffer;
  readonly cache: CacheStatus;
  /** More response headers (`OCI-Filters-Applied`). */
  readonly headers?: Record<string, string>;
}

const LIST_MAX_BYTES = 16 << 20;

export class ListProxy {
  readonly #metadata: Metadata;
  readonly #now: () => number;
  readonly #flights = new SingleFlight<ListResult>();

  constructor({ metadata, now = Date.now }: { metadata: Metadata; now?: () => number }) {
    this.#metadata = metadata;
    this.#now = now;
  }

  async tags(route: Route, query: { n?: string | undefined; last?: string | undefined }): Promise<ListResult> {
    const params: Record<string, string> = {};
    if (query.n !== undefined) {
      if (!/^\d{1,9}$/.test(query.n)) throw new RegistryError('PAGINATION_NUMBER_INVALID', { message: 'n must be a non-negative integer' });
      params.n = query.n;
    }
    if (query.last !== undefined) {
      if (!isValidTag(query.last)) throw new RegistryError('TAG_INVALID', { message: 'last must be a tag' });
      params.last = query.last;
    }
    const key = `tags?${new URLSearchParams(params).toString()}`;
    try {
      const list = await this.#fetch(route, `${route.repo}/tags/list`, params, key, 'NAME_UNKNOWN');
      return enforcePagination(route, list, params);
    } catch (err) {
      if (!isUpstreamOutage(err)) throw err;
      const stored = this.#stored(route, key);
      if (stored) return stored;
      // Never listed through the mirror: answer with the tags it has cached, paginated locally.
      const all = this.#metadata.cachedTags(route.upstream.name, route.repo);
      if (all.length === 0) throw err;
      return { ...paginate(route, all, params), cache: 'STALE' };
    }
  }

  async referrers(route: Route, digest: string, artifactType: string | undefined): Promise<ListResult> {
    const params: Record<string, string> = artifactType === undefined ? {} : { artifactType };
    const key = `referrers/${digest}?${new URLSearchParams(params).toString()}`;
    const row = this.#metadata.getList(route.upstream.name, key);
    if (row && this.#now() - row.fetchedAt < route.upstream.config.tagTTL) {
      return { status: row.status, contentType: row.contentType ?? 'application/vnd.oci.image.index.v1+json', link: rewriteLink(row.link ?? undefined, route), body: row.body, cache: 'HIT' };
    }
    try {
      return await this.#fetch(route, `${route.repo}/referrers/${digest}`, params, key, 'MANIFEST_UNKNOWN');
    } catch (err) {
      const outage = isUpstreamOutage(err);
      const noApi = err instanceof RegistryError && err.status === 404;
      if (!outage && !noApi) throw err;
      const stored = outage ? this.#stored(route, key) : undefined;
      if (stored) return stored;
      const local = this.#localReferrers(route, digest, artifactType);
      if (outage || local.found > 0) return local.result;
      throw err;
    }
  }

  /** The referrers index built from cached manifests of this repository whose subject is `digest`. */
  #localReferrers(route: Route, digest: string, artifactType: string | undefined): { result: ListResult; found: number } {
    const descriptors: ReferrerDescriptor[] = [];
    for (const parent of this.#metadata.refs.parents(digest)) {
      if (parent.kind !== 'subject' || !this.#metadata.hasLink(route.upstream.name, route.repo, parent.digest)) continue;
      const row = this.#metadata.getManifest(parent.digest);
      const descriptor = row ? referrerDescriptor(row) : undefined;
      if (descriptor) descriptors.push(descriptor);
    }
    const matching = artifactType === undefined ? descriptors : descriptors.filter((d) => d.artifactType === artifactType);
    const body = Buffer.from(JSON.stringify(referrersIndex(matching)));
    const headers = artifactType === undefined ? undefined : { 'OCI-Filters-Applied': 'artifactType' };
    return { found: descriptors.length, result: { status: 200, contentType: MEDIA_TYPES.ociIndex, link: undefined, body, cache: 'STALE', ...(headers ? { headers } : {}) } };
  }

  #stored(route: Route, key: string): ListResult | undefined {
    const row = this.#metadata.getList(route.upstream.name, key);
    if (!row) return undefined;
    return { status: row.status, contentType: row.contentType ?? 'application/json', link: rewriteLink(row.link ?? undefined, route), body: row.body, cache: 'STALE' };
  }

  #fetch(route: Route, path: string, query: Record<string, string>, key: string, notFound: ErrorCode): Promise<ListResult> {
    const what = `listing ${path}`;
    const shared = this.#flights.do(`${route.upstream.name}\0${key}\0${route.repo}`, () =>
      withinTimeout(route.upstream, what, async (signal) => {
        const name = route.upstream.name;
        const res = await route.upstream.request({ method: 'GET', repository: route.repo, path, query, headers: { accept: 'application/json' }, signal });
        if (res.status !== 200) {
          discard(res.body);
          throw upstreamError(res, { upstream: name, repo: route.repo, notFound, subject: path.slice(route.repo.length + 1) });
        }
        let body: Buffer;
        try {
          body = await readBody(res.body, LIST_MAX_BYTES);
        } catch (cause) {
          if (cause instanceof BodyTooLargeError) throw new RegistryError('BAD_GATEWAY', { message: `upstream ${name} sent a listing over ${LIST_MAX_BYTES} bytes`, cause });
          // Cut off or stalled (bodyTimeout): the network failing, so the stored list may answer.
          throw new RegistryError('UNAVAILABLE', { message: `upstream ${name} dropped or stalled the connection during a listing`, cause });
        }
        const contentType = res.headers['content-type'] ?? 'application/json';
        const link = res.headers['link'];
        // On a full disk the listing is served unrecorded.
        this.#metadata.tryWrite('listing', () => this.#metadata.putList(name, key, { status: 200, contentType, link: link ?? null, body }));
        return { status: 200, contentType, link: rewriteLink(link, route), body, cache: 'MISS' as const };
      }),
    );
    return waitAtMost(route.upstream, what, shared);
  }
}

/**
 * The upstream's Link names its own path (`</v2/library/alpine/tags/list?last=x&n=5>`); the
 * client must get the path it used, with the registry prefix and without Docker Hub's implied
 * `library/` when it did not send one. Absolute URLs to other hosts are dropped.
 */
function rewriteLink(link: string | undefined, route: Route): string | undefined {
  if (!link) return undefined;
  const m = /^\s*<([^>]*)>(.*)$/.exec(link);
  if (!m) return undefined;
  let target: URL;
  try {
    target = new URL(m[1] as string, 'http://upstream.invalid');
  } catch {
    return undefined;
  }
  const prefix = `/v2/${route.repo}/`;
  if (!target.pathname.startsWith(prefix)) return undefined;
  const clientRepo = route.prefix ? `${route.prefix}/${route.repo}` : route.repo;
  return `</v2/${clientRepo}/${target.pathname.slice(prefix.length)}${target.search}>${m[2]}`;
}

/**
 * Some upstreams (distribution 2.8) ignore `n`/`last`; the spec says the answer holds at most
 * `n` tags after `last` in lexical order, so the mirror applies them when the upstream did not.
 */
function enforcePagination(route: Route, list: ListResult, params: Record<string, string>): ListResult {
  if (params.n === undefined && params.last === undefined) return list;
  let doc: { name?: unknown; tags?: unknown };
  try {
    doc = JSON.parse(list.body.toString('utf8')) as typeof doc;
  } catch {
    return list;
  }
  if (!Array.isArray(doc.tags) || !doc.tags.every((t) => typeof t === 'string')) return list;
  const tags = doc.tags as string[];
  const n = params.n === undefined ? Infinity : Number(params.n);
  const honoured = tags.length <= n && (params.last === undefined || tags.every((t) => t > (params.last as string)));
  if (honoured) return list;
  return { ...paginate(route, [...tags].sort(), params), cache: list.cache };
}

function paginate(route: Route, all: string[], params: Record<string, string>): Omit<ListResult, 'cache'> {
  let tags = params.last === undefined ? all : all.filter((t) => t > (params.last as string));
  let link: string | undefined;
  if (params.n !== undefined) {
    const n = Number(params.n);
    if (tags.length > n) {
      tags = tags.slice(0, n);
      const clientRepo = route.prefix ? `${route.prefix}/${route.repo}` : route.repo;
      link = `</v2/${clientRepo}/tags/list?${new URLSearchParams({ last: tags[tags.length - 1] ?? '', n: String(n) })}>; rel="next"`;
    }
  }
  return { status: 200, contentType: 'application/json', link, body: Buffer.from(JSON.stringify({ name: route.repo, tags })) };
}
