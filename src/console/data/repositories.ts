/**
 * @module console/data/repositories
 * One page of a source's repositories, optionally only those whose name contains a search text,
 * each with its tag count and the bytes of the blobs linked to it. Pages follow a key (the last
 * name shown), so page 400 costs what page 1 does. A viewer's page holds only the repositories it
 * may pull (`visible`), filtered batch by batch after the keyset read (console/data/filtered-page).
 */
import type { Metadata } from '../../cache/metadata/metadata.ts';
import type { Source } from './sources.ts';
import { filteredPage } from './filtered-page.ts';

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

export function repositoryPage(
  metadata: Metadata,
  source: Source,
  { q = '', after = '', limit = REPOSITORY_PAGE, visible }: { q?: string; after?: string; limit?: number; visible?: ((repo: string) => boolean) | undefined },
): RepositoryPage {
  const fetch = (from: string, n: number) => (q === '' ? metadata.browse.repositories(source.kind, source.name, from, n) : metadata.browse.search(source.kind, source.name, q, from, n));
  const page = filteredPage({ fetch, keyOf: (repo) => repo, keep: visible, after, limit });
  const stats = metadata.browse.statsOf(source.kind, source.name, page.items);
  return {
    items: page.items.map((repo) => ({ repo, ...(stats.get(repo) ?? { tags: 0, blobs: 0, bytes: 0 }) })),
    next: page.next,
  };
}
