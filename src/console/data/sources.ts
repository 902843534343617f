/**
 * @module console/data/sources
 * The registries the console browses: each upstream (by its name, with the registry names clients
 * use for it) and each hosted registry, with how many repositories the cache holds for it.
 */
import type { Config } from '../../config/schema.ts';
import type { Metadata } from '../../cache/metadata/metadata.ts';
import type { BrowseSource } from '../../cache/metadata/browse-queries.ts';
import { filteredCount } from './filtered-page.ts';

export interface Source {
  kind: BrowseSource;
  /** The upstream's name, or the hosted registry's name: the first path segment of the console's image URLs. */
  name: string;
  /** What clients call it (the upstream's `registries`; the hosted registry's name). */
  registries: readonly string[];
  offline: boolean;
}

export interface SourceSummary extends Source {
  repositories: number;
  /** The count stopped early (a viewer's count is bounded): there are at least `repositories`. */
  capped: boolean;
}

/** Names read per batch when counting a viewer's repositories; the count stops after MAX_BATCHES of them. */
const COUNT_BATCH = 500;

/**
 * Which repositories of `source` may be shown: undefined for admins (all), else those the identity
 * may pull under any name clients call the source by (as /v2/ would let it).
 */
export function repositoryFilter(ctx: { identity: { admin: boolean }; canPull: (registry: string, repo: string) => boolean }, source: Source): ((repo: string) => boolean) | undefined {
  if (ctx.identity.admin) return undefined;
  const names = source.registries.length > 0 ? source.registries : [source.name];
  return (repo) => names.some((registry) => ctx.canPull(registry, repo));
}

/** Every configured source, upstreams first, in config order. */
export function sources(config: Config): Source[] {
  return [
    ...config.upstreams.map((u): Source => ({ kind: 'upstream', name: u.name, registries: u.registries, offline: u.offline })),
    ...config.hosted.map((h): Source => ({ kind: 'hosted', name: h.name, registries: [h.name], offline: false })),
  ];
}

/** The source a console URL names; undefined when none is configured under that name. */
export function findSource(config: Config, name: string): Source | undefined {
  return sources(config).find((s) => s.name === name);
}

/**
 * Every source with its repository count (one index seek per distinct repository); with `filter`,
 * only the repositories it keeps count, read a batch at a time and bounded (`capped`).
 */
export function sourceSummaries(config: Config, metadata: Metadata, filter?: (source: Source) => ((repo: string) => boolean) | undefined): SourceSummary[] {
  return sources(config).map((s) => {
    const keep = filter?.(s);
    if (!keep) return { ...s, repositories: metadata.browse.repositoryCount(s.kind, s.name), capped: false };
    const { count, capped } = filteredCount({ fetch: (after, n) => metadata.browse.repositories(s.kind, s.name, after, n), keyOf: (repo) => repo, keep, batch: COUNT_BATCH });
    return { ...s, repositories: count, capped };
  });
}
