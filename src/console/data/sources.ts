/**
 * @module console/data/sources
 * The registries the console browses: each upstream (by its name, with the registry names clients
 * use for it) and each hosted registry, with how many repositories the cache holds for it.
 */
import type { Config } from '../../config/schema.ts';
import type { Metadata } from '../../cache/metadata/metadata.ts';
import type { BrowseSource } from '../../cache/metadata/browse-queries.ts';

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

/** Every source with its repository count (one index seek per distinct repository). */
export function sourceSummaries(config: Config, metadata: Metadata): SourceSummary[] {
  return sources(config).map((s) => ({ ...s, repositories: metadata.browse.repositoryCount(s.kind, s.name) }));
}
