/**
 * @module sync/sync-runner
 * Runs a sync plan on a mirror core: lists tags where a selection needs them, then copies image
 * by image, one after the other (each image's blobs two at a time), through the same path a pull
 * takes — the prefetcher, with `revalidate`, so an unchanged tag costs one conditional request
 * (a HEAD) and blobs already cached are never fetched again. A sync that was interrupted resumes
 * where it stopped by running it again: committed blobs stay. Into a hosted registry the image
 * is first pulled into the cache (fetched and verified once) and its manifest graph then linked
 * into the hosted repository (HostedContent.adopt).
 *
 * Before each image the upstream's rate-limit budget is checked as background jobs check it:
 * under `rateLimitFloor` the sync waits (and says so) rather than spend what client pulls need.
 *
 * `runSync` is what the CLI calls in-process, and what a scheduled job or the admin API can call
 * on the running mirror's core: it reports through `onEvent` and returns the report.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { MirrorCore } from '../core.ts';
import type { PrefetchProgress } from '../proxy/prefetch.ts';
import type { Route } from '../proxy/router.ts';
import { upstreamError } from '../proxy/upstream-errors.ts';
import { RegistryError } from '../registry/errors.ts';
import { matchesPlatform, readManifest } from '../registry/manifest.ts';
import { DEFAULT_ACCEPT } from '../registry/media-types.ts';
import { parseReference } from '../registry/reference.ts';
import { silentLogger, type Logger } from '../util/logger.ts';
import { discard } from '../util/read-body.ts';
import { destRepository, formatDest, type SyncDest } from './sync-dest.ts';
import type { SyncSource } from './sync-file.ts';
import { selectionKey, selectionReferences, type SyncPlan } from './sync-plan.ts';
import { totalsOf, type ImageReport, type SyncEvent, type SyncReport } from './sync-report.ts';
import { SyncSources } from './sync-source.ts';

export interface SyncOptions {
  readonly dest: SyncDest;
  /** List what would be copied (digest from a HEAD, whether the destination is current) and copy nothing. */
  readonly dryRun?: boolean;
  /** Go on past failed images (else the first failure ends the run). */
  readonly keepGoing?: boolean;
  readonly signal?: AbortSignal;
  readonly onEvent?: (event: SyncEvent) => void;
  readonly log?: Logger;
  /** Wall clock for the report's timestamps and the rate-limit wait. */
  readonly now?: () => number;
  /** How the rate-limit wait waits (tests pass one that returns at once). */
  readonly wait?: (ms: number, signal: AbortSignal | undefined) => Promise<void>;
}

const waitFor = (ms: number, signal: AbortSignal | undefined) => sleep(ms, undefined, signal ? { signal } : {});

/** One image to copy: a tag or digest of a repository, and where it goes. */
interface SyncItem {
  readonly source: SyncSource;
  readonly route: Route;
  readonly reference: string;
  /** `docker.io/library/alpine:3.19` */
  readonly sourceRef: string;
  readonly destination: string;
  /** The hosted repository, when the destination is hosted. */
  readonly destRepo: string | undefined;
}

/** Tags asked per tags/list page; the Link header leads to the next. */
const TAG_PAGE = '1000';
/** A tag list longer than this many pages is cut off (a registry looping on its Link). */
const MAX_TAG_PAGES = 1_000;
/** While the budget is low the sync looks again at least this often: the window may end early. */
const BUDGET_RECHECK_MS = 60_000;

interface BudgetedUpstream {
  backgroundPausedUntil?(): number | undefined;
}

export async function runSync(core: MirrorCore, plan: SyncPlan, options: SyncOptions): Promise<SyncReport> {
  const { dest, dryRun = false, keepGoing = false, signal, onEvent = () => {}, log = silentLogger, now = Date.now, wait = waitFor } = options;
  const startedAt = new Date(now()).toISOString();
  const sources = new SyncSources(core, dest, log);
  const images: ImageReport[] = [];
  let stoppedEarly = false;
  const record = (entry: ImageReport): boolean => {
    images.push(entry);
    onEvent({ event: 'image-done', ...entry });
    return entry.result !== 'failed' || keepGoing;
  };
  try {
    const items = await expand(core, plan, dest, sources, { signal, onEvent, record });
    stoppedEarly = items === undefined;
    if (items !== undefined) {
      onEvent({ event: 'plan', images: items.length, failed: images.length });
      const copier = new Copier(core, dest, signal, onEvent);
      for (const [index, item] of items.entries()) {
        if (signal?.aborted) {
          stoppedEarly = true;
          break;
        }
        onEvent({ event: 'image-started', index, total: items.length, source: item.sourceRef, destination: item.destination });
        let entry: ImageReport;
        try {
          await waitForBudget(item.route, signal, onEvent, now, wait);
          entry = dryRun ? await copier.inspect(item) : await copier.copy(item);
        } catch (err) {
          entry = failed(item.sourceRef, item.destination, err);
        }
        if (!record(entry) && index < items.length - 1) {
          stoppedEarly = true;
          break;
        }
      }
    }
  } finally {
    await sources.close();
  }
  const totals = totalsOf(images);
  onEvent({ event: 'sync-done', stoppedEarly, ...totals });
  return { dest: formatDest(dest), dryRun, stoppedEarly, startedAt, finishedAt: new Date(now()).toISOString(), images, totals };
}

