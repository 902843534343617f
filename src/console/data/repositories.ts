/**
 * @module console/data/repositories
 * One page of a source's repositories, optionally only those whose name contains a search text,
 * each with its tag count and the bytes of the blobs linked to it. Pages follow a key (the last
 * name shown), so page 400 costs what page 1 does.
 */
import type { Metadata } from '../../cache/metadata/metadata.ts';
import type { Source } from './sources.ts';

export const REPOSITORY_PAGE = 25;

export interface RepositoryItem {
  repo: string;
  tags: number;
  blobs: number;
  bytes: number;
}

export interface RepositoryPage {
  items: RepositoryItem[];
  /** The key of the next page; undefined on the last one. */
  next: string | undefined;
}

export function repositoryPage(metadata: Metadata, source: Source, { q = '', after = '', limit = REPOSITORY_PAGE }: { q?: string; after?: string; limit?: number }): RepositoryPage {
  // One more than shown says whether a next page exists without counting.
  const names = q === '' ? metadata.browse.repositories(source.kind, source.name, after, limit + 1) : metadata.browse.search(source.kind, source.name, q, after, limit + 1);
  const shown = names.slice(0, limit);
  return {
    items: shown.map((repo) => ({ repo, ...metadata.browse.stats(source.kind, source.name, repo) })),
    next: names.length > limit ? shown[shown.length - 1] : undefined,
  };
}
