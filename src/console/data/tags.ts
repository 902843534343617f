/**
 * @module console/data/tags
 * One page of a repository's tags after a key, each with its digest, when the upstream last
 * confirmed it (or it was pushed), and its manifest's size and last pull.
 */
import type { Metadata } from '../../cache/metadata/metadata.ts';
import type { BrowseTagRow } from '../../cache/metadata/browse-queries.ts';
import type { Source } from './sources.ts';
import { filteredPage, type FilteredPage } from './filtered-page.ts';

export const TAG_PAGE = 50;

export type TagPage = FilteredPage<BrowseTagRow>;

export function tagPage(metadata: Metadata, source: Source, repo: string, { after = '', limit = TAG_PAGE }: { after?: string; limit?: number }): TagPage {
  // Nothing filtered: one read of a page plus one row, which says whether a next page exists.
  return filteredPage({ fetch: (from, n) => metadata.browse.tags(source.kind, source.name, repo, from, n), keyOf: (t) => t.tag, keep: undefined, after, limit });
}