/**
 * The plan's images, each once, in file order; a selection whose registry cannot be reached or
 * whose tags cannot be listed is one failed entry. Undefined when the run must stop.
 */
async function expand(
  core: MirrorCore,
  plan: SyncPlan,
  dest: SyncDest,
  sources: SyncSources,
  { signal, onEvent, record }: { signal: AbortSignal | undefined; onEvent: (e: SyncEvent) => void; record: (e: ImageReport) => boolean },
): Promise<SyncItem[] | undefined> {
  const items: SyncItem[] = [];
  const seen = new Set<string>();
  for (const { source, selections } of plan.sources) {
    let noted = false;
    for (const selection of selections) {
      if (signal?.aborted) return undefined;
      const where = `${source.registry}.${selectionKey(selection.selector)}.${selection.repo}`;
      let route: Route | undefined;
      try {
        route = sources.route(source, selection.repo);
        if (!noted) for (const message of sources.notes(source)) onEvent({ event: 'note', message });
        noted = true;
        const resolved = route;
        const refs = await selectionReferences(selection, source, () => listTags(core, resolved, signal));
        if (refs.length === 0) onEvent({ event: 'note', message: `${where}: no tag of ${source.registry}/${route.repo} is selected` });
        for (const reference of refs) {
          const key = `${route.upstream.name}\0${route.repo}\0${reference}`;
          if (seen.has(key)) continue;
          seen.add(key);
          items.push(item(source, route, reference, dest));
        }
      } catch (err) {
        const name = `${source.registry}/${route?.repo ?? selection.repo}`;
        if (!record(failed(name, dest.kind === 'cache' ? name : `${formatDest(dest)}/${route?.repo ?? selection.repo}`, err, where))) return undefined;
      }
    }
  }
  return items;
}

function item(source: SyncSource, route: Route, reference: string, dest: SyncDest): SyncItem {
  const sep = reference.startsWith('sha256:') ? '@' : ':';
  const sourceRef = `${source.registry}/${route.repo}${sep}${reference}`;
  if (dest.kind === 'cache') return { source, route, reference, sourceRef, destination: sourceRef, destRepo: undefined };
  const destRepo = destRepository(dest, route.repo);
  return { source, route, reference, sourceRef, destination: `${dest.registry}/${destRepo}${sep}${reference}`, destRepo };
}

function failed(source: string, destination: string, err: unknown, where?: string): ImageReport {
  const message = err instanceof Error ? err.message : String(err);
  return {
    source,
    destination,
    digest: null,
    bytes: null,
    blobsFetched: 0,
    bytesFetched: 0,
    referrers: 0,
    result: 'failed',
    error: where === undefined ? message : `${where}: ${message}`,
  };
}

/** Every tag of the repository, following the upstream's Link pages (tags/list, distribution-spec "Listing Tags"). */
export async function listTags(core: Pick<MirrorCore, 'lists'>, route: Route, signal?: AbortSignal): Promise<string[]> {
  const tags: string[] = [];
  let last: string | undefined;
  for (let page = 0; page < MAX_TAG_PAGES; page++) {
    signal?.throwIfAborted();
    const list = await core.lists.tags(route, { n: TAG_PAGE, last });
    let doc: { tags?: unknown };
    try {
      doc = JSON.parse(list.body.toString('utf8')) as typeof doc;
    } catch (cause) {
      throw new RegistryError('BAD_GATEWAY', { message: `upstream ${route.upstream.name} sent a tag list of ${route.repo} that is not JSON`, cause });
    }
    const pageTags = Array.isArray(doc.tags) ? doc.tags.filter((t): t is string => typeof t === 'string') : [];
    tags.push(...pageTags);
    const next = nextLast(list.link);
    if (next === undefined || next === last || pageTags.length === 0) break;
    last = next;
  }
  return [...new Set(tags)];
}

/** The `last` of a `Link: </v2/…/tags/list?last=x&n=…>; rel="next"`. */
function nextLast(link: string | undefined): string | undefined {
  const target = link === undefined ? undefined : /<([^>]*)>/.exec(link)?.[1];
  if (target === undefined) return undefined;
  try {
    return new URL(target, 'http://upstream.invalid').searchParams.get('last') ?? undefined;
  } catch {
    return undefined;
  }
}

async function waitForBudget(
  route: Route,
  signal: AbortSignal | undefined,
  onEvent: (e: SyncEvent) => void,
  now: () => number,
  wait: (ms: number, signal: AbortSignal | undefined) => Promise<void>,
): Promise<void> {
  for (let check = 0; check < 10_000; check++) {
    const until = (route.upstream as BudgetedUpstream).backgroundPausedUntil?.();
    if (until === undefined) return;
    onEvent({
      event: 'paused',
      upstream: route.upstream.name,
      until: new Date(until).toISOString(),
      reason: `rate-limit budget under rateLimitFloor (${route.upstream.config.rateLimitFloor})`,
    });
    await wait(Math.max(1_000, Math.min(until - now(), BUDGET_RECHECK_MS)), signal);
  }
}

/** The platforms to copy: the file's, 'all', or the mirror's prefetch.platforms. */
function platformsOf(core: MirrorCore, source: SyncSource): readonly string[] {
  if (source.platforms === 'all') return [];
  return source.platforms ?? core.config.prefetch.platforms;
}

class Copier {
  readonly #core: MirrorCore;
  readonly #dest: SyncDest;
  readonly #signal: AbortSignal | undefined;
  readonly #onEvent: (e: SyncEvent) => void;
  /** Upstreams without the referrers API: asked once, then skipped. */
  readonly #noReferrers = new Set<string>();

  constructor(core: MirrorCore, dest: SyncDest, signal: AbortSignal | undefined, onEvent: (e: SyncEvent) => void) {
    this.#core = core;
    this.#dest = dest;
    this.#signal = signal;
    this.#onEvent = onEvent;
  }

  async copy(item: SyncItem): Promise<ImageReport> {
    const { route, reference } = item;
    const metadata = this.#core.storage.metadata;
    const ref = parseReference(reference);
    const before = ref.kind === 'tag'
      ? metadata.getTag(route.upstream.name, route.repo, ref.tag)?.digest
      : metadata.hasLink(route.upstream.name, route.repo, ref.digest.value) ? ref.digest.value : undefined;
    const platforms = platformsOf(this.#core, item.source);
    const fetched = { blobs: 0, bytes: 0 };
    const progress = await this.#pull(route, reference, platforms, fetched, item.sourceRef);
    const referrers = item.source.referrers ? await this.#referrers(route, progress.digest, platforms, fetched) : [];
    let changed: boolean;
    if (this.#dest.kind === 'hosted' && item.destRepo !== undefined) {
      const content = this.#core.hosted.content;
      const adopted = content.adopt(this.#dest.registry, item.destRepo, ref.kind === 'tag' ? ref.tag : undefined, progress.digest);
      let newLinks = adopted.newLinks;
      for (const digest of referrers) newLinks += content.adopt(this.#dest.registry, item.destRepo, undefined, digest).newLinks;
      changed = newLinks > 0 || adopted.tagMoved;
    } else {
      changed = before !== progress.digest || fetched.blobs > 0;
    }
    return {
      source: item.sourceRef,
      destination: item.destination,
      digest: progress.digest,
      bytes: progress.bytesTotal,
      blobsFetched: fetched.blobs,
      bytesFetched: fetched.bytes,
      referrers: referrers.length,
      result: changed ? 'ok' : 'skipped',
      error: null,
    };
  }

  /** A dry run: the digest the upstream names now (a HEAD) and whether the destination already holds it. */
  async inspect(item: SyncItem): Promise<ImageReport> {
    const { route, reference } = item;
    const ref = parseReference(reference);
    const res = await route.upstream.request({
      method: 'HEAD',
      repository: route.repo,
      path: `${route.repo}/manifests/${reference}`,
      headers: { accept: DEFAULT_ACCEPT },
      ...(this.#signal ? { signal: this.#signal } : {}),
    });
    discard(res.body);
    if (res.status !== 200) throw upstreamError(res, { upstream: route.upstream.name, repo: route.repo, notFound: 'MANIFEST_UNKNOWN', subject: reference });
    const digest = res.headers['docker-content-digest'] ?? (ref.kind === 'digest' ? ref.digest.value : undefined);
    const graph = digest === undefined ? undefined : this.#cachedGraph(digest, platformsOf(this.#core, item.source));
    let current = false;
    if (digest !== undefined && this.#dest.kind === 'hosted' && item.destRepo !== undefined) {
      const hosted = this.#core.storage.metadata.hosted;
      current = ref.kind === 'tag' ? hosted.tag(this.#dest.registry, item.destRepo, ref.tag)?.digest === digest : hosted.link(this.#dest.registry, item.destRepo, digest) === 'manifest';
    } else if (digest !== undefined && graph?.complete) {
      const metadata = this.#core.storage.metadata;
      current = ref.kind === 'tag' ? metadata.getTag(route.upstream.name, route.repo, ref.tag)?.digest === digest : metadata.hasLink(route.upstream.name, route.repo, digest);
    }
    return {
      source: item.sourceRef,
      destination: item.destination,
      digest: digest ?? null,
      bytes: graph?.complete ? graph.bytes : null,
      blobsFetched: 0,
      bytesFetched: 0,
      referrers: 0,
      result: 'skipped',
      current,
      error: null,
    };
  }

  /** Pulls into the cache, counting the blobs (and their bytes) that came from the upstream. */
  async #pull(route: Route, reference: string, platforms: readonly string[], fetched: { blobs: number; bytes: number }, source?: string): Promise<PrefetchProgress> {
    let seen = { fetched: 0, bytesDone: 0 };
    return this.#core.prefetcher.image(route, reference, {
      platforms,
      revalidate: true,
      ...(this.#signal ? { signal: this.#signal } : {}),
      onProgress: (p) => {
        // Each report follows one blob: when the fetched count moved, the bytes it added were fetched.
        if (p.fetched > seen.fetched) {
          fetched.blobs += p.fetched - seen.fetched;
          fetched.bytes += p.bytesDone - seen.bytesDone;
        }
        seen = { fetched: p.fetched, bytesDone: p.bytesDone };
        if (source !== undefined) {
          this.#onEvent({ event: 'image-progress', source, blobsDone: p.blobsDone, blobsTotal: p.blobsTotal, bytesDone: p.bytesDone, bytesTotal: p.bytesTotal });
        }
      },
    });
  }

  /**
   * Copies the referrers of the image's manifests (the top one and the platform manifests copied),
   * one level deep; returns their digests. A registry without the referrers API is skipped.
   */
  async #referrers(route: Route, digest: string, platforms: readonly string[], fetched: { blobs: number; bytes: number }): Promise<string[]> {
    if (this.#noReferrers.has(route.upstream.name)) return [];
    const subjects = [digest];
    const top = this.#core.manifests.cached(digest);
    const content = top ? readManifest(top.bytes) : undefined;
    if (content?.kind === 'index') subjects.push(...content.manifests.filter((m) => matchesPlatform(m, platforms)).map((m) => m.digest));
    const copied: string[] = [];
    for (const subject of subjects) {
      let body: Buffer;
      try {
        body = (await this.#core.lists.referrers(route, subject, undefined)).body;
      } catch (err) {
        const status = err instanceof RegistryError ? (err.upstreamStatus ?? err.status) : 0;
        if (![400, 404, 405, 501].includes(status)) throw err;
        this.#noReferrers.add(route.upstream.name);
        this.#onEvent({ event: 'note', message: `upstream ${route.upstream.name} has no referrers API (answered ${status}); referrers are not copied from it` });
        return copied;
      }
      let doc: { manifests?: unknown };
      try {
        doc = JSON.parse(body.toString('utf8')) as typeof doc;
      } catch {
        continue;
      }
      const listed = Array.isArray(doc.manifests) ? doc.manifests : [];
      for (const m of listed) {
        const d = (m as { digest?: unknown } | null)?.digest;
        if (typeof d !== 'string' || !/^sha256:[a-f0-9]{64}$/.test(d) || copied.includes(d)) continue;
        await this.#pull(route, d, [], fetched);
        copied.push(d);
      }
    }
    return copied;
  }

  /** Whether the cache holds the whole image (chosen platforms), and its blobs' bytes. */
  #cachedGraph(digest: string, platforms: readonly string[]): { complete: boolean; bytes: number } {
    let bytes = 0;
    const queue = [digest];
    for (let d = queue.shift(); d !== undefined; d = queue.shift()) {
      const manifest = this.#core.manifests.cached(d);
      if (!manifest) return { complete: false, bytes };
      const content = readManifest(manifest.bytes);
      if (content.kind === 'index') queue.push(...content.manifests.filter((m) => matchesPlatform(m, platforms)).map((m) => m.digest));
      if (content.kind !== 'image') continue;
      for (const b of content.config ? [content.config, ...content.layers] : content.layers) {
        const row = this.#core.storage.blobs.lookup(b.digest);
        if (!row) return { complete: false, bytes };
        bytes += row.size;
      }
    }
    return { complete: true, bytes };
  }
}
